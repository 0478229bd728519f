//! GPT-OSS (`GptOssForCausalLM`), unquantized weights. Reference: transformers
//! `models/gpt_oss/modeling_gpt_oss.py`.
//!
//! - Router `mlp.router` is a Linear *with bias*; top-k of its logits, then softmax over the k.
//! - Experts stacked `[E, H, 2I]` used as `x @ W` with gate and up *interleaved* (gate = even
//!   columns, up = odd), biases on both projections, and the clamped SwiGLU
//!   `(clamp(u, ±limit) + 1) · g·sigmoid(alpha·g)` with `g = min(g, limit)`.
//! - Attention: q/k/v/o biases, a learned sink logit per head in every softmax, `layer_types`
//!   alternating sliding-window and full layers; YaRN rotary (`truncate: false` as released).

use super::super::config::{CoreConfig, CoreDefaults, ModelConfig, RopeConfig, RopeScaling};
use super::super::spec::{
    Activation, AttentionWindow, ExpertLayout, ExpertSpec, GateSpec, GateUpOrder, LayerAttention,
    LayerSpec, ModelSpec, Orientation,
};
use crate::error::Result;
use crate::routing::{RouterSpec, RoutingRule};

pub fn spec(cfg: &ModelConfig) -> Result<ModelSpec> {
    cfg.require_silu("hidden_act")?;
    let core = CoreConfig::read(
        cfg,
        CoreDefaults {
            rms_norm_eps: 1e-5,
            max_position_embeddings: 131_072,
            tie_word_embeddings: false,
        },
    )?;
    let num_experts = cfg.positive_any(&["num_local_experts", "num_experts"])?;
    let top_k = cfg.top_k(&["num_experts_per_tok"], Some(4), num_experts)?;
    let window = cfg.opt_usize("sliding_window")?.unwrap_or(128);
    let layer_types = cfg.str_list("layer_types")?;
    if !layer_types.is_empty() && layer_types.len() < core.num_hidden_layers {
        return Err(cfg.bad(format!(
            "'layer_types' lists {} layers of {}",
            layer_types.len(),
            core.num_hidden_layers
        )));
    }
    let mut layers = Vec::with_capacity(core.num_hidden_layers);
    for i in 0..core.num_hidden_layers {
        // GptOssConfig's default: even layers sliding, odd layers full.
        let sliding = match layer_types.get(i).map(String::as_str) {
            None => i % 2 == 0,
            Some("sliding_attention") => true,
            Some("full_attention") => false,
            Some(other) => {
                return Err(cfg.bad(format!("layer_types[{i}] = '{other}' is not supported (expected sliding_attention or full_attention)")))
            }
        };
        layers.push(LayerSpec {
            attention: LayerAttention {
                window: if sliding {
                    AttentionWindow::Sliding(window)
                } else {
                    AttentionWindow::Full
                },
                ..LayerAttention::FULL
            },
            ffn: super::super::spec::FfnKind::Moe,
            top_k: None,
        });
    }
    let rope = if cfg.contains("rope_parameters") || cfg.contains("rope_scaling") {
        cfg.rope(150_000.0)?
    } else {
        // GptOssConfig's default rope when the config names none.
        RopeConfig {
            theta: cfg.opt_f64("rope_theta")?.unwrap_or(150_000.0),
            scaling: RopeScaling::Yarn {
                factor: 32.0,
                original_max_position_embeddings: 4096,
                beta_fast: 32.0,
                beta_slow: 1.0,
                mscale: None,
                mscale_all_dim: None,
                attention_factor: None,
                truncate: false,
            },
            partial_rotary_factor: 1.0,
        }
    };
    let mut attention = super::gqa(&core, rope);
    attention.qkv_bias = cfg.opt_bool("attention_bias")?.unwrap_or(true);
    attention.o_bias = attention.qkv_bias;
    attention.sinks = true;
    let alpha = cfg.opt_f64("swiglu_alpha")?.unwrap_or(1.702) as f32;
    let limit = cfg.opt_f64("swiglu_limit")?.unwrap_or(7.0) as f32;
    Ok(super::llama_like(
        "GPT-OSS",
        super::architecture_or(cfg, "GptOssForCausalLM"),
        &core,
        attention,
        layers,
        super::moe(
            RouterSpec::plain(num_experts, top_k, RoutingRule::TopKSoftmax),
            GateSpec {
                bias: true,
                ..super::gate("router")
            },
            ExpertSpec {
                intermediate_size: cfg.positive_any(&["intermediate_size"])?,
                module: "experts",
                layout: ExpertLayout::Stacked {
                    gate_up: "gate_up_proj",
                    down: "down_proj",
                    orientation: Orientation::InOut,
                    gate_up_order: GateUpOrder::Interleaved,
                },
                activation: Activation::ClampedSwiGlu { alpha, limit },
                bias: true,
            },
        ),
    ))
}
