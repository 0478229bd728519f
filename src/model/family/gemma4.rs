//! Gemma-4's text MoE (`Gemma4ForCausalLM`, and the text part of the multimodal
//! `Gemma4ForConditionalGeneration`, whose `text_config` and `model.language_model.` weights it
//! reads). Reference: transformers `models/gemma4/modeling_gemma4.py` and
//! `configuration_gemma4.py`.
//!
//! - Every layer runs a dense GeGLU MLP and the routed experts side by side on the residual
//!   stream, each between its own RMSNorms (`pre_feedforward_layernorm` →
//!   `mlp` → `post_feedforward_layernorm_1`, `pre_feedforward_layernorm_2` → `experts` →
//!   `post_feedforward_layernorm_2`); their sum passes `post_feedforward_layernorm` before the
//!   residual add, and the block's output is multiplied by its stored `layer_scalar`.
//! - The router reads the residual through a weightless RMSNorm × `router.scale` ×
//!   `hidden^-½`, then softmax → top-k → renormalize → × `router.per_expert_scale` at the chosen
//!   experts.
//! - Attention: q/k RMSNorm per head before rotary, a weightless RMSNorm on each value head,
//!   softmax scale 1. Sliding layers use `head_dim`, `num_key_value_heads` and default rotary;
//!   full layers their own head_dim and kv heads (`global_head_dim` / `num_global_key_value_heads`
//!   in the Hub's configs, `per_layer_config` in those transformers 5 writes), proportional
//!   rotary, and with `attention_k_eq_v` no `v_proj` (values are the raw keys). The last
//!   `num_kv_shared_layers` layers have no keys of their own: each attends to those of the last
//!   unshared layer of its kind.
//! - Embeddings × √hidden; logits capped at `final_logit_softcapping`. Every RMSNorm multiplies
//!   its weight (used as stored, not `1 + w`) in f32.
//!
//! Refused rather than computed wrong: per-layer input embeddings (`hidden_size_per_layer_input`,
//! the dense E2B/E4B models), bidirectional attention over all tokens, double-wide MLPs, and
//! Gemma-4 without MoE blocks.

use super::super::config::{CoreConfig, CoreDefaults, ModelConfig, RopeConfig, RopeScaling};
use super::super::spec::{
    Activation, AttentionWindow, BlockLayout, BranchNorms, ExpertSpec, FfnKind, GateSpec,
    LayerAttention, LayerSpec, ModelSpec, NormKind, QkNormKind, SharedExpertSpec, TensorNames,
};
use crate::error::Result;
use crate::routing::{Normalization, RouterSpec, RoutingRule};
use serde_json::Value;

const SLIDING: &str = "sliding_attention";
const FULL: &str = "full_attention";

pub fn spec(cfg: &ModelConfig) -> Result<ModelSpec> {
    match cfg.sub("text_config")? {
        Some(text) => spec_of(
            &text,
            TensorNames::llama_under("model.language_model", "lm_head"),
        ),
        None => spec_of(cfg, TensorNames::llama()),
    }
}

fn spec_of(cfg: &ModelConfig, names: TensorNames) -> Result<ModelSpec> {
    refuse_unsupported(cfg)?;
    let mut core = CoreConfig::read(
        cfg,
        CoreDefaults {
            rms_norm_eps: 1e-6,
            max_position_embeddings: 131_072,
            tie_word_embeddings: true,
        },
    )?;
    if !cfg.contains("head_dim") {
        core.head_dim = 256;
    }
    let n = core.num_hidden_layers;
    let kinds = layer_types(cfg, n)?;
    let full_heads = full_layer_heads(cfg, &core, &kinds)?;
    let kv_from = kv_sources(cfg, &kinds)?;

    let bias = cfg.opt_bool("attention_bias")?.unwrap_or(false);
    let gemma_attention = |head_dim: usize, kv_heads: usize, rope: RopeConfig| {
        let mut a = super::gqa(&core, rope);
        a.head_dim = head_dim;
        a.num_kv_heads = kv_heads;
        a.qkv_bias = bias;
        a.o_bias = bias;
        a.qk_norm = QkNormKind::PerHead;
        a.value_norm = true;
        a.scale = 1.0;
        a
    };
    let sliding = gemma_attention(
        core.head_dim,
        core.num_key_value_heads,
        rope_of(cfg, SLIDING)?,
    );
    let mut full = gemma_attention(
        full_heads.head_dim,
        full_heads.kv_heads,
        rope_of(cfg, FULL)?,
    );
    full.value_is_key = cfg.opt_bool("attention_k_eq_v")?.unwrap_or(false);
    if !core.num_attention_heads.is_multiple_of(full.num_kv_heads) {
        return Err(cfg.bad(format!(
            "{} attention heads are not a multiple of the full layers' {} kv heads",
            core.num_attention_heads, full.num_kv_heads
        )));
    }

    let window = cfg.opt_usize("sliding_window")?.unwrap_or(512);
    let layers = kinds
        .iter()
        .zip(&kv_from)
        .map(|(&is_full, &kv_from)| LayerSpec {
            attention: LayerAttention {
                window: if is_full {
                    AttentionWindow::Full
                } else {
                    AttentionWindow::Sliding(window)
                },
                global: is_full,
                kv_from,
                ..LayerAttention::FULL
            },
            ffn: FfnKind::Moe,
            top_k: None,
        })
        .collect();

    let num_experts = cfg.positive_any(&["num_experts"])?;
    let top_k = cfg.top_k(&["top_k_experts"], None, num_experts)?;
    let mut moe = super::moe(
        RouterSpec {
            normalization: Normalization::Sum,
            ..RouterSpec::plain(num_experts, top_k, RoutingRule::SoftmaxTopK)
        },
        GateSpec {
            input_scale: Some("router.scale"),
            expert_scale: Some("router.per_expert_scale"),
            ..super::gate("router.proj")
        },
        ExpertSpec {
            activation: Activation::GeluTanhGlu,
            ..super::per_expert(
                cfg.positive_any(&["moe_intermediate_size"])?,
                "gate_proj",
                "up_proj",
                "down_proj",
            )
        },
    );
    moe.shared = Some(SharedExpertSpec {
        beside_moe: true,
        activation: Activation::GeluTanhGlu,
        ..SharedExpertSpec::swiglu(cfg.positive_any(&["intermediate_size"])?, "mlp")
    });
    moe.branch_norms = Some(BranchNorms {
        shared_input: "pre_feedforward_layernorm",
        shared_output: "post_feedforward_layernorm_1",
        experts_input: "pre_feedforward_layernorm_2",
        experts_output: "post_feedforward_layernorm_2",
    });

    let mut spec = super::llama_like(
        "Gemma-4",
        super::architecture_or(cfg, "Gemma4ForCausalLM"),
        &core,
        sliding,
        layers,
        moe,
    );
    spec.global_attention = Some(full);
    spec.block = BlockLayout::Sandwich {
        ffn_output_norm: "post_feedforward_layernorm",
        layer_scalar: "layer_scalar",
    };
    spec.names = TensorNames {
        moe: &[""],
        ..names
    };
    spec.norm.kind = NormKind::RmsWeightInF32;
    spec.multipliers.embedding = (core.hidden_size as f64).sqrt();
    spec.multipliers.final_logit_softcap = cfg
        .opt_f64("final_logit_softcapping")?
        .filter(|c| *c != 0.0);
    if cfg.str_list("layer_types")?.last().map(String::as_str) == Some(SLIDING) {
        spec.notes.push(
            "layer_types ends with a sliding layer; the last layer attends fully, as transformers forces it".into(),
        );
    }
    Ok(spec)
}

/// Configurations the kernels do not compute, each named in a one-line error.
fn refuse_unsupported(cfg: &ModelConfig) -> Result<()> {
    match cfg.opt_str("hidden_activation")?.as_deref() {
        None | Some("gelu_pytorch_tanh") => {}
        Some(other) => {
            return Err(cfg.bad(format!(
                "'{}' = '{other}' is not supported (Gemma-4 uses gelu_pytorch_tanh)",
                cfg.field("hidden_activation")
            )))
        }
    }
    if !cfg.opt_bool("enable_moe_block")?.unwrap_or(false) {
        return Err(cfg.bad(format!(
            "'{}' is not true: this Gemma-4 has no experts to route",
            cfg.field("enable_moe_block")
        )));
    }
    // Gemma4TextConfig's default is 256, so a config that leaves it out has them.
    if cfg.opt_usize("hidden_size_per_layer_input")?.unwrap_or(256) != 0 {
        return Err(cfg.bad(format!(
            "per-layer input embeddings ('{}' > 0) are not supported",
            cfg.field("hidden_size_per_layer_input")
        )));
    }
    if cfg.opt_str("use_bidirectional_attention")?.as_deref() == Some("all") {
        return Err(cfg.bad(format!(
            "'{}' = 'all' (non-causal attention) is not supported",
            cfg.field("use_bidirectional_attention")
        )));
    }
    let shared = cfg.opt_usize("num_kv_shared_layers")?.unwrap_or(0);
    if shared > 0 && cfg.opt_bool("use_double_wide_mlp")?.unwrap_or(false) {
        return Err(cfg.bad(format!(
            "'{}' (double-width MLPs on KV-sharing layers) is not supported",
            cfg.field("use_double_wide_mlp")
        )));
    }
    Ok(())
}

/// Per layer whether it attends fully: `layer_types`, else five sliding layers then one full;
/// the last layer is full whatever the list says (transformers forces it).
fn layer_types(cfg: &ModelConfig, n: usize) -> Result<Vec<bool>> {
    let mut full = super::layer_kinds(cfg, "layer_types", n, FULL, SLIDING)?
        .unwrap_or_else(|| (0..n).map(|i| (i + 1) % 6 == 0).collect());
    if let Some(last) = full.last_mut() {
        *last = true;
    }
    Ok(full)
}

/// Head size and kv heads of the full layers.
struct FullHeads {
    head_dim: usize,
    kv_heads: usize,
}

/// The full layers' heads: from transformers 5's `per_layer_config` (layer index → overrides)
/// when present, else from the Hub's `global_head_dim` (default 512) and, with
/// `attention_k_eq_v`, `num_global_key_value_heads` (as `Gemma4TextConfig.__post_init__`).
fn full_layer_heads(cfg: &ModelConfig, core: &CoreConfig, full: &[bool]) -> Result<FullHeads> {
    let Some(overrides) = cfg.sub("per_layer_config")? else {
        let k_eq_v = cfg.opt_bool("attention_k_eq_v")?.unwrap_or(false);
        let global_kv = cfg.opt_usize("num_global_key_value_heads")?;
        return Ok(FullHeads {
            head_dim: cfg.opt_usize("global_head_dim")?.unwrap_or(512),
            kv_heads: match global_kv {
                Some(kv) if k_eq_v => kv,
                _ => core.num_key_value_heads,
            },
        });
    };
    let mut found: Option<(usize, usize)> = None;
    for (key, value) in &overrides.raw {
        let layer: usize = key.parse().map_err(|_| {
            cfg.bad(format!(
                "'{}' has key '{key}', not a layer index",
                cfg.field("per_layer_config")
            ))
        })?;
        let Value::Object(fields) = value else {
            return Err(cfg.bad(format!("'{}' must be an object", overrides.field(key))));
        };
        let mut heads = (core.head_dim, core.num_key_value_heads);
        for (name, v) in fields {
            let number = v.as_u64().filter(|v| *v > 0).map(|v| v as usize);
            match (name.as_str(), number) {
                ("head_dim", Some(d)) => heads.0 = d,
                ("num_key_value_heads", Some(k)) => heads.1 = k,
                _ => {
                    return Err(cfg.bad(format!(
                        "'{}.{name}' = {v} is not supported (only head_dim and num_key_value_heads may differ per layer)",
                        overrides.field(key)
                    )))
                }
            }
        }
        let is_full = full.get(layer).copied().unwrap_or(false);
        if !is_full {
            return Err(cfg.bad(format!(
                "'{}' overrides layer {layer}, which is not a full-attention layer",
                cfg.field("per_layer_config")
            )));
        }
        match found {
            Some(seen) if seen != heads => {
                return Err(cfg.bad(format!(
                    "'{}' gives the full layers different heads ({} × {} and {} × {})",
                    cfg.field("per_layer_config"),
                    seen.1,
                    seen.0,
                    heads.1,
                    heads.0
                )))
            }
            _ => found = Some(heads),
        }
    }
    let (head_dim, kv_heads) = found.unwrap_or((core.head_dim, core.num_key_value_heads));
    Ok(FullHeads { head_dim, kv_heads })
}

/// Rotary of one layer kind from `rope_parameters[kind]`, else Gemma4TextConfig's default
/// (sliding: θ 10 000; full: proportional over a quarter, θ 10⁶). Gemma-4's default rotary turns
/// the whole head whatever `partial_rotary_factor` says.
fn rope_of(cfg: &ModelConfig, kind: &str) -> Result<RopeConfig> {
    let default_theta = if kind == FULL { 1e6 } else { 1e4 };
    let mut rope = match cfg.layer_type_rope(kind, default_theta)? {
        Some(rope) => rope,
        None if kind == FULL => RopeConfig {
            theta: default_theta,
            scaling: RopeScaling::Proportional {
                factor: 1.0,
                rotated_fraction: 0.25,
            },
            partial_rotary_factor: 1.0,
        },
        None => RopeConfig {
            theta: default_theta,
            scaling: RopeScaling::Default,
            partial_rotary_factor: 1.0,
        },
    };
    if rope.scaling == RopeScaling::Default {
        rope.partial_rotary_factor = 1.0;
    }
    Ok(rope)
}

/// Per layer, the layer whose keys and values it reuses: from `num_kv_shared_layers` before
/// the end on, each layer reads the last unshared layer of its kind (`kv_sharing_modes`).
fn kv_sources(cfg: &ModelConfig, full: &[bool]) -> Result<Vec<Option<usize>>> {
    let n = full.len();
    let shared = cfg.opt_usize("num_kv_shared_layers")?.unwrap_or(0);
    if shared == 0 {
        return Ok(vec![None; n]);
    }
    if shared >= n {
        return Err(cfg.bad(format!(
            "'{}' = {shared} leaves no layer of the {n} with keys of its own",
            cfg.field("num_kv_shared_layers")
        )));
    }
    let first_shared = n - shared;
    (0..n)
        .map(|i| {
            if i < first_shared {
                return Ok(None);
            }
            (0..first_shared)
                .rev()
                .find(|&j| full[j] == full[i])
                .map(Some)
                .ok_or_else(|| {
                    cfg.bad(format!(
                        "layer {i} shares keys, but no unshared layer attends like it ('{}')",
                        cfg.field("num_kv_shared_layers")
                    ))
                })
        })
        .collect()
}
