//! Qwen3-Next (`Qwen3NextForCausalLM`) and Qwen3.5-MoE (`Qwen3_5MoeForCausalLM`, and the text
//! part of the multimodal `Qwen3_5MoeForConditionalGeneration`, whose `text_config` and
//! `model.language_model.` weights it reads). References: transformers
//! `models/qwen3_next/modeling_qwen3_next.py`, `models/qwen3_5_moe/modeling_qwen3_5_moe.py`.
//!
//! Qwen3.5-MoE is Qwen3-Next with: every layer MoE, the top-k weights always renormalized
//! (`Qwen3VLMoeTextTopKRouter`), the DeltaNet's projections stored separately (`in_proj_qkv`,
//! `in_proj_z`, `in_proj_b`, `in_proj_a`), and multimodal rotary sections (`mrope_section`) that
//! for text, where the three position streams are equal, are plain rotary.
//!
//! - Hybrid layers by `layer_types` (default: every `full_attention_interval`-th layer, 4, is
//!   full attention, the others linear): Gated DeltaNet `linear_attn` (see
//!   `layers/linear_attention.rs`) or gated full attention `self_attn`.
//! - Full attention: GQA whose `q_proj` yields per head the query and a gate (output ×
//!   sigmoid(gate) before `o_proj`), per-head q/k RMSNorm, rotary over `partial_rotary_factor`
//!   (default 0.25) of `head_dim` (default 256).
//! - Every RMSNorm is zero-centred (`1 + w`), except the DeltaNet's gated norm.
//! - MoE in layers where `(i + 1) % decoder_sparse_step == 0` and `i ∉ mlp_only_layers`:
//!   softmax → top-k (renormalized when `norm_topk_prob`, default on), and a shared expert ×
//!   `sigmoid(shared_expert_gate(x))`, as Qwen2-MoE. The hub's multi-token-prediction weights
//!   (`mtp.*`) are not loaded, as in transformers.

use super::super::config::{CoreConfig, CoreDefaults, ModelConfig};
use super::super::spec::{
    AttentionWindow, DeltaNetProjections, FfnKind, LayerAttention, LayerSpec, LinearAttentionSpec,
    ModelSpec, NormKind, QkNormKind, SharedExpertSpec, TensorNames,
};
use crate::error::Result;
use crate::routing::{Normalization, RouterSpec, RoutingRule};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Generation {
    Next,
    Qwen35Moe,
}

pub fn spec(cfg: &ModelConfig) -> Result<ModelSpec> {
    spec_of(cfg, Generation::Next, TensorNames::llama())
}

pub fn spec_qwen3_5_moe(cfg: &ModelConfig) -> Result<ModelSpec> {
    match cfg.sub("text_config")? {
        Some(text) => spec_of(
            &text,
            Generation::Qwen35Moe,
            TensorNames::llama_under("model.language_model", "lm_head"),
        ),
        None => spec_of(cfg, Generation::Qwen35Moe, TensorNames::llama()),
    }
}

fn spec_of(cfg: &ModelConfig, generation: Generation, names: TensorNames) -> Result<ModelSpec> {
    let next = generation == Generation::Next;
    cfg.require_silu("hidden_act")?;
    let mut core = CoreConfig::read(
        cfg,
        CoreDefaults {
            rms_norm_eps: 1e-6,
            max_position_embeddings: 32_768,
            tie_word_embeddings: false,
        },
    )?;
    // Qwen3NextConfig's head_dim is 256 unless the config says.
    if !cfg.contains("head_dim") {
        core.head_dim = 256;
    }
    let num_experts = cfg.positive_any(&["num_experts", "num_local_experts"])?;
    let top_k = cfg.top_k(
        &["num_experts_per_tok"],
        Some(if next { 10 } else { 8 }),
        num_experts,
    )?;
    let mut rope = cfg.rope(10_000.0)?;
    if !cfg.names_partial_rotary()? {
        rope.partial_rotary_factor = 0.25;
    }
    let mut attention = super::gqa(&core, rope);
    attention.qkv_bias = cfg.opt_bool("attention_bias")?.unwrap_or(false);
    attention.o_bias = attention.qkv_bias;
    attention.qk_norm = QkNormKind::PerHead;
    attention.output_gate = true;

    let linear = LinearAttentionSpec {
        module: "linear_attn",
        projections: if next {
            DeltaNetProjections::GroupedQkvzBa
        } else {
            DeltaNetProjections::Separate
        },
        num_key_heads: cfg.opt_usize("linear_num_key_heads")?.unwrap_or(16),
        num_value_heads: cfg.opt_usize("linear_num_value_heads")?.unwrap_or(32),
        key_head_dim: cfg.opt_usize("linear_key_head_dim")?.unwrap_or(128),
        value_head_dim: cfg.opt_usize("linear_value_head_dim")?.unwrap_or(128),
        conv_kernel: cfg.opt_usize("linear_conv_kernel_dim")?.unwrap_or(4),
    };
    let linear_layers = linear_layers(cfg, core.num_hidden_layers)?;
    // Qwen3.5-MoE has no dense layers (its config class removes these fields).
    let (step, mlp_only) = if next {
        (
            cfg.opt_usize("decoder_sparse_step")?.unwrap_or(1).max(1),
            cfg.usize_list("mlp_only_layers")?,
        )
    } else {
        (1, Vec::new())
    };
    let layers = (0..core.num_hidden_layers)
        .map(|i| LayerSpec {
            attention: LayerAttention {
                window: AttentionWindow::Full,
                linear: linear_layers[i],
                ..LayerAttention::FULL
            },
            ffn: if !mlp_only.contains(&i) && (i + 1) % step == 0 {
                FfnKind::Moe
            } else {
                FfnKind::Dense
            },
            top_k: None,
        })
        .collect();
    let mut moe = super::moe(
        RouterSpec {
            normalization: if !next || cfg.opt_bool("norm_topk_prob")?.unwrap_or(true) {
                Normalization::Sum
            } else {
                Normalization::None
            },
            ..RouterSpec::plain(num_experts, top_k, RoutingRule::SoftmaxTopK)
        },
        super::gate("gate"),
        super::per_expert(
            cfg.opt_usize("moe_intermediate_size")?.unwrap_or(512),
            "gate_proj",
            "up_proj",
            "down_proj",
        ),
    );
    moe.shared = Some(SharedExpertSpec {
        sigmoid_gate: Some("shared_expert_gate"),
        ..SharedExpertSpec::swiglu(
            cfg.opt_usize("shared_expert_intermediate_size")?
                .unwrap_or(512),
            "shared_expert",
        )
    });
    let (family, default_arch) = if next {
        ("Qwen3-Next", "Qwen3NextForCausalLM")
    } else {
        ("Qwen3.5-MoE", "Qwen3_5MoeForCausalLM")
    };
    let mut spec = super::llama_like(
        family,
        super::architecture_or(cfg, default_arch),
        &core,
        attention,
        layers,
        moe,
    );
    spec.names = names;
    spec.norm.kind = NormKind::ZeroCentredRms;
    spec.linear_attention = Some(linear);
    Ok(spec)
}

/// Which layers are linear attention: `layer_types` ("linear_attention" / "full_attention"), or
/// all but every `full_attention_interval`-th (default 4).
fn linear_layers(cfg: &ModelConfig, layers: usize) -> Result<Vec<bool>> {
    let given = super::layer_kinds(
        cfg,
        "layer_types",
        layers,
        "linear_attention",
        "full_attention",
    )?;
    if let Some(linear) = given {
        return Ok(linear);
    }
    let interval = cfg.opt_usize("full_attention_interval")?.unwrap_or(4);
    if interval == 0 {
        return Err(cfg.bad(format!(
            "'{}' must be positive",
            cfg.field("full_attention_interval")
        )));
    }
    Ok((0..layers).map(|i| (i + 1) % interval != 0).collect())
}
