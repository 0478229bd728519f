//! One file per family: each reads config.json into a [`ModelSpec`] and holds no tensor code.
//! The helpers here are the defaults most families share (Llama-style GQA, one attention kind
//! for every layer, a plain SwiGLU MLP), so a family file states only where it differs.

pub mod dbrx;
pub mod deepseek;
pub mod dots1;
pub mod ernie;
pub mod gemma4;
pub mod glm4_moe;
pub mod gpt_oss;
pub mod granite;
pub mod hunyuan;
pub mod llama4;
pub mod minimax_m2;
pub mod mixtral;
pub mod olmoe;
pub mod phimoe;
pub mod qwen3_next;
pub mod qwen_moe;

use super::config::{CoreConfig, ModelConfig, RopeConfig};
use super::spec::{
    Activation, AttentionSpec, AttentionWindow, BlockLayout, DenseSpec, ExpertLayout, ExpertSpec,
    FfnKind, GateSpec, GqaSpec, LayerAttention, LayerSpec, ModelSpec, MoeSpec, Multipliers,
    NormKind, NormSpec, QkNormKind, QkvProjections, RopePairing, TensorNames, WeightTarget,
};
use crate::routing::RouterSpec;

/// `architectures[0]` of the config, or the family's class name when the config has none.
fn architecture_or(cfg: &ModelConfig, default: &str) -> String {
    cfg.architecture
        .clone()
        .unwrap_or_else(|| default.to_owned())
}

/// Llama-style GQA over the config's heads: separate projections without biases, no q/k norm,
/// `head_dim^-0.5` scale, halves-paired rotary.
fn gqa(core: &CoreConfig, rope: RopeConfig) -> GqaSpec {
    GqaSpec {
        num_heads: core.num_attention_heads,
        num_kv_heads: core.num_key_value_heads,
        head_dim: core.head_dim,
        projections: QkvProjections::Separate,
        qkv_bias: false,
        o_bias: false,
        qk_norm: QkNormKind::None,
        clip_qkv: None,
        sinks: false,
        scale: (core.head_dim as f64).powf(-0.5),
        output_gate: false,
        value_is_key: false,
        value_norm: false,
        rope,
        rope_pairing: RopePairing::Halves,
    }
}

/// Every layer with the same attention window; `moe(layer)` says which are MoE.
fn layers(n: usize, window: AttentionWindow, moe: impl Fn(usize) -> bool) -> Vec<LayerSpec> {
    (0..n)
        .map(|i| LayerSpec {
            attention: LayerAttention {
                window,
                ..LayerAttention::FULL
            },
            ffn: if moe(i) { FfnKind::Moe } else { FfnKind::Dense },
            top_k: None,
        })
        .collect()
}

/// The window of a config's optional `sliding_window` (every layer).
fn window_of(core: &CoreConfig) -> AttentionWindow {
    core.sliding_window
        .map_or(AttentionWindow::Full, AttentionWindow::Sliding)
}

/// Experts stored one tensor per projection under `experts.N`, SwiGLU, no biases.
fn per_expert(
    intermediate_size: usize,
    gate: &'static str,
    up: &'static str,
    down: &'static str,
) -> ExpertSpec {
    ExpertSpec {
        intermediate_size,
        module: "experts",
        layout: ExpertLayout::PerExpert { gate, up, down },
        activation: Activation::SwiGlu,
        bias: false,
    }
}

/// A router linear under `module`, no bias, in the model dtype.
fn gate(module: &'static str) -> GateSpec {
    GateSpec {
        module,
        bias: false,
        in_f32: false,
        selection_bias: None,
        input_scale: None,
        expert_scale: None,
    }
}

/// An MoE block with output-weighted routed experts and no shared expert.
fn moe(router: RouterSpec, gate: GateSpec, experts: ExpertSpec) -> MoeSpec {
    MoeSpec {
        router,
        gate,
        experts,
        shared: None,
        weights_on: WeightTarget::Output,
        branch_norms: None,
    }
}

/// DeepSeek-V3's router as GLM-4-MoE and dots1 configure it: sigmoid, a selection-only bias,
/// `n_group` groups scored by their top-2 sum with `topk_group` kept, weights renormalized when
/// `norm_topk_prob` (default `norm_default`), × `routed_scaling_factor` (default 1).
fn sigmoid_group_router(
    cfg: &ModelConfig,
    num_experts: usize,
    top_k: usize,
    norm_default: bool,
) -> crate::error::Result<RouterSpec> {
    use crate::routing::{GroupScore, Normalization, RoutingRule, Selection};
    let router = RouterSpec {
        num_experts,
        top_k,
        rule: RoutingRule::SigmoidTopK,
        selection: Selection::GroupLimited {
            num_groups: cfg.opt_usize("n_group")?.unwrap_or(1),
            topk_groups: cfg.opt_usize("topk_group")?.unwrap_or(1),
            group_score: GroupScore::TopTwoSum,
        },
        normalization: if cfg.opt_bool("norm_topk_prob")?.unwrap_or(norm_default) {
            Normalization::Sum
        } else {
            Normalization::None
        },
        routed_scaling_factor: cfg.opt_f64("routed_scaling_factor")?.unwrap_or(1.0) as f32,
        selection_bias: true,
    };
    match router.problem() {
        Some(problem) => Err(cfg.bad(format!(
            "n_group / topk_group / num_experts_per_tok: {problem}"
        ))),
        None => Ok(router),
    }
}

/// A per-layer list of two kinds (`layer_types`, `mlp_layer_types`): per layer whether it is
/// `yes` (else `no`); `None` when the config has no such list. Shorter lists and other names are
/// errors naming the field.
fn layer_kinds(
    cfg: &ModelConfig,
    name: &str,
    layers: usize,
    yes: &str,
    no: &str,
) -> crate::error::Result<Option<Vec<bool>>> {
    let kinds = cfg.str_list(name)?;
    if kinds.is_empty() {
        return Ok(None);
    }
    if kinds.len() < layers {
        return Err(cfg.bad(format!(
            "'{}' lists {} layers of {layers}",
            cfg.field(name),
            kinds.len()
        )));
    }
    kinds[..layers]
        .iter()
        .map(|k| match k.as_str() {
            k if k == yes => Ok(true),
            k if k == no => Ok(false),
            other => Err(cfg.bad(format!(
                "'{}' holds '{other}' (expected {yes} or {no})",
                cfg.field(name)
            ))),
        })
        .collect::<crate::error::Result<Vec<bool>>>()
        .map(Some)
}

/// A spec with the Llama layout, RMSNorm and no multipliers; callers adjust what differs.
fn llama_like(
    family: &'static str,
    architecture: String,
    core: &CoreConfig,
    attention: GqaSpec,
    layers: Vec<LayerSpec>,
    moe: MoeSpec,
) -> ModelSpec {
    ModelSpec {
        family,
        architecture,
        vocab_size: core.vocab_size,
        hidden_size: core.hidden_size,
        num_layers: core.num_hidden_layers,
        max_position_embeddings: core.max_position_embeddings,
        norm: NormSpec {
            kind: NormKind::Rms,
            eps: core.rms_norm_eps,
        },
        tie_word_embeddings: core.tie_word_embeddings,
        lm_head_bias: false,
        multipliers: Multipliers::default(),
        names: TensorNames::llama(),
        attention: AttentionSpec::Gqa(attention),
        global_attention: None,
        block: BlockLayout::PreNorm,
        linear_attention: None,
        layers,
        dense: DenseSpec {
            intermediate_size: core.intermediate_size,
            bias: false,
        },
        moe,
        notes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    //! Config quirks of released checkpoints that the fixtures (written by transformers 5.23)
    //! do not show, each on a fixture config edited to the hub's form.

    use super::super::config::{ModelConfig, RopeScaling};
    use super::super::registry;
    use super::super::spec::{ModelSpec, TemperatureTuning};
    use serde_json::Value;
    use std::path::Path;

    fn spec_of(fixture: &str, edit: impl FnOnce(&mut Value)) -> ModelSpec {
        let spec = try_spec_of(fixture, edit).unwrap();
        spec.validate().unwrap();
        spec
    }

    fn try_spec_of(
        fixture: &str,
        edit: impl FnOnce(&mut Value),
    ) -> crate::error::Result<ModelSpec> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(fixture)
            .join("config.json");
        let mut json: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut json);
        let cfg = ModelConfig::from_json_str(&json.to_string(), &path).unwrap();
        (registry::lookup(&cfg).unwrap().spec)(&cfg)
    }

    /// GLM-4.7-Flash reads its dense layers from `mlp_layer_types` (transformers ignores
    /// `first_k_dense_replace` there) and refuses a partial rotary it does not run.
    #[test]
    fn glm4_lite_dense_layers_from_mlp_layer_types() {
        let spec = spec_of("glm4-moe-lite", |c| {
            c["mlp_layer_types"] = serde_json::json!(["sparse", "dense", "sparse"]);
            c["first_k_dense_replace"] = 2.into();
        });
        let moe: Vec<bool> = (0..3).map(|l| spec.is_moe(l)).collect();
        assert_eq!(moe, [true, false, true]);
        let hub = spec_of("glm4-moe-lite-v4", |_| {});
        assert_eq!(
            (0..3).map(|l| hub.is_moe(l)).collect::<Vec<_>>(),
            [false, true, true]
        );
        let err = try_spec_of("glm4-moe-lite", |c| {
            c["rope_parameters"]["partial_rotary_factor"] = 0.5.into();
        })
        .unwrap_err();
        assert!(err.to_string().contains("partial_rotary_factor"), "{err}");
        let err = try_spec_of("glm4-moe-lite", |c| {
            c["mlp_layer_types"] = serde_json::json!(["dense", "moe", "sparse"]);
        })
        .unwrap_err();
        assert!(err.to_string().contains("'moe'"), "{err}");
    }

    /// HunYuan: k per layer from a `moe_topk` list (or one k), NTK-alpha rotary only with an
    /// `alpha`; wrong lists are refused naming the field.
    #[test]
    fn hunyuan_per_layer_k_and_rope() {
        let spec = spec_of("hunyuan-moe-v4", |_| {});
        assert_eq!(
            (0..3).map(|l| spec.top_k_of(l)).collect::<Vec<_>>(),
            [2, 3, 1]
        );
        assert!(spec.router_description().contains("top-k"));
        let one = spec_of("hunyuan-moe", |c| c["moe_topk"] = 2.into());
        assert!(!one.top_k_varies() && one.top_k_of(1) == 2);
        for (edit, says) in [
            (serde_json::json!([2, 3]), "lists 2 layers of 3"),
            (serde_json::json!([2, 9, 1]), "1..=8"),
        ] {
            let err = try_spec_of("hunyuan-moe", |c| c["moe_topk"] = edit).unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
        }
        let err = try_spec_of("hunyuan-moe-v4", |c| {
            c["rope_scaling"].as_object_mut().unwrap().remove("alpha");
        })
        .unwrap_err();
        assert!(err.to_string().contains("alpha"), "{err}");
    }

    /// dots1 without `layer_types` slides from `max_window_layers` on, with Dots1Config's
    /// 4096-token window when the config names none; `sliding_window: null` turns it off.
    #[test]
    fn dots1_sliding_layers_from_max_window_layers() {
        use super::super::spec::AttentionWindow;
        let windows = |spec: &ModelSpec| -> Vec<AttentionWindow> {
            spec.layers.iter().map(|l| l.attention.window).collect()
        };
        let hub = spec_of("dots1-v4", |c| {
            c.as_object_mut().unwrap().remove("sliding_window");
        });
        assert_eq!(
            windows(&hub),
            [
                AttentionWindow::Full,
                AttentionWindow::Sliding(4096),
                AttentionWindow::Sliding(4096)
            ]
        );
        let off = spec_of("dots1-v4", |c| c["sliding_window"] = Value::Null);
        assert!(windows(&off).iter().all(|w| *w == AttentionWindow::Full));
    }

    /// Qwen3-Next: linear layers from `layer_types` or `full_attention_interval`, Qwen3NextConfig's
    /// defaults (head_dim 256, a quarter of it rotating), zero-centred norms.
    #[test]
    fn qwen3_next_layer_kinds_and_defaults() {
        let linear = |spec: &ModelSpec| -> Vec<bool> {
            spec.layers.iter().map(|l| l.attention.linear).collect()
        };
        let hub = spec_of("qwen3-next-v4", |_| {});
        assert_eq!(linear(&hub), [true, false, true, false]);
        let every_fourth = spec_of("qwen3-next-v4", |c| {
            c.as_object_mut().unwrap().remove("full_attention_interval");
        });
        assert_eq!(linear(&every_fourth), [true, true, true, false]);
        let defaults = spec_of("qwen3-next-v4", |c| {
            let o = c.as_object_mut().unwrap();
            o.remove("head_dim");
            o.remove("partial_rotary_factor");
        });
        let super::super::spec::AttentionSpec::Gqa(a) = &defaults.attention else {
            panic!("Qwen3-Next is GQA")
        };
        assert_eq!((a.head_dim, a.rotary_dim()), (256, 64));
        assert!(a.output_gate);
        assert_eq!(
            defaults.norm.kind,
            super::super::spec::NormKind::ZeroCentredRms
        );
        let err = try_spec_of("qwen3-next", |c| {
            c["layer_types"][1] = "sliding_attention".into();
        })
        .unwrap_err();
        assert!(err.to_string().contains("sliding_attention"), "{err}");
    }

    /// MiniMax-M2's hub config gives `rotary_dim`, not `partial_rotary_factor`.
    #[test]
    fn minimax_rotary_dim_is_the_partial_rotary() {
        let spec = spec_of("minimax-m2-v4", |c| c["rotary_dim"] = 4.into());
        let super::super::spec::AttentionSpec::Gqa(a) = &spec.attention else {
            panic!("MiniMax-M2 is GQA")
        };
        assert_eq!(a.rotary_dim(), 4);
        assert!(try_spec_of("minimax-m2-v4", |c| c["rotary_dim"] = 32.into()).is_err());
    }

    /// databricks' config.json has θ only in `attn_config`; transformers 5.23 ignores it and uses
    /// 10 000, and so does moescope — saying so in the spec's notes.
    #[test]
    fn dbrx_attn_config_rope_theta_is_ignored_with_a_note() {
        let spec = spec_of("dbrx-v4", |c| {
            c["attn_config"]["rope_theta"] = 500_000.0.into()
        });
        let super::super::spec::AttentionSpec::Gqa(a) = &spec.attention else {
            panic!("DBRX is GQA")
        };
        assert_eq!(a.rope.theta, 10_000.0);
        assert!(
            spec.notes
                .iter()
                .any(|n| n.contains("attn_config.rope_theta")),
            "{:?}",
            spec.notes
        );
    }

    /// Meta's Llama-4 configs write `attn_temperature_tuning: 4`.
    #[test]
    fn llama4_numeric_temperature_flag_is_accepted() {
        let spec = spec_of("llama4-cg-v4", |c| {
            c["text_config"]["attn_temperature_tuning"] = 4.into();
        });
        assert!(spec.layers.iter().any(|l| matches!(
            l.attention.temperature_tuning,
            Some(TemperatureTuning { .. })
        )));
        let off = spec_of("llama4-cg-v4", |c| {
            c["text_config"]["attn_temperature_tuning"] = 0.into();
        });
        assert!(off
            .layers
            .iter()
            .all(|l| l.attention.temperature_tuning.is_none()));
    }

    /// GLM-4-MoE rotates half of each head unless the config says otherwise.
    #[test]
    fn glm_partial_rotary_defaults_to_half() {
        let spec = spec_of("glm4-moe-v4", |c| {
            c.as_object_mut().unwrap().remove("partial_rotary_factor");
        });
        let super::super::spec::AttentionSpec::Gqa(a) = &spec.attention else {
            panic!("GLM is GQA")
        };
        assert_eq!(a.rope.partial_rotary_factor, 0.5);
        assert_eq!(a.rotary_dim(), a.head_dim / 2);
    }

    /// A GPT-OSS config without rope fields gets GptOssConfig's YaRN (factor 32, no truncation).
    #[test]
    fn gpt_oss_default_rope_is_untruncated_yarn() {
        let spec = spec_of("gpt-oss-v4", |c| {
            let o = c.as_object_mut().unwrap();
            o.remove("rope_scaling");
            o.remove("rope_theta");
        });
        let super::super::spec::AttentionSpec::Gqa(a) = &spec.attention else {
            panic!("GPT-OSS is GQA")
        };
        assert_eq!(a.rope.theta, 150_000.0);
        assert!(matches!(
            a.rope.scaling,
            RopeScaling::Yarn { factor, truncate: false, .. } if factor == 32.0
        ));
    }

    /// The remote-code spelling of Phi-3.5-MoE's class opens the same family.
    #[test]
    fn phi_moe_hub_architecture_name_is_known() {
        let spec = spec_of("phimoe-v4", |c| {
            c["architectures"] = serde_json::json!(["PhiMoEForCausalLM"])
        });
        assert_eq!(spec.family, "Phi-3.5-MoE");
    }
}
