//! Qwen2-MoE (`Qwen2MoeForCausalLM`) and Qwen3-MoE (`Qwen3MoeForCausalLM`): softmax top-k,
//! renormalized only when `norm_topk_prob`; MoE in layers where `(i + 1) % decoder_sparse_step == 0`
//! and `i ∉ mlp_only_layers`. Qwen2-MoE adds a shared expert scaled by
//! `sigmoid(shared_expert_gate(x))` and qkv bias; Qwen3-MoE has per-head q/k RMSNorm and an explicit
//! `head_dim`. References: transformers `models/qwen2_moe/modeling_qwen2_moe.py`,
//! `models/qwen3_moe/modeling_qwen3_moe.py`.

use super::super::config::{CoreConfig, CoreDefaults, ModelConfig};
use super::super::spec::{AttentionWindow, ModelSpec, QkNormKind, SharedExpertSpec};
use crate::error::Result;
use crate::routing::{Normalization, RouterSpec, RoutingRule};

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
    cfg.require_silu("hidden_act")?;
    if cfg.opt_bool("use_sliding_window")?.unwrap_or(false) {
        return Err(cfg.bad("use_sliding_window=true is not supported yet for Qwen MoE models"));
    }
    let core = CoreConfig::read(cfg, CoreDefaults::default())?;
    let num_experts = cfg.positive_any(&["num_experts", "num_local_experts"])?;
    let default_k = if generation == Generation::Qwen2 {
        4
    } else {
        8
    };
    let top_k = cfg.top_k(&["num_experts_per_tok"], Some(default_k), num_experts)?;
    let step = cfg.opt_usize("decoder_sparse_step")?.unwrap_or(1).max(1);
    let mlp_only = cfg.usize_list("mlp_only_layers")?;
    let mut attention = super::gqa(&core, cfg.rope(10_000.0)?);
    let (family, default_arch) = match generation {
        Generation::Qwen2 => {
            // Qwen2-MoE always has q/k/v biases (the field is transformers 5's), never on o.
            attention.qkv_bias = cfg.opt_bool("qkv_bias")?.unwrap_or(true);
            ("Qwen2-MoE", "Qwen2MoeForCausalLM")
        }
        Generation::Qwen3 => {
            attention.qkv_bias = cfg.opt_bool("attention_bias")?.unwrap_or(false);
            attention.o_bias = attention.qkv_bias;
            attention.qk_norm = QkNormKind::PerHead;
            ("Qwen3-MoE", "Qwen3MoeForCausalLM")
        }
    };
    let mut moe = super::moe(
        RouterSpec {
            normalization: if cfg.opt_bool("norm_topk_prob")?.unwrap_or(false) {
                Normalization::Sum
            } else {
                Normalization::None
            },
            ..RouterSpec::plain(num_experts, top_k, RoutingRule::SoftmaxTopK)
        },
        super::gate("gate"),
        super::per_expert(
            cfg.positive_any(&["moe_intermediate_size"])?,
            "gate_proj",
            "up_proj",
            "down_proj",
        ),
    );
    if generation == Generation::Qwen2 {
        moe.shared = match cfg.opt_usize("shared_expert_intermediate_size")? {
            Some(0) => None,
            size => Some(SharedExpertSpec {
                sigmoid_gate: Some("shared_expert_gate"),
                ..SharedExpertSpec::swiglu(size.unwrap_or(5632), "shared_expert")
            }),
        };
    }
    Ok(super::llama_like(
        family,
        super::architecture_or(cfg, default_arch),
        &core,
        attention,
        super::layers(core.num_hidden_layers, AttentionWindow::Full, |i| {
            !mlp_only.contains(&i) && (i + 1) % step == 0
        }),
        moe,
    ))
}
