//! ERNIE-4.5-MoE (`Ernie4_5_MoeForCausalLM`). Reference: transformers
//! `models/ernie4_5_moe/modeling_ernie4_5_moe.py`.
//!
//! - Router (f32): softmax over all experts; `moe_statics.e_score_correction_bias` is added for
//!   selection only; the chosen probabilities are divided by `max(sum, moe_norm_min)`.
//! - MoE in layers `i` with `(i + 1) % moe_layer_interval == 0` and
//!   `moe_layer_start_index ≤ i ≤ moe_layer_end_index` (−1: the last layer); others dense.
//! - Shared experts (`moe_intermediate_size · moe_num_shared_experts`) added to every MoE output.
//! - `use_bias` puts biases on q/k/v/o, the dense and shared MLPs and the LM head (not on the
//!   routed experts).
//! - Rotary pairs dimensions 2i/2i+1, θ default 500 000; embeddings tied by default.

use super::super::config::{CoreConfig, CoreDefaults, ModelConfig};
use super::super::spec::{AttentionWindow, GateSpec, ModelSpec, RopePairing, SharedExpertSpec};
use crate::error::Result;
use crate::routing::{Normalization, RouterSpec, RoutingRule};

pub fn spec(cfg: &ModelConfig) -> Result<ModelSpec> {
    cfg.require_silu("hidden_act")?;
    let core = CoreConfig::read(
        cfg,
        CoreDefaults {
            rms_norm_eps: 1e-5,
            max_position_embeddings: 131_072,
            tie_word_embeddings: true,
        },
    )?;
    let n = core.num_hidden_layers;
    let num_experts = cfg.positive_any(&["moe_num_experts", "num_experts"])?;
    let top_k = cfg.top_k(&["moe_k", "num_experts_per_tok"], Some(6), num_experts)?;
    let start = cfg.opt_usize("moe_layer_start_index")?.unwrap_or(1);
    let end = match cfg.opt_i64("moe_layer_end_index")?.unwrap_or(-1) {
        -1 => n as i64 - 1,
        e => e,
    };
    let interval = cfg.opt_usize("moe_layer_interval")?.unwrap_or(1);
    if interval == 0 {
        return Err(cfg.bad(format!(
            "'{}' must be positive",
            cfg.field("moe_layer_interval")
        )));
    }
    let bias = cfg.opt_bool("use_bias")?.unwrap_or(false);
    let mut attention = super::gqa(&core, cfg.rope(500_000.0)?);
    attention.qkv_bias = bias;
    attention.o_bias = bias;
    attention.rope_pairing = RopePairing::Interleaved;
    let moe_intermediate = cfg.positive_any(&["moe_intermediate_size"])?;
    let n_shared = cfg.opt_usize("moe_num_shared_experts")?.unwrap_or(2);
    let mut moe = super::moe(
        RouterSpec {
            normalization: Normalization::SumClamped {
                min: cfg.opt_f64("moe_norm_min")?.unwrap_or(1e-12) as f32,
            },
            selection_bias: true,
            ..RouterSpec::plain(num_experts, top_k, RoutingRule::SoftmaxTopK)
        },
        GateSpec {
            in_f32: true,
            selection_bias: Some("moe_statics.e_score_correction_bias"),
            ..super::gate("gate")
        },
        super::per_expert(moe_intermediate, "gate_proj", "up_proj", "down_proj"),
    );
    moe.shared = (n_shared > 0).then_some(SharedExpertSpec {
        bias,
        ..SharedExpertSpec::swiglu(moe_intermediate * n_shared, "shared_experts")
    });
    let mut spec = super::llama_like(
        "ERNIE-4.5-MoE",
        super::architecture_or(cfg, "Ernie4_5_MoeForCausalLM"),
        &core,
        attention,
        super::layers(n, AttentionWindow::Full, |i| {
            (i + 1) % interval == 0 && i >= start && (i as i64) <= end
        }),
        moe,
    );
    spec.dense.bias = bias;
    spec.lm_head_bias = bias;
    Ok(spec)
}
