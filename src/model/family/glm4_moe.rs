//! GLM-4-MoE (`Glm4MoeForCausalLM`: GLM-4.5, 4.6, 4.5-Air). Reference: transformers
//! `models/glm4_moe/modeling_glm4_moe.py`.
//!
//! Routing is DeepSeek-V3's (`Glm4MoeTopkRouter`): f32 gate, sigmoid, `e_score_correction_bias`
//! for selection only, `n_group` groups scored by their top-2 sum, `topk_group` kept (−∞ mask),
//! weights the unbiased sigmoid renormalized when `norm_topk_prob`, × `routed_scaling_factor`.
//! Shared experts (`moe_intermediate_size · n_shared_experts`), the first `first_k_dense_replace`
//! layers dense. Attention: GQA with q/k/v bias (`attention_bias`, never on o), optional per-head
//! q/k RMSNorm (`use_qk_norm`), rotary over the first `partial_rotary_factor` (default 0.5) of
//! each head. The hub's extra MTP layer (`num_nextn_predict_layers`) is not loaded, as in
//! transformers.

use super::super::config::{CoreConfig, CoreDefaults, ModelConfig};
use super::super::spec::{AttentionWindow, GateSpec, ModelSpec, QkNormKind, SharedExpertSpec};
use crate::error::Result;

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
    let num_experts =
        cfg.positive_any(&["n_routed_experts", "num_local_experts", "num_experts"])?;
    let top_k = cfg.top_k(&["num_experts_per_tok"], Some(8), num_experts)?;
    let router = super::sigmoid_group_router(cfg, num_experts, top_k, true)?;
    let mut rope = cfg.rope(10_000.0)?;
    // Glm4MoeConfig sets partial_rotary_factor 0.5 when the config does not say.
    if !cfg.names_partial_rotary()? {
        rope.partial_rotary_factor = 0.5;
    }
    let mut attention = super::gqa(&core, rope);
    attention.qkv_bias = cfg.opt_bool("attention_bias")?.unwrap_or(false);
    if cfg.opt_bool("use_qk_norm")?.unwrap_or(false) {
        attention.qk_norm = QkNormKind::PerHead;
    }
    let moe_intermediate = cfg.positive_any(&["moe_intermediate_size"])?;
    let n_shared = cfg.opt_usize("n_shared_experts")?.unwrap_or(1);
    let first_dense = cfg.opt_usize("first_k_dense_replace")?.unwrap_or(1);
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
    Ok(super::llama_like(
        "GLM-4-MoE",
        super::architecture_or(cfg, "Glm4MoeForCausalLM"),
        &core,
        attention,
        super::layers(core.num_hidden_layers, AttentionWindow::Full, |i| {
            i >= first_dense
        }),
        moe,
    ))
}
