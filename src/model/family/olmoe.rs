//! OLMoE (`OlmoeForCausalLM`): softmax top-8 without renormalization (`norm_topk_prob` false),
//! RMSNorm over the whole q and k projections, optional `clip_qkv`. Reference: transformers
//! `models/olmoe/modeling_olmoe.py`.

use super::super::config::{CoreConfig, CoreDefaults, ModelConfig};
use super::super::spec::{AttentionWindow, ModelSpec, QkNormKind};
use crate::error::Result;
use crate::routing::{Normalization, RouterSpec, RoutingRule};

pub fn spec(cfg: &ModelConfig) -> Result<ModelSpec> {
    cfg.require_silu("hidden_act")?;
    let mut core = CoreConfig::read(cfg, CoreDefaults::default())?;
    // OLMoE's k_norm is sized (hidden / heads) * kv_heads: head_dim is never explicit.
    core.head_dim = core.hidden_size / core.num_attention_heads;
    let num_experts = cfg.positive_any(&["num_experts", "num_local_experts"])?;
    let top_k = cfg.top_k(&["num_experts_per_tok"], Some(8), num_experts)?;
    let mut attention = super::gqa(&core, cfg.rope(10_000.0)?);
    attention.qkv_bias = cfg.opt_bool("attention_bias")?.unwrap_or(false);
    attention.o_bias = attention.qkv_bias;
    attention.qk_norm = QkNormKind::Full;
    attention.clip_qkv = cfg.opt_f64("clip_qkv")?;
    Ok(super::llama_like(
        "OLMoE",
        super::architecture_or(cfg, "OlmoeForCausalLM"),
        &core,
        attention,
        super::layers(core.num_hidden_layers, AttentionWindow::Full, |_| true),
        super::moe(
            RouterSpec {
                normalization: if cfg.opt_bool("norm_topk_prob")?.unwrap_or(false) {
                    Normalization::Sum
                } else {
                    Normalization::None
                },
                ..RouterSpec::plain(num_experts, top_k, RoutingRule::SoftmaxTopK)
            },
            super::gate("gate"),
            super::per_expert(core.intermediate_size, "gate_proj", "up_proj", "down_proj"),
        ),
    ))
}
