//! Phi-3.5-MoE (`PhimoeForCausalLM`). Reference: transformers `models/phimoe/modeling_phimoe.py`
//! (hub tensor names `block_sparse_moe.gate`, `experts.N.w1/w3/w2` through its conversion mapping).
//!
//! - Router: sparsemixer top-2 as evaluated in eval mode ([`RoutingRule::SparseMixer`]) with
//!   `router_jitter_noise` as its epsilon; no jitter on the input outside training.
//! - LayerNorm with weight and bias everywhere (eps `rms_norm_eps`); q/k/v/o biases with
//!   `attention_bias`; `lm_head` bias with `lm_head_bias`; optional sliding window.
//! - LongRoPE: transformers 5.23's Phimoe rotary always uses `short_factor` for the frequencies
//!   and switches only the magnitude (`long_mscale` once the sequence is longer than
//!   `original_max_position_embeddings`, `short_mscale` before); the original Phi-3.5-MoE code
//!   switches the frequencies to `long_factor` too. moescope follows transformers.

use super::super::config::{CoreConfig, CoreDefaults, ModelConfig};
use super::super::spec::{ModelSpec, NormKind};
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
    let top_k = cfg.top_k(&["num_experts_per_tok"], Some(2), num_experts)?;
    if top_k != 2 {
        return Err(cfg.bad(format!(
            "'num_experts_per_tok' = {top_k}: Phi-3.5-MoE's sparsemixer routing is defined for 2 only"
        )));
    }
    let jitter_eps = cfg.opt_f64("router_jitter_noise")?.unwrap_or(0.01) as f32;
    let mut attention = super::gqa(&core, cfg.rope(10_000.0)?);
    attention.qkv_bias = cfg.opt_bool("attention_bias")?.unwrap_or(false);
    attention.o_bias = attention.qkv_bias;
    let mut spec = super::llama_like(
        "Phi-3.5-MoE",
        super::architecture_or(cfg, "PhimoeForCausalLM"),
        &core,
        attention,
        super::layers(core.num_hidden_layers, super::window_of(&core), |_| true),
        super::moe(
            RouterSpec::plain(num_experts, top_k, RoutingRule::SparseMixer { jitter_eps }),
            super::gate("gate"),
            super::per_expert(core.intermediate_size, "w1", "w3", "w2"),
        ),
    );
    spec.norm.kind = NormKind::Layer { bias: true };
    spec.lm_head_bias = cfg.opt_bool("lm_head_bias")?.unwrap_or(false);
    // Hub checkpoints: `block_sparse_moe.gate`; transformers 5 in memory: `mlp.router`.
    spec.names.moe = &["block_sparse_moe", "mlp"];
    Ok(spec)
}
