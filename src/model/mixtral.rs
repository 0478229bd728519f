//! Mixtral (`MixtralForCausalLM`): softmax over all experts, top-k, renormalized; GQA with an
//! optional sliding window. Reference: transformers `models/mixtral/modeling_mixtral.py`
//! (`MixtralTopKRouter`, `MixtralSparseMoeBlock`).

use super::config::ModelConfig;
use super::router::{RouterSpec, Scoring, Selection};
use super::spec::{AttentionSpec, ModelSpec, MoeSpec, QkNormKind};
use crate::error::Result;

pub fn spec(cfg: &ModelConfig) -> Result<ModelSpec> {
    super::check_silu(cfg)?;
    let num_experts = cfg.usize_any(&["num_local_experts", "num_experts"])?;
    let top_k = cfg.opt_usize("num_experts_per_tok")?.unwrap_or(2);
    Ok(ModelSpec {
        family: "Mixtral",
        architecture: super::architecture_or(cfg, "MixtralForCausalLM"),
        vocab_size: cfg.vocab_size,
        hidden_size: cfg.hidden_size,
        num_layers: cfg.num_hidden_layers,
        rms_norm_eps: cfg.rms_norm_eps,
        tie_word_embeddings: cfg.tie_word_embeddings,
        max_position_embeddings: cfg.max_position_embeddings,
        attention: AttentionSpec::Gqa {
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim(),
            qkv_bias: false,
            qk_norm: QkNormKind::None,
            clip_qkv: None,
            sliding_window: cfg.sliding_window,
            rope: cfg.rope.clone(),
        },
        dense_intermediate_size: cfg.intermediate_size,
        moe_layers: vec![true; cfg.num_hidden_layers],
        moe: MoeSpec {
            router: RouterSpec {
                num_experts,
                top_k,
                scoring: Scoring::Softmax,
                selection: Selection::TopK,
                renormalize: true,
                routed_scaling_factor: 1.0,
                selection_bias: false,
            },
            expert_intermediate_size: cfg.intermediate_size,
            shared: None,
            gate_in_f32: false,
            module_names: &["block_sparse_moe", "mlp"],
        },
    })
}
