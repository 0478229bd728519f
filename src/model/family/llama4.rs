//! Llama-4 text (`Llama4ForCausalLM`, and the `text_config` of the multimodal
//! `Llama4ForConditionalGeneration`, whose text weights sit under `language_model.`). Reference:
//! transformers `models/llama4/modeling_llama4.py`.
//!
//! - Router `feed_forward.router`: top-k of the logits; each chosen expert gets
//!   `sigmoid(logit)`, which multiplies the expert's *input* (`routed_in = x · score`); the
//!   experts' outputs are summed unweighted. A shared expert is always added.
//! - Experts stacked `[E, H, 2I]` (`x @ W`, gate then up halves), down `[E, I, H]`.
//! - MoE every `interleave_moe_layer_step`-th layer (or the explicit `moe_layers`); dense layers
//!   use `intermediate_size_mlp`.
//! - Attention: `no_rope_layers[i] == 0` marks NoPE layers (default: every
//!   `no_rope_layer_interval`-th); rotary layers use chunked attention (`attention_chunk_size`)
//!   and, with `use_qk_norm`, a weightless RMS ("L2") norm of q and k after the rotary; NoPE layers
//!   attend fully and, with `attn_temperature_tuning`, scale queries by
//!   `1 + attn_scale · ln(1 + floor((pos + 1) / floor_scale))`. Rotary pairs dimensions 2i/2i+1
//!   (a complex multiply), llama3 scaling on the hub checkpoints.

use super::super::config::{CoreConfig, CoreDefaults, ModelConfig};
use super::super::spec::{
    AttentionWindow, ExpertLayout, ExpertSpec, FfnKind, GateUpOrder, LayerAttention, LayerSpec,
    ModelSpec, Orientation, QkNormKind, RopePairing, SharedExpertSpec, TemperatureTuning,
    TensorNames, WeightTarget,
};
use crate::error::Result;
use crate::routing::{RouterSpec, RoutingRule};

pub fn spec(cfg: &ModelConfig) -> Result<ModelSpec> {
    // The multimodal wrapper keeps the language model's config in `text_config`.
    let (text, names) = match cfg.sub("text_config")? {
        Some(text) => (
            text,
            TensorNames::llama_under("language_model.model", "language_model.lm_head"),
        ),
        None => (cfg.clone(), TensorNames::llama()),
    };
    let cfg = &text;
    cfg.require_silu("hidden_act")?;
    let core = CoreConfig::read(
        cfg,
        CoreDefaults {
            rms_norm_eps: 1e-5,
            max_position_embeddings: 131_072,
            tie_word_embeddings: false,
        },
    )?;
    let n = core.num_hidden_layers;
    let num_experts = cfg.positive_any(&["num_local_experts", "num_experts"])?;
    let top_k = cfg.top_k(&["num_experts_per_tok"], Some(1), num_experts)?;
    let moe_layers: Vec<usize> = if cfg.contains("moe_layers") {
        cfg.usize_list("moe_layers")?
    } else {
        let step = cfg
            .opt_usize("interleave_moe_layer_step")?
            .unwrap_or(1)
            .max(1);
        (step - 1..n).step_by(step).collect()
    };
    // 1 = rotary, 0 = NoPE; an empty or missing list means the default interval.
    let mut rope_layers = cfg.usize_list("no_rope_layers")?;
    if rope_layers.is_empty() {
        let interval = cfg.opt_usize("no_rope_layer_interval")?.unwrap_or(4).max(1);
        rope_layers = (0..n)
            .map(|i| usize::from((i + 1) % interval != 0))
            .collect();
    }
    if rope_layers.len() < n {
        return Err(cfg.bad(format!(
            "'{}' lists {} layers of {n}",
            cfg.field("no_rope_layers"),
            rope_layers.len()
        )));
    }
    let layer_types = cfg.str_list("layer_types")?;
    let chunk = cfg.opt_usize("attention_chunk_size")?;
    let tuning = cfg
        .opt_flag("attn_temperature_tuning")?
        .unwrap_or(true)
        .then(|| -> Result<TemperatureTuning> {
            Ok(TemperatureTuning {
                floor_scale: cfg.opt_f64("floor_scale")?.unwrap_or(8192.0),
                attn_scale: cfg.opt_f64("attn_scale")?.unwrap_or(0.1),
            })
        })
        .transpose()?;
    let mut layers = Vec::with_capacity(n);
    for (i, &rope) in rope_layers.iter().take(n).enumerate() {
        let rotary = rope != 0;
        // Llama4TextConfig: chunked attention on rotary layers, full on NoPE layers.
        let chunked = match layer_types.get(i).map(String::as_str) {
            None => rotary,
            Some("chunked_attention") => true,
            Some("full_attention") => false,
            Some(other) => {
                return Err(cfg.bad(format!("layer_types[{i}] = '{other}' is not supported (expected chunked_attention or full_attention)")))
            }
        };
        layers.push(LayerSpec {
            attention: LayerAttention {
                window: match (chunked, chunk) {
                    (true, Some(c)) => AttentionWindow::Chunked(c),
                    _ => AttentionWindow::Full,
                },
                rotary,
                temperature_tuning: if rotary { None } else { tuning },
                ..LayerAttention::FULL
            },
            ffn: if moe_layers.contains(&i) {
                FfnKind::Moe
            } else {
                FfnKind::Dense
            },
            top_k: None,
        });
    }
    let mut attention = super::gqa(&core, cfg.rope(500_000.0)?);
    attention.qkv_bias = cfg.opt_bool("attention_bias")?.unwrap_or(false);
    attention.o_bias = attention.qkv_bias;
    attention.rope_pairing = RopePairing::Interleaved;
    if cfg.opt_bool("use_qk_norm")?.unwrap_or(true) {
        attention.qk_norm = QkNormKind::L2AfterRotary;
    }
    let expert_intermediate = cfg.positive_any(&["intermediate_size"])?;
    let mut moe = super::moe(
        RouterSpec::plain(num_experts, top_k, RoutingRule::TopKSigmoid),
        super::gate("router"),
        ExpertSpec {
            intermediate_size: expert_intermediate,
            module: "experts",
            layout: ExpertLayout::Stacked {
                gate_up: "gate_up_proj",
                down: "down_proj",
                orientation: Orientation::InOut,
                gate_up_order: GateUpOrder::Halves,
            },
            activation: super::super::spec::Activation::SwiGlu,
            bias: false,
        },
    );
    moe.weights_on = WeightTarget::Input;
    moe.shared = Some(SharedExpertSpec::swiglu(
        expert_intermediate,
        "shared_expert",
    ));
    let mut spec = super::llama_like(
        "Llama-4",
        super::architecture_or(cfg, "Llama4ForCausalLM"),
        &core,
        attention,
        layers,
        moe,
    );
    spec.dense.intermediate_size = cfg.opt_usize("intermediate_size_mlp")?.unwrap_or(16_384);
    spec.names = TensorNames {
        dense_mlp: "feed_forward",
        moe: &["feed_forward"],
        ..names
    };
    Ok(spec)
}
