//! dots.llm1 (`Dots1ForCausalLM`). Reference: transformers `models/dots1/modeling_dots1.py`.
//!
//! Qwen3's attention (per-head q/k RMSNorm before rotary, explicit `head_dim`) over DeepSeek-V3's
//! MoE: f32 gate, sigmoid, `gate.e_score_correction_bias` for the choice only, groups scored by
//! their top-2 sum (one group in the release), the unbiased sigmoids renormalized when
//! `norm_topk_prob` (default off), × `routed_scaling_factor`, `n_shared_experts` shared experts
//! (two in the release), the first `first_k_dense_replace` layers dense. Layers from
//! `max_window_layers` on use the `sliding_window` when `layer_types` does not say otherwise.

use super::super::config::{CoreConfig, CoreDefaults, ModelConfig};
use super::super::spec::{
    AttentionWindow, FfnKind, GateSpec, LayerAttention, LayerSpec, ModelSpec, QkNormKind,
    SharedExpertSpec,
};
use crate::error::Result;

pub fn spec(cfg: &ModelConfig) -> Result<ModelSpec> {
    cfg.require_silu("hidden_act")?;
    let core = CoreConfig::read(
        cfg,
        CoreDefaults {
            rms_norm_eps: 1e-6,
            max_position_embeddings: 2048,
            tie_word_embeddings: false,
        },
    )?;
    let num_experts =
        cfg.positive_any(&["n_routed_experts", "num_local_experts", "num_experts"])?;
    let top_k = cfg.top_k(&["num_experts_per_tok"], None, num_experts)?;
    let router = super::sigmoid_group_router(cfg, num_experts, top_k, false)?;
    let mut attention = super::gqa(&core, cfg.rope(10_000.0)?);
    attention.qkv_bias = cfg.opt_bool("attention_bias")?.unwrap_or(false);
    attention.o_bias = attention.qkv_bias;
    attention.qk_norm = QkNormKind::PerHead;
    let moe_intermediate = cfg.positive_any(&["moe_intermediate_size"])?;
    let n_shared = cfg.opt_usize("n_shared_experts")?.unwrap_or(0);
    let first_dense = cfg.opt_usize("first_k_dense_replace")?.unwrap_or(0);
    let mut moe = super::moe(
        router,
        GateSpec {
            in_f32: true,
            selection_bias: Some("gate.e_score_correction_bias"),
            ..super::gate("gate")
        },
        super::per_expert(moe_intermediate, "gate_proj", "up_proj", "down_proj"),
    );
    moe.shared = (n_shared > 0).then_some(SharedExpertSpec::swiglu(
        moe_intermediate * n_shared,
        "shared_experts",
    ));
    // Dots1Config's window is 4096 unless the config says (null turns it off).
    let window = if cfg.raw.contains_key("sliding_window") {
        core.sliding_window
    } else {
        Some(4096)
    };
    let sliding = sliding_layers(cfg, core.num_hidden_layers, window)?;
    let layers = (0..core.num_hidden_layers)
        .map(|i| LayerSpec {
            attention: LayerAttention {
                window: match (sliding[i], window) {
                    (true, Some(w)) => AttentionWindow::Sliding(w),
                    _ => AttentionWindow::Full,
                },
                ..LayerAttention::FULL
            },
            ffn: if i >= first_dense {
                FfnKind::Moe
            } else {
                FfnKind::Dense
            },
            top_k: None,
        })
        .collect();
    Ok(super::llama_like(
        "dots1",
        super::architecture_or(cfg, "Dots1ForCausalLM"),
        &core,
        attention,
        layers,
        moe,
    ))
}

/// Dots1Config: `layer_types` when given, else sliding from `max_window_layers` (default 62) on
/// wherever a `sliding_window` is set.
fn sliding_layers(cfg: &ModelConfig, layers: usize, window: Option<usize>) -> Result<Vec<bool>> {
    let given = super::layer_kinds(
        cfg,
        "layer_types",
        layers,
        "sliding_attention",
        "full_attention",
    )?;
    let from = cfg.opt_usize("max_window_layers")?.unwrap_or(62);
    Ok(given.unwrap_or_else(|| (0..layers).map(|i| window.is_some() && i >= from).collect()))
}
