//! A GGUF model as a [`ModelSpec`]: llama.cpp's metadata keys become the config.json fields the
//! family file already reads, so a .gguf and its safetensors original go through the same family
//! code and get the same spec; and llama.cpp's tensor names (`blk.3.ffn_gate_exps.weight`) are
//! given the names that spec asks for (`model.layers.3.mlp.experts.{n}.gate_proj.weight`, one
//! expert's rows of the stacked tensor each).
//!
//! Where llama.cpp hard-codes a family rule instead of storing a key (qwen3moe always renormalizes
//! the top-k weights, qwen2moe and olmoe never do), the rule llama.cpp applies is the one used: it
//! is what the file means to every program that runs it. llama.cpp's converter permutes the rows
//! of q and k for `llama`-architecture files so that ggml's rotary can pair neighbouring
//! dimensions; such files are run with interleaved rotary pairs, which gives the same attention
//! scores as the original's halves without touching the weights.

use super::config::{ModelConfig, RopeScaling};
use super::gguf::{GgufModel, GgufTensor, MetaValue};
use super::registry::{self, Family};
use super::spec::{AttentionSpec, ExpertLayout, ModelSpec, QkvProjections, RopePairing};
use crate::error::{Error, Result};
use serde_json::{json, Map, Value};
use std::path::Path;

/// What moescope knows about one llama.cpp architecture.
struct Arch {
    /// `general.architecture`.
    name: &'static str,
    /// The transformers `model_type` whose family file builds the spec.
    model_type: &'static str,
    /// The converter permuted q/k rows (llama.cpp's `LlamaModel.permute`).
    permuted_qk: bool,
    /// Top-k renormalization llama.cpp applies when the file has no `expert_weights_norm` key;
    /// `None` where the routing rule fixes the weights (GPT-OSS: softmax over the k).
    norm_topk: Option<bool>,
    /// YaRN's `truncate` for the family (llama.cpp always truncates the correction range; GPT-OSS
    /// as released does not, and transformers follows the config).
    yarn_truncate: bool,
    /// Moves the flat config fields where the family's config.json has them (DBRX nests them)
    /// and adds what only this architecture's keys say (DeepSeek's MLA sizes).
    reshape_config: fn(&GgufModel, &mut Map<String, Value>),
    /// Notes on the family rules taken where llama.cpp applies its own (they go in the spec).
    rule_notes: fn(&GgufModel, &ModelSpec) -> Vec<String>,
}

/// Families whose rules llama.cpp follows as transformers does.
fn no_rule_notes(_: &GgufModel, _: &ModelSpec) -> Vec<String> {
    Vec::new()
}

/// DeepSeek-V2 with groups: llama.cpp ranks groups as V3 does. DeepSeek-V3 without
/// `expert_gating_func`: llama.cpp scores it with softmax (its default for V2-era files), where
/// the model is sigmoid; its converter writes the key only from a config's `scoring_func`, which
/// transformers 5 configs no longer carry.
fn deepseek_rule_notes(model: &GgufModel, spec: &ModelSpec) -> Vec<String> {
    let mut notes = Vec::new();
    if let (crate::routing::Selection::GroupLimited { .. }, "DeepSeek-V2") =
        (&spec.moe.router.selection, spec.family)
    {
        notes.push(
            "GGUF (deepseek2, V2 with groups): groups ranked by their best expert, as \
             transformers' DeepSeek-V2 does (llama.cpp ranks them by the sum of their best two)"
                .into(),
        );
    }
    let gating = model.metadata().get("deepseek2.expert_gating_func");
    if spec.family == "DeepSeek-V3" && gating.is_none() {
        notes.push(
            "GGUF (deepseek2): no expert_gating_func key; scored with sigmoid as DeepSeek-V3 is \
             (llama.cpp scores such a file with softmax)"
                .into(),
        );
    }
    notes
}

/// Llama-4 (`llama4`): llama.cpp stores the dense MLP's width as `feed_forward_length` and the
/// experts' as `expert_feed_forward_length`, and hard-codes the rest of the family's attention as
/// Scout and Maverick are released: chunked attention of 8192 on the rotary layers, every fourth
/// layer NoPE with temperature tuning (floor 8192, scale 0.1), the weightless q/k norm except in
/// the 128-expert model — unless `attention.sliding_window` is 0 (all layers full attention,
/// only the last without rotary, no tuning), as its loader reads the file.
fn llama4_fields(model: &GgufModel, cfg: &mut Map<String, Value>) {
    let meta = model.metadata();
    let key = |suffix: &str| {
        meta.get(&format!("llama4.{suffix}"))
            .and_then(MetaValue::as_u64)
    };
    if let Some(dense) = cfg.remove("intermediate_size") {
        cfg.insert("intermediate_size_mlp".into(), dense);
    }
    if let Some(experts) = cfg.remove("moe_intermediate_size") {
        cfg.insert("intermediate_size".into(), experts);
    }
    if let Some(step) = key("interleave_moe_layer_step") {
        cfg.insert("interleave_moe_layer_step".into(), json!(step));
    }
    let blocks = cfg
        .get("num_hidden_layers")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    cfg.remove("sliding_window");
    if key("attention.sliding_window") == Some(0) {
        cfg.insert("no_rope_layer_interval".into(), json!(blocks.max(1)));
        cfg.insert("attn_temperature_tuning".into(), json!(false));
    } else {
        cfg.insert("attention_chunk_size".into(), json!(8192));
        cfg.insert("no_rope_layer_interval".into(), json!(4));
        cfg.insert("attn_temperature_tuning".into(), json!(true));
        cfg.insert("floor_scale".into(), json!(8192));
        cfg.insert("attn_scale".into(), json!(0.1));
    }
    cfg.insert(
        "use_qk_norm".into(),
        json!(key("expert_count") != Some(128)),
    );
}

/// Most families read the flat fields as they are.
fn flat(_: &GgufModel, _: &mut Map<String, Value>) {}

/// DBRX's config.json keeps attention and expert fields in `attn_config` / `ffn_config`.
fn dbrx_nested(_: &GgufModel, cfg: &mut Map<String, Value>) {
    let pick = |cfg: &Map<String, Value>, fields: &[(&str, &str)]| {
        let picked: Map<String, Value> = fields
            .iter()
            .filter_map(|(from, field)| Some(((*field).to_owned(), cfg.get(*from)?.clone())))
            .collect();
        Value::Object(picked)
    };
    let attn = pick(
        cfg,
        &[
            ("num_key_value_heads", "kv_n_heads"),
            ("clip_qkv", "clip_qkv"),
        ],
    );
    let ffn = pick(
        cfg,
        &[
            ("num_experts", "moe_num_experts"),
            ("num_experts_per_tok", "moe_top_k"),
            ("intermediate_size", "ffn_hidden_size"),
        ],
    );
    cfg.insert("attn_config".into(), attn);
    cfg.insert("ffn_config".into(), ffn);
}

/// `deepseek2` files: the family (V3 where the file has a selection bias, `exp_probs_b`; V2
/// otherwise), the MLA sizes from the `_mla` keys (or, in files older than them, from
/// `key_length`/`value_length`), and YaRN's attention scale. The rules llama.cpp applies without a
/// key follow the family instead: V2 with groups selects groups by their best expert
/// (transformers' `group_limited_greedy`; llama.cpp sums the best two), and YaRN's `mscale`
/// equals `mscale_all_dim` (llama.cpp's assumption, true of the released configs).
fn deepseek_mla(model: &GgufModel, cfg: &mut Map<String, Value>) {
    let meta = model.metadata();
    let key = |k: &str| meta.get(&format!("deepseek2.{k}"));
    let uint = |k: &str| key(k).and_then(MetaValue::as_u64);
    let v3 = model
        .tensors()
        .any(|t| t.name.ends_with(".exp_probs_b.bias"));
    cfg.insert(
        "model_type".into(),
        json!(if v3 { "deepseek_v3" } else { "deepseek_v2" }),
    );
    if v3 {
        // transformers' DeepSeek-V3 always scores with a sigmoid; older files have no key for it.
        cfg.entry("scoring_func").or_insert(json!("sigmoid"));
    } else {
        let groups = uint("expert_group_count").unwrap_or(1);
        cfg.insert(
            "topk_method".into(),
            json!(if groups > 1 {
                "group_limited_greedy"
            } else {
                "greedy"
            }),
        );
    }
    let rope = uint("rope.dimension_count");
    if let Some(r) = uint("attention.q_lora_rank") {
        cfg.insert("q_lora_rank".into(), json!(r));
    }
    if let Some(r) = uint("attention.kv_lora_rank") {
        cfg.insert("kv_lora_rank".into(), json!(r));
    }
    let (qk, v) = match (
        uint("attention.key_length_mla"),
        uint("attention.value_length_mla"),
    ) {
        (Some(qk), Some(v)) => (Some(qk), Some(v)),
        _ => (uint("attention.key_length"), uint("attention.value_length")),
    };
    if let Some(rope) = rope {
        cfg.insert("qk_rope_head_dim".into(), json!(rope));
        // transformers' DeepSeek configs call the rotary part head_dim.
        cfg.insert("head_dim".into(), json!(rope));
        if let Some(qk) = qk.filter(|&qk| qk > rope) {
            cfg.insert("qk_nope_head_dim".into(), json!(qk - rope));
        }
    }
    if let Some(v) = v {
        cfg.insert("v_head_dim".into(), json!(v));
    }
    if let Some(Value::Object(rope)) = cfg.get_mut("rope_parameters") {
        // Rotary covers the whole rope part of a head; the fraction worked out above does not apply.
        rope.remove("partial_rotary_factor");
        if let Some(multiplier) =
            key("rope.scaling.yarn_log_multiplier").and_then(MetaValue::as_f64)
        {
            // The converter writes 0.1 · mscale_all_dim (in f32: divide in f32 to get it back).
            let mscale = (multiplier as f32 / 0.1f32) as f64;
            rope.insert("mscale_all_dim".into(), json!(mscale));
            rope.insert("mscale".into(), json!(mscale));
        }
    }
}

const ARCHES: &[Arch] = &[
    Arch {
        name: "llama",
        model_type: "mixtral",
        permuted_qk: true,
        norm_topk: Some(true),
        yarn_truncate: true,
        reshape_config: flat,
        rule_notes: no_rule_notes,
    },
    Arch {
        name: "qwen2moe",
        model_type: "qwen2_moe",
        permuted_qk: false,
        norm_topk: Some(false),
        yarn_truncate: true,
        reshape_config: flat,
        rule_notes: no_rule_notes,
    },
    Arch {
        name: "qwen3moe",
        model_type: "qwen3_moe",
        permuted_qk: false,
        norm_topk: Some(true),
        yarn_truncate: true,
        reshape_config: flat,
        rule_notes: no_rule_notes,
    },
    Arch {
        name: "olmoe",
        model_type: "olmoe",
        permuted_qk: false,
        norm_topk: Some(false),
        yarn_truncate: true,
        reshape_config: flat,
        rule_notes: no_rule_notes,
    },
    // GPT-OSS: the family file's defaults stand for what llama.cpp hard-codes (even layers
    // sliding, SwiGLU alpha 1.702 and limit 7.0); experts come as separate gate/up/down stacks
    // (the converter de-interleaves gate_up_proj), MXFP4 as ggml blocks.
    // GLM-4.5/4.6 (and -Air): sigmoid + selection bias, groups, routed scaling, one shared expert,
    // leading dense blocks, partial rotary; the file's trailing `nextn_predict_layers` blocks
    // (multi-token prediction) take no part in the forward pass and are skipped.
    Arch {
        name: "glm4moe",
        model_type: "glm4_moe",
        permuted_qk: false,
        norm_topk: Some(false),
        yarn_truncate: true,
        reshape_config: flat,
        rule_notes: no_rule_notes,
    },
    // Granite-MoE: top-k of the logits, softmax over the k; Granite's four multipliers; q/k rows
    // permuted like Llama's (the converter's Granite classes derive from its Llama one).
    Arch {
        name: "granitemoe",
        model_type: "granitemoe",
        permuted_qk: true,
        norm_topk: None,
        yarn_truncate: true,
        reshape_config: flat,
        rule_notes: no_rule_notes,
    },
    // DBRX: fused Wqkv clamped by `attention.clamp_kqv`, bias-free LayerNorm, softmax → top-k →
    // renormalized (llama.cpp's norm_w, DBRX's moe_normalize_expert_weights = 1 default).
    Arch {
        name: "dbrx",
        model_type: "dbrx",
        permuted_qk: false,
        norm_topk: None,
        yarn_truncate: true,
        reshape_config: dbrx_nested,
        rule_notes: no_rule_notes,
    },
    // DeepSeek-V2/V2.5/V3/R1, Kimi-K2 and other MLA models (`deepseek2`); see `deepseek_mla`.
    Arch {
        name: "deepseek2",
        model_type: "deepseek_v2",
        permuted_qk: false,
        norm_topk: Some(false),
        yarn_truncate: true,
        reshape_config: deepseek_mla,
        rule_notes: deepseek_rule_notes,
    },
    Arch {
        name: "llama4",
        model_type: "llama4_text",
        permuted_qk: false,
        norm_topk: None,
        yarn_truncate: true,
        reshape_config: llama4_fields,
        rule_notes: no_rule_notes,
    },
    Arch {
        name: "gpt-oss",
        model_type: "gpt_oss",
        permuted_qk: false,
        norm_topk: None,
        yarn_truncate: false,
        reshape_config: flat,
        rule_notes: no_rule_notes,
    },
];

/// The llama.cpp architectures moescope runs, for messages and the README.
pub fn supported_architectures() -> Vec<&'static str> {
    ARCHES.iter().map(|a| a.name).collect()
}

/// `{arch}.<suffix>` metadata keys and the config.json field each becomes.
const KEYS: &[(&str, &str)] = &[
    ("block_count", "num_hidden_layers"),
    ("context_length", "max_position_embeddings"),
    ("embedding_length", "hidden_size"),
    ("feed_forward_length", "intermediate_size"),
    ("attention.head_count", "num_attention_heads"),
    ("attention.head_count_kv", "num_key_value_heads"),
    ("attention.key_length", "head_dim"),
    ("attention.layer_norm_rms_epsilon", "rms_norm_eps"),
    ("attention.clamp_kqv", "clip_qkv"),
    ("attention.sliding_window", "sliding_window"),
    ("expert_count", "num_experts"),
    ("expert_used_count", "num_experts_per_tok"),
    ("expert_feed_forward_length", "moe_intermediate_size"),
    (
        "expert_shared_feed_forward_length",
        "shared_expert_intermediate_size",
    ),
    ("vocab_size", "vocab_size"),
    ("expert_shared_count", "n_shared_experts"),
    ("expert_group_count", "n_group"),
    ("expert_group_used_count", "topk_group"),
    ("expert_weights_scale", "routed_scaling_factor"),
    ("leading_dense_block_count", "first_k_dense_replace"),
    ("attention.scale", "attention_multiplier"),
    ("embedding_scale", "embedding_multiplier"),
    ("residual_scale", "residual_multiplier"),
    ("logit_scale", "logits_scaling"),
];

/// Bytes a run holds beside the file's mapping: MLA's `kv_b_proj` rebuilt in f32 for each block
/// whose converter split it (`Weights::open_gguf`), for the memory estimate of `info`.
pub fn rebuilt_bytes(model: &GgufModel, spec: &ModelSpec) -> u64 {
    let AttentionSpec::Mla(mla) = &spec.attention else {
        return 0;
    };
    // As `Weights::open_gguf` joins them: blocks of the pass with a split and no `attn_kv_b`.
    let has = |block: usize, leaf: &str| {
        let name = format!("blk.{block}.{leaf}.weight");
        model.tensors().any(|t| t.name == name)
    };
    let split = (0..spec.num_layers)
        .filter(|&b| has(b, "attn_k_b") && !has(b, "attn_kv_b"))
        .count() as u64;
    let per_layer = mla.num_heads * (mla.qk_nope_head_dim + mla.v_head_dim) * mla.kv_lora_rank;
    split.saturating_mul(per_layer as u64 * 4)
}

/// Blocks at the end of the file that are not transformer blocks of the forward pass (GLM's and
/// DeepSeek's multi-token-prediction layers, `{arch}.nextn_predict_layers`).
pub fn trailing_blocks(model: &GgufModel) -> usize {
    let meta = model.metadata();
    meta.architecture()
        .and_then(|arch| meta.get(&format!("{arch}.nextn_predict_layers")))
        .and_then(MetaValue::as_u64)
        .map_or(0, |n| n as usize)
}

/// A GGUF model's family, the config its metadata stands for, and its spec.
pub fn spec_of(model: &GgufModel) -> Result<(&'static Family, ModelConfig, ModelSpec)> {
    let meta = model.metadata();
    let path = &meta.path;
    let bad = |problem: String| Error::Gguf {
        path: path.clone(),
        problem,
    };
    let arch_name = meta
        .architecture()
        .ok_or_else(|| bad("no general.architecture key".into()))?;
    let Some(arch) = ARCHES.iter().find(|a| a.name == arch_name) else {
        return Err(Error::GgufNotRunnable {
            path: path.clone(),
            architecture: arch_name.to_owned(),
            supported: supported_architectures().join(", "),
        });
    };
    let config = config_of(model, arch)?;
    let cfg = ModelConfig::from_json_str(&config.to_string(), path)?;
    let family = registry::lookup(&cfg)?;
    let mut spec = (family.spec)(&cfg)?;
    if arch.permuted_qk {
        if let AttentionSpec::Gqa(gqa) = &mut spec.attention {
            gqa.rope_pairing = RopePairing::Interleaved;
        }
    }
    // llama.cpp's converter stores every family's experts as gate, up and down stacks
    // (`[E, I, H]`, `[E, I, H]`, `[E, H, I]`): one expert of each is a run of rows.
    if let ExpertLayout::Stacked { .. } | ExpertLayout::DbrxFlat = spec.moe.experts.layout {
        spec.moe.experts.layout = ExpertLayout::PerExpert {
            gate: "gate_proj",
            up: "up_proj",
            down: "down_proj",
        };
    }
    apply_rope_freqs(model, &mut spec)?;
    spec.notes.extend((arch.rule_notes)(model, &spec));
    let rebuilt = rebuilt_bytes(model, &spec);
    if rebuilt > 0 {
        spec.notes.push(format!(
            "GGUF: kv_b_proj rebuilt in f32 from the file's attn_k_b and attn_v_b ({} beside the \
             mapping)",
            crate::units::human_bytes(rebuilt)
        ));
    }
    match norm_topk(model, arch) {
        Some(norm) => spec.notes.push(format!(
            "GGUF ({} architecture): top-k weights {} as llama.cpp does for it",
            arch.name,
            if norm {
                "renormalized"
            } else {
                "not renormalized"
            }
        )),
        None => spec.notes.push(format!(
            "GGUF ({} architecture): the family's own rules where llama.cpp stores no key",
            arch.name
        )),
    }
    spec.validate().map_err(bad)?;
    Ok((family, cfg, spec))
}

/// A `rope_freqs` tensor (llama3 scaling as llama.cpp's converter stores it: one divisor per
/// rotated pair) replaces the rotary's scaling; llama.cpp applies it to every rotary layer.
fn apply_rope_freqs(model: &GgufModel, spec: &mut ModelSpec) -> Result<()> {
    let Some(factors) = model.f32_values("rope_freqs.weight")? else {
        return Ok(());
    };
    let bad = |problem: String| Error::Gguf {
        path: model.metadata().path.clone(),
        problem,
    };
    let AttentionSpec::Gqa(gqa) = &mut spec.attention else {
        return Err(bad("rope_freqs in a file whose attention is not GQA".into()));
    };
    let pairs = gqa.rotary_dim() / 2;
    if factors.len() != pairs || factors.iter().any(|f| !(f.is_finite() && *f > 0.0)) {
        return Err(bad(format!(
            "rope_freqs holds {} factors for {pairs} rotated pairs, or one is not a positive number",
            factors.len()
        )));
    }
    gqa.rope.scaling = RopeScaling::FrequencyFactors {
        factors: factors.into_iter().map(f64::from).collect(),
    };
    Ok(())
}

fn norm_topk(model: &GgufModel, arch: &Arch) -> Option<bool> {
    match model
        .metadata()
        .get(&format!("{}.expert_weights_norm", arch.name))
    {
        Some(MetaValue::Bool(b)) => Some(*b),
        _ => arch.norm_topk,
    }
}

/// The config.json the metadata stands for.
fn config_of(model: &GgufModel, arch: &Arch) -> Result<Value> {
    let meta = model.metadata();
    let mut cfg = Map::new();
    cfg.insert("model_type".into(), json!(arch.model_type));
    cfg.insert("hidden_act".into(), json!("silu"));
    for (suffix, field) in KEYS {
        let key = format!("{}.{suffix}", arch.name);
        let value = match meta.get(&key) {
            Some(MetaValue::Uint(v)) => json!(v),
            Some(MetaValue::Int(v)) => json!(v),
            // The f32 as written (1e-5), not its f64 widening (9.99999974e-6).
            Some(MetaValue::Float32(v)) => json!(v.to_string().parse::<f64>().unwrap_or(0.0)),
            Some(MetaValue::Float(v)) => json!(v),
            Some(other) => {
                return Err(Error::Gguf {
                    path: meta.path.clone(),
                    problem: format!("'{key}' should be a number, found {other}"),
                })
            }
            None => continue,
        };
        cfg.insert((*field).into(), value);
    }
    let trailing = trailing_blocks(model) as u64;
    if trailing > 0 {
        let blocks = cfg
            .get("num_hidden_layers")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if trailing >= blocks {
            return Err(Error::Gguf {
                path: meta.path.clone(),
                problem: format!(
                    "{}.nextn_predict_layers = {trailing} leaves none of the {blocks} blocks",
                    arch.name
                ),
            });
        }
        cfg.insert("num_hidden_layers".into(), json!(blocks - trailing));
    }
    if !cfg.contains_key("vocab_size") {
        if let Some(embed) = find(model, "token_embd.weight") {
            cfg.insert("vocab_size".into(), json!(embed.dims.get(1).copied()));
        }
    }
    let theta = meta
        .get(&format!("{}.rope.freq_base", arch.name))
        .and_then(MetaValue::as_f64)
        .unwrap_or(10_000.0);
    let mut rope = json!({"rope_type": "default", "rope_theta": theta});
    // Partial rotary (GLM): the rotated dimensions of a head, as the fraction transformers keeps.
    let head_dim = cfg.get("head_dim").and_then(Value::as_u64).or_else(|| {
        let hidden = cfg.get("hidden_size")?.as_u64()?;
        let heads = cfg.get("num_attention_heads")?.as_u64()?;
        (heads > 0).then(|| hidden / heads)
    });
    if let (Some(rotated), Some(head_dim)) = (
        meta.get(&format!("{}.rope.dimension_count", arch.name))
            .and_then(MetaValue::as_u64),
        head_dim,
    ) {
        if head_dim > 0 && rotated <= head_dim {
            rope["partial_rotary_factor"] = json!(rotated as f64 / head_dim as f64);
        }
    }
    if let Some(kind) = meta
        .get(&format!("{}.rope.scaling.type", arch.name))
        .and_then(MetaValue::as_str)
    {
        let factor = meta
            .get(&format!("{}.rope.scaling.factor", arch.name))
            .and_then(MetaValue::as_f64);
        match kind {
            "none" => {}
            "linear" | "yarn" => {
                rope["rope_type"] = json!(kind);
                rope["factor"] = json!(factor.unwrap_or(1.0));
                if let Some(original) = meta
                    .get(&format!(
                        "{}.rope.scaling.original_context_length",
                        arch.name
                    ))
                    .and_then(MetaValue::as_u64)
                {
                    rope["original_max_position_embeddings"] = json!(original);
                }
                if kind == "yarn" {
                    for (key, field) in [
                        ("yarn_beta_fast", "beta_fast"),
                        ("yarn_beta_slow", "beta_slow"),
                    ] {
                        let key = format!("{}.rope.scaling.{key}", arch.name);
                        if let Some(v) = meta.get(&key).and_then(MetaValue::as_f64) {
                            rope[field] = json!(v);
                        }
                    }
                    rope["truncate"] = json!(arch.yarn_truncate);
                }
            }
            other => {
                return Err(Error::Gguf {
                    path: meta.path.clone(),
                    problem: format!("rope scaling '{other}' is not supported"),
                })
            }
        }
    }
    cfg.insert("rope_parameters".into(), rope);
    cfg.insert(
        "tie_word_embeddings".into(),
        json!(find(model, "output.weight").is_none()),
    );
    if let Some(gating) = meta
        .get(&format!("{}.expert_gating_func", arch.name))
        .and_then(MetaValue::as_u64)
    {
        // llama.cpp's LLAMA_EXPERT_GATING_FUNC_TYPE: 1 softmax, 2 sigmoid.
        let scoring = match gating {
            1 => "softmax",
            2 => "sigmoid",
            other => {
                return Err(Error::Gguf {
                    path: meta.path.clone(),
                    problem: format!(
                        "{}.expert_gating_func = {other} is not softmax (1) or sigmoid (2)",
                        arch.name
                    ),
                })
            }
        };
        cfg.insert("scoring_func".into(), json!(scoring));
    }
    cfg.insert(
        "use_qk_norm".into(),
        json!(find(model, "blk.0.attn_q_norm.weight").is_some()),
    );
    let biased = find(model, "blk.0.attn_q.bias").is_some();
    cfg.insert("qkv_bias".into(), json!(biased));
    cfg.insert("attention_bias".into(), json!(biased));
    if let Some(norm) = norm_topk(model, arch) {
        cfg.insert("norm_topk_prob".into(), json!(norm));
    }
    // Apart from leading dense blocks, llama.cpp's MoE architectures here route in every block.
    cfg.insert("mlp_only_layers".into(), json!([]));
    cfg.insert("decoder_sparse_step".into(), json!(1));
    (arch.reshape_config)(model, &mut cfg);
    Ok(Value::Object(cfg))
}

fn find<'a>(model: &'a GgufModel, name: &str) -> Option<&'a GgufTensor> {
    model.tensors().find(|t| t.name == name)
}

/// A GGUF tensor under the name the spec's loader asks for, with the HF shape (ggml lists
/// dimensions innermost first). A stacked `*_exps` tensor becomes one name per expert, each a
/// run of whole rows of the stack.
pub struct Renamed {
    pub name: String,
    pub shape: Vec<usize>,
    /// For one expert of a stack: the expert's index (its rows are `shape[0]` long runs).
    pub expert: Option<usize>,
}

/// The names `tensor` answers to under `spec`; empty for tensors the spec does not use
/// (`rope_freqs`, say), which are then simply not loaded.
pub fn renamed(
    spec: &ModelSpec,
    tensor: &GgufTensor,
    path: &Path,
    trailing_blocks: usize,
) -> Result<Vec<Renamed>> {
    let shape: Vec<usize> = tensor.dims.iter().rev().map(|&d| d as usize).collect();
    let one = |name: String| {
        Ok(vec![Renamed {
            name,
            shape: shape.clone(),
            expert: None,
        }])
    };
    let names = &spec.names;
    let (base, kind) = tensor
        .name
        .rsplit_once('.')
        .unwrap_or((tensor.name.as_str(), ""));
    match base {
        "token_embd" => return one(format!("{}.{kind}", names.embed)),
        "output_norm" => return one(format!("{}.{kind}", names.final_norm)),
        "output" => return one(format!("{}.{kind}", names.lm_head)),
        _ => {}
    }
    let Some(rest) = base.strip_prefix("blk.") else {
        return Ok(Vec::new());
    };
    let Some((layer, leaf)) = rest.split_once('.') else {
        return Ok(Vec::new());
    };
    let Ok(layer) = layer.parse::<usize>() else {
        return Ok(Vec::new());
    };
    if layer >= spec.num_layers && layer < spec.num_layers + trailing_blocks {
        return Ok(Vec::new());
    }
    if layer >= spec.num_layers {
        return Err(Error::Gguf {
            path: path.to_owned(),
            problem: format!(
                "tensor '{}' is for block {layer} of {}",
                tensor.name, spec.num_layers
            ),
        });
    }
    let block = format!("{}.{layer}", names.layers);
    let moe = format!("{block}.{}", names.moe[0]);
    let attention = format!("{block}.{}", names.attention);
    let module = match leaf {
        "attn_norm" => format!("{block}.{}", names.input_norm),
        "ffn_norm" | "post_attention_norm" => format!("{block}.{}", names.post_attention_norm),
        // GPT-OSS's sink logits are a bare parameter, `self_attn.sinks`.
        "attn_sinks" => return one(format!("{attention}.sinks")),
        "attn_q" => format!("{attention}.q_proj"),
        // MLA (deepseek2).
        "attn_q_a" => format!("{attention}.q_a_proj"),
        "attn_q_a_norm" => format!("{attention}.q_a_layernorm"),
        "attn_q_b" => format!("{attention}.q_b_proj"),
        "attn_kv_a_mqa" => format!("{attention}.kv_a_proj_with_mqa"),
        "attn_kv_a_norm" => format!("{attention}.kv_a_layernorm"),
        "attn_kv_b" => format!("{attention}.kv_b_proj"),
        // kv_b_proj split by the converter, per head: k_b `[H, kv_lora, nope]` (transposed) and
        // v_b `[H, v, kv_lora]`; read as matrices of rows and joined back at load
        // (`Weights::open_gguf`).
        "attn_k_b" | "attn_v_b" => {
            let [heads, rows, cols] = shape[..] else {
                return Err(Error::Gguf {
                    path: path.to_owned(),
                    problem: format!("'{}' has {} dimensions, not 3", tensor.name, shape.len()),
                });
            };
            return Ok(vec![Renamed {
                name: format!("{attention}.{}.{kind}", &leaf[5..]),
                shape: vec![heads * rows, cols],
                expert: None,
            }]);
        }
        "attn_qkv" => format!("{attention}.Wqkv"),
        // DBRX's second norm (before the experts) sits beside its attention.
        "attn_output_norm" => format!("{block}.{}", names.post_attention_norm),
        "attn_k" => format!("{attention}.k_proj"),
        "attn_v" => format!("{attention}.v_proj"),
        "attn_output" => match &spec.attention {
            AttentionSpec::Gqa(g) if g.projections == QkvProjections::FusedWqkv => {
                format!("{attention}.out_proj")
            }
            _ => format!("{attention}.o_proj"),
        },
        "attn_q_norm" => format!("{attention}.q_norm"),
        "attn_k_norm" => format!("{attention}.k_norm"),
        "ffn_gate_inp" => format!("{moe}.{}", spec.moe.gate.module),
        // The selection bias (DeepSeek-V3's and GLM's `e_score_correction_bias`), stored as `.bias`.
        "exp_probs_b" => match spec.moe.gate.selection_bias {
            Some(name) => return one(format!("{moe}.{name}")),
            None => return Ok(Vec::new()),
        },
        "ffn_gate" | "ffn_up" | "ffn_down" => {
            format!("{block}.{}.{}_proj", names.dense_mlp, &leaf[4..])
        }
        "ffn_gate_shexp" | "ffn_up_shexp" | "ffn_down_shexp" => {
            let Some(shared) = &spec.moe.shared else {
                return Ok(Vec::new());
            };
            let projection = leaf.trim_start_matches("ffn_").trim_end_matches("_shexp");
            format!("{moe}.{}.{projection}_proj", shared.module)
        }
        "ffn_gate_inp_shexp" => match spec.moe.shared.as_ref().and_then(|s| s.sigmoid_gate) {
            Some(gate) => format!("{moe}.{gate}"),
            None => return Ok(Vec::new()),
        },
        "ffn_gate_exps" | "ffn_up_exps" | "ffn_down_exps" if kind == "bias" => {
            // `[E, I]` / `[E, H]`, read whole: `experts.gate_proj_bias` and so on.
            let projection = &leaf[4..leaf.len() - 5];
            return one(format!(
                "{}.{projection}_proj_bias",
                experts_prefix(spec, &moe)
            ));
        }
        "ffn_gate_exps" | "ffn_up_exps" | "ffn_down_exps" => {
            let ExpertLayout::PerExpert { gate, up, down } = spec.moe.experts.layout else {
                return Err(Error::Gguf {
                    path: path.to_owned(),
                    problem: format!(
                        "stacked experts in '{}' need a per-expert layout",
                        tensor.name
                    ),
                });
            };
            let projection = match leaf {
                "ffn_gate_exps" => gate,
                "ffn_up_exps" => up,
                _ => down,
            };
            let [experts, rows, cols] = shape[..] else {
                return Err(Error::Gguf {
                    path: path.to_owned(),
                    problem: format!(
                        "expert tensor '{}' has {} dimensions, not 3",
                        tensor.name,
                        shape.len()
                    ),
                });
            };
            let prefix = experts_prefix(spec, &moe);
            return Ok((0..experts)
                .map(|e| Renamed {
                    name: format!("{prefix}.{e}.{projection}.{kind}"),
                    shape: vec![rows, cols],
                    expert: Some(e),
                })
                .collect());
        }
        _ => return Ok(Vec::new()),
    };
    one(format!("{module}.{kind}"))
}

/// Where the experts' tensors live under the MoE module (`mlp.experts`; Granite's sit in the
/// module itself).
fn experts_prefix(spec: &ModelSpec, moe: &str) -> String {
    match spec.moe.experts.module {
        "" => moe.to_owned(),
        module => format!("{moe}.{module}"),
    }
}
