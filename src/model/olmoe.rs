//! OLMoE (`OlmoeForCausalLM`): softmax top-8 without renormalization (`norm_topk_prob` false),
//! RMSNorm over the whole q and k projections, optional `clip_qkv`. Reference: transformers
//! `models/olmoe/modeling_olmoe.py`.

use super::config::ModelConfig;
use super::router::{RouterSpec, Scoring, Selection};
use super::spec::{AttentionSpec, ModelSpec, MoeSpec, QkNormKind};
use crate::error::Result;

pub fn spec(cfg: &ModelConfig) -> Result<ModelSpec> {
    super::check_silu(cfg)?;
    let num_experts = cfg.usize_any(&["num_experts", "num_local_experts"])?;
    Ok(ModelSpec {
        family: "OLMoE",
        architecture: super::architecture_or(cfg, "OlmoeForCausalLM"),
        vocab_size: cfg.vocab_size,
        hidden_size: cfg.hidden_size,
        num_layers: cfg.num_hidden_layers,
        rms_norm_eps: cfg.rms_norm_eps,
        tie_word_embeddings: cfg.tie_word_embeddings,
        max_position_embeddings: cfg.max_position_embeddings,
        attention: AttentionSpec::Gqa {
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            // OLMoE's k_norm is sized (hidden / heads) * kv_heads: head_dim is never explicit.
            head_dim: cfg.hidden_size / cfg.num_attention_heads,
            qkv_bias: cfg.opt_bool("attention_bias")?.unwrap_or(false),
            qk_norm: QkNormKind::Full,
            clip_qkv: cfg.opt_f64("clip_qkv")?,
            sliding_window: None,
            rope: cfg.rope.clone(),
        },
        dense_intermediate_size: cfg.intermediate_size,
        moe_layers: vec![true; cfg.num_hidden_layers],
        moe: MoeSpec {
            router: RouterSpec {
                num_experts,
                top_k: cfg.opt_usize("num_experts_per_tok")?.unwrap_or(8),
                scoring: Scoring::Softmax,
                selection: Selection::TopK,
                renormalize: cfg.opt_bool("norm_topk_prob")?.unwrap_or(false),
                routed_scaling_factor: 1.0,
                selection_bias: false,
            },
            expert_intermediate_size: cfg.intermediate_size,
            shared: None,
            gate_in_f32: false,
            module_names: &["mlp"],
        },
    })
}
