//! HunYuan-MoE (`HunYuanMoEV1ForCausalLM`: Hunyuan-A13B). Reference: transformers
//! `models/hunyuan_v1_moe/modeling_hunyuan_v1_moe.py`.
//!
//! - Every layer is MoE. Router `mlp.gate.wg` (no bias): softmax, top-k, renormalized; k may be
//!   given per layer (`moe_topk` as a list).
//! - Experts `experts.N.gate_proj` / `up_proj` / `down_proj` of `intermediate_size`, plus an
//!   unweighted shared MLP `mlp.shared_mlp` of the same size added to their sum. (The hub's
//!   `moe_intermediate_size` and `num_shared_expert` lists are not read by transformers.)
//! - Attention: Llama's (q/k/v/o biases when `attention_bias`) with RMSNorm over each head
//!   *after* rotary (`query_layernorm`, `key_layernorm`).
//! - Rotary: the release's `{"type": "dynamic", "alpha": α}` is NTK-alpha: a fixed base
//!   θ · α^(d / (d − 2)) for head_dim d, not sequence-dependent.

use super::super::config::{CoreConfig, CoreDefaults, ModelConfig, RopeConfig, RopeScaling};
use super::super::spec::{AttentionWindow, ModelSpec, QkNormKind, SharedExpertSpec};
use crate::error::Result;
use crate::routing::{Normalization, RouterSpec, RoutingRule};
use serde_json::Value;

pub fn spec(cfg: &ModelConfig) -> Result<ModelSpec> {
    cfg.require_silu("hidden_act")?;
    let core = CoreConfig::read(
        cfg,
        CoreDefaults {
            rms_norm_eps: 1e-5,
            max_position_embeddings: 2048,
            tie_word_embeddings: false,
        },
    )?;
    let num_experts = cfg.positive_any(&["num_experts", "num_local_experts"])?;
    let per_layer_k = layer_top_k(cfg, core.num_hidden_layers, num_experts)?;
    let top_k = per_layer_k.iter().copied().max().unwrap_or(1);
    let (rope, rope_note) = rope(cfg, core.head_dim)?;
    let mut attention = super::gqa(&core, rope);
    attention.qkv_bias = cfg.opt_bool("attention_bias")?.unwrap_or(false);
    attention.o_bias = attention.qkv_bias;
    attention.qk_norm = QkNormKind::PerHeadAfterRotary;
    let intermediate = core.intermediate_size;
    let mut moe = super::moe(
        RouterSpec {
            normalization: Normalization::Sum,
            ..RouterSpec::plain(num_experts, top_k, RoutingRule::SoftmaxTopK)
        },
        super::gate("gate.wg"),
        super::per_expert(intermediate, "gate_proj", "up_proj", "down_proj"),
    );
    moe.shared = Some(SharedExpertSpec::swiglu(intermediate, "shared_mlp"));
    let mut layers = super::layers(core.num_hidden_layers, AttentionWindow::Full, |_| true);
    for (layer, k) in layers.iter_mut().zip(&per_layer_k) {
        layer.top_k = (*k != top_k).then_some(*k);
    }
    let mut spec = super::llama_like(
        "HunYuan-MoE",
        super::architecture_or(cfg, "HunYuanMoEV1ForCausalLM"),
        &core,
        attention,
        layers,
        moe,
    );
    spec.notes.extend(rope_note);
    Ok(spec)
}

/// `moe_topk` (alias `num_experts_per_tok`) as one k for every layer, or a list with one per
/// layer; each in 1..=`num_experts`.
fn layer_top_k(cfg: &ModelConfig, layers: usize, num_experts: usize) -> Result<Vec<usize>> {
    let name = ["moe_topk", "num_experts_per_tok"]
        .into_iter()
        .find(|n| cfg.contains(n))
        .unwrap_or("moe_topk");
    let ks = match cfg.value(name) {
        Some(Value::Array(_)) => {
            let ks = cfg.usize_list(name)?;
            if ks.len() < layers {
                return Err(cfg.bad(format!(
                    "'{}' lists {} layers of {layers}",
                    cfg.field(name),
                    ks.len()
                )));
            }
            ks[..layers].to_vec()
        }
        _ => vec![cfg.opt_usize(name)?.unwrap_or(1); layers],
    };
    if let Some(k) = ks.iter().find(|&&k| k == 0 || k > num_experts) {
        return Err(cfg.bad(format!(
            "'{}' holds {k}: each k must be in 1..={num_experts} (the number of experts)",
            cfg.field(name)
        )));
    }
    Ok(ks)
}

/// HunYuanMoEV1RotaryEmbedding: "dynamic" with an `alpha` is a fixed NTK-alpha base (returned with
/// a note saying so); other rope types as every family reads them.
fn rope(cfg: &ModelConfig, head_dim: usize) -> Result<(RopeConfig, Option<String>)> {
    for name in ["rope_parameters", "rope_scaling"] {
        let Some(p) = cfg.sub(name)? else { continue };
        let kind = match p.opt_str("rope_type")? {
            Some(kind) => Some(kind),
            None => p.opt_str("type")?,
        };
        if kind.as_deref() != Some("dynamic") {
            continue;
        }
        let Some(alpha) = p.opt_f64("alpha")? else {
            return Err(cfg.bad(format!(
                "'{}': dynamic NTK rope without 'alpha' is not supported (it depends on the sequence length)",
                cfg.field(name)
            )));
        };
        let theta = match p.opt_f64("rope_theta")? {
            Some(t) => t,
            None => cfg.opt_f64("rope_theta")?.unwrap_or(10_000.0),
        };
        let d = head_dim as f64;
        if !(alpha.is_finite() && alpha > 0.0 && theta > 0.0 && head_dim > 2) {
            return Err(cfg.bad(format!(
                "'{}': NTK-alpha rope needs alpha > 0, rope_theta > 0 and head_dim > 2",
                cfg.field(name)
            )));
        }
        let base = theta * alpha.powf(d / (d - 2.0));
        let note = format!(
            "rotary 'dynamic' with alpha {alpha} is NTK-alpha: a fixed base θ·α^(d/(d−2)) = {base:.6} for rope_theta {theta}, as transformers computes it"
        );
        let rope = RopeConfig {
            theta: base,
            scaling: RopeScaling::Default,
            partial_rotary_factor: 1.0,
        };
        return Ok((rope, Some(note)));
    }
    Ok((cfg.rope(10_000.0)?, None))
}
