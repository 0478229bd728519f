//! MiniMax-M2 (`MiniMaxM2ForCausalLM`). Reference: transformers
//! `models/minimax_m2/modeling_minimax_m2.py` (hub tensor names through the `mixtral` conversion).
//!
//! - Router `block_sparse_moe.gate` (no bias, model dtype): sigmoid of the logits in f32, the
//!   block's `e_score_correction_bias` added for the choice only, top-k, the unbiased sigmoids of
//!   the k renormalized (no routed scaling, no groups).
//! - Experts `experts.N.w1` / `w3` / `w2` as Mixtral's.
//! - Attention: GQA with RMSNorm over the whole q and k projections (`q_norm` `[heads·d]`,
//!   before the head split), rotary over the first `rotary_dim` of each head (the hub's field;
//!   transformers 5 reads it as `partial_rotary_factor = rotary_dim / head_dim`).

use super::super::config::{CoreConfig, CoreDefaults, ModelConfig};
use super::super::spec::{AttentionWindow, GateSpec, ModelSpec, QkNormKind};
use crate::error::Result;
use crate::routing::{Normalization, RouterSpec, RoutingRule, Selection};

pub fn spec(cfg: &ModelConfig) -> Result<ModelSpec> {
    cfg.require_silu("hidden_act")?;
    let core = CoreConfig::read(
        cfg,
        CoreDefaults {
            rms_norm_eps: 1e-6,
            max_position_embeddings: 196_608,
            tie_word_embeddings: false,
        },
    )?;
    let num_experts = cfg.positive_any(&["num_local_experts", "num_experts"])?;
    let top_k = cfg.top_k(&["num_experts_per_tok"], Some(8), num_experts)?;
    let router = RouterSpec {
        num_experts,
        top_k,
        rule: RoutingRule::SigmoidTopK,
        selection: Selection::TopK,
        normalization: Normalization::Sum,
        routed_scaling_factor: 1.0,
        selection_bias: true,
    };
    let mut rope = cfg.rope(5_000_000.0)?;
    let partial_given = cfg.names_partial_rotary()?;
    if let (false, Some(rotary_dim)) = (partial_given, cfg.opt_usize("rotary_dim")?) {
        if rotary_dim == 0 || rotary_dim > core.head_dim {
            return Err(cfg.bad(format!(
                "'{}' = {rotary_dim} must be in 1..={} (head_dim)",
                cfg.field("rotary_dim"),
                core.head_dim
            )));
        }
        rope.partial_rotary_factor = rotary_dim as f64 / core.head_dim as f64;
    }
    let mut attention = super::gqa(&core, rope);
    attention.qk_norm = QkNormKind::Full;
    let mut spec = super::llama_like(
        "MiniMax-M2",
        super::architecture_or(cfg, "MiniMaxM2ForCausalLM"),
        &core,
        attention,
        super::layers(core.num_hidden_layers, AttentionWindow::Full, |_| true),
        super::moe(
            router,
            GateSpec {
                selection_bias: Some("e_score_correction_bias"),
                ..super::gate("gate")
            },
            super::per_expert(core.intermediate_size, "w1", "w3", "w2"),
        ),
    );
    spec.names.moe = &["block_sparse_moe", "mlp"];
    Ok(spec)
}
