//! Qwen2-MoE (`Qwen2MoeForCausalLM`) and Qwen3-MoE (`Qwen3MoeForCausalLM`): softmax top-k,
//! renormalized only when `norm_topk_prob`; MoE in layers where `(i + 1) % decoder_sparse_step == 0`
//! and `i ∉ mlp_only_layers`. Qwen2-MoE adds a shared expert scaled by
//! `sigmoid(shared_expert_gate(x))` and qkv bias; Qwen3-MoE has per-head q/k RMSNorm and an explicit
//! `head_dim`. References: transformers `models/qwen2_moe/modeling_qwen2_moe.py`,
//! `models/qwen3_moe/modeling_qwen3_moe.py`.

use super::config::ModelConfig;
use super::router::{RouterSpec, Scoring, Selection};
use super::spec::{AttentionSpec, ModelSpec, MoeSpec, QkNormKind, SharedExpertSpec};
use crate::error::Result;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Generation {
    Qwen2,
    Qwen3,
}

pub fn spec_qwen2(cfg: &ModelConfig) -> Result<ModelSpec> {
    spec(cfg, Generation::Qwen2)
}

pub fn spec_qwen3(cfg: &ModelConfig) -> Result<ModelSpec> {
    spec(cfg, Generation::Qwen3)
}

fn spec(cfg: &ModelConfig, generation: Generation) -> Result<ModelSpec> {
    super::check_silu(cfg)?;
    if cfg.opt_bool("use_sliding_window")?.unwrap_or(false) {
        return Err(cfg.bad("use_sliding_window=true is not supported yet for Qwen MoE models"));
    }
    let num_experts = cfg.usize_any(&["num_experts", "num_local_experts"])?;
    let top_k =
        cfg.opt_usize("num_experts_per_tok")?
            .unwrap_or(if generation == Generation::Qwen2 {
                4
            } else {
                8
            });
    let step = cfg.opt_usize("decoder_sparse_step")?.unwrap_or(1).max(1);
    let mlp_only = cfg.usize_list("mlp_only_layers")?;
    let moe_layers = (0..cfg.num_hidden_layers)
        .map(|i| !mlp_only.contains(&i) && num_experts > 0 && (i + 1) % step == 0)
        .collect();
    let shared = match generation {
        Generation::Qwen3 => None,
        Generation::Qwen2 => match cfg.opt_usize("shared_expert_intermediate_size")? {
            Some(0) => None,
            size => Some(SharedExpertSpec {
                intermediate_size: size.unwrap_or(5632),
                module_name: "shared_expert",
                sigmoid_gate: true,
            }),
        },
    };
    let (qkv_bias, qk_norm, family, default_arch) = match generation {
        Generation::Qwen2 => (
            cfg.opt_bool("qkv_bias")?.unwrap_or(true),
            QkNormKind::None,
            "Qwen2-MoE",
            "Qwen2MoeForCausalLM",
        ),
        Generation::Qwen3 => (
            cfg.opt_bool("attention_bias")?.unwrap_or(false),
            QkNormKind::PerHead,
            "Qwen3-MoE",
            "Qwen3MoeForCausalLM",
        ),
    };
    Ok(ModelSpec {
        family,
        architecture: super::architecture_or(cfg, default_arch),
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
            qkv_bias,
            qk_norm,
            clip_qkv: None,
            sliding_window: None,
            rope: cfg.rope.clone(),
        },
        dense_intermediate_size: cfg.intermediate_size,
        moe_layers,
        moe: MoeSpec {
            router: RouterSpec {
                num_experts,
                top_k,
                scoring: Scoring::Softmax,
                selection: Selection::TopK,
                renormalize: cfg.opt_bool("norm_topk_prob")?.unwrap_or(false),
                routed_scaling_factor: 1.0,
                selection_bias: false,
            },
            expert_intermediate_size: cfg.usize_any(&["moe_intermediate_size"])?,
            shared,
            gate_in_f32: false,
            module_names: &["mlp"],
        },
    })
}
