//! Granite-MoE (`GraniteMoeForCausalLM`) and Granite-MoE-Shared (`GraniteMoeSharedForCausalLM`).
//! References: transformers `models/granitemoe/modeling_granitemoe.py`,
//! `models/granitemoeshared/modeling_granitemoeshared.py` (hub tensor names through their
//! conversion mapping).
//!
//! - Router `block_sparse_moe.router.layer` (no bias): top-k of the logits, softmax over the k.
//! - Experts stacked in the block itself: `input_linear` `[E, 2I, H]` (gate then up) and
//!   `output_linear` `[E, H, I]`.
//! - Multipliers: embeddings × `embedding_multiplier`, each block's attention and MoE output ×
//!   `residual_multiplier` before the residual add, attention softmax scale
//!   `attention_multiplier` (not `head_dim^-0.5`), logits ÷ `logits_scaling`.
//! - Granite-MoE-Shared adds a shared MLP beside the MoE block, `shared_mlp.input_linear`
//!   `[2S, H]` (gate then up) and `output_linear`, S = `shared_intermediate_size` (none when 0),
//!   summed with the routed experts before the residual multiplier.

use super::super::config::{CoreConfig, CoreDefaults, ModelConfig};
use super::super::spec::{
    Activation, AttentionWindow, ExpertLayout, ExpertSpec, GateUpOrder, MlpProjections, ModelSpec,
    Multipliers, Orientation, SharedExpertSpec,
};
use crate::error::Result;
use crate::routing::{RouterSpec, RoutingRule};

pub fn spec(cfg: &ModelConfig) -> Result<ModelSpec> {
    spec_of(cfg, false)
}

pub fn spec_shared(cfg: &ModelConfig) -> Result<ModelSpec> {
    spec_of(cfg, true)
}

fn spec_of(cfg: &ModelConfig, shared: bool) -> Result<ModelSpec> {
    cfg.require_silu("hidden_act")?;
    let core = CoreConfig::read(
        cfg,
        CoreDefaults {
            rms_norm_eps: 1e-6,
            max_position_embeddings: 2048,
            tie_word_embeddings: false,
        },
    )?;
    let num_experts = cfg.positive_any(&["num_local_experts", "num_experts"])?;
    let top_k = cfg.top_k(&["num_experts_per_tok"], Some(2), num_experts)?;
    let multiplier = |name: &str| -> Result<f64> {
        let v = cfg.opt_f64(name)?.unwrap_or(1.0);
        if !v.is_finite() || v == 0.0 {
            return Err(cfg.bad(format!(
                "'{}' = {v} must be a finite non-zero number",
                cfg.field(name)
            )));
        }
        Ok(v)
    };
    let mut attention = super::gqa(&core, cfg.rope(10_000.0)?);
    attention.qkv_bias = cfg.opt_bool("attention_bias")?.unwrap_or(false);
    attention.o_bias = attention.qkv_bias;
    attention.scale = multiplier("attention_multiplier")?;
    let (family, default_arch) = if shared {
        ("Granite-MoE-Shared", "GraniteMoeSharedForCausalLM")
    } else {
        ("Granite-MoE", "GraniteMoeForCausalLM")
    };
    let mut spec = super::llama_like(
        family,
        super::architecture_or(cfg, default_arch),
        &core,
        attention,
        super::layers(core.num_hidden_layers, AttentionWindow::Full, |_| true),
        super::moe(
            RouterSpec::plain(num_experts, top_k, RoutingRule::TopKSoftmax),
            super::gate("router.layer"),
            ExpertSpec {
                intermediate_size: cfg.positive_any(&["intermediate_size"])?,
                module: "",
                layout: ExpertLayout::Stacked {
                    gate_up: "input_linear.weight",
                    down: "output_linear.weight",
                    orientation: Orientation::OutIn,
                    gate_up_order: GateUpOrder::Halves,
                },
                activation: Activation::SwiGlu,
                bias: false,
            },
        ),
    );
    spec.names.moe = &["block_sparse_moe"];
    let shared_size = if shared {
        cfg.opt_usize("shared_intermediate_size")?.unwrap_or(0)
    } else {
        0
    };
    spec.moe.shared = (shared_size > 0).then_some(SharedExpertSpec {
        beside_moe: true,
        projections: MlpProjections::InputOutputLinear,
        ..SharedExpertSpec::swiglu(shared_size, "shared_mlp")
    });
    spec.multipliers = Multipliers {
        embedding: multiplier("embedding_multiplier")?,
        residual: multiplier("residual_multiplier")?,
        logits_divisor: multiplier("logits_scaling")?,
        final_logit_softcap: None,
    };
    Ok(spec)
}
