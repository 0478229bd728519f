//! DeepSeek-V2 (`DeepseekV2ForCausalLM`), DeepSeek-V3 (`DeepseekV3ForCausalLM`) and GLM-4.7-Flash
//! (`Glm4MoeLiteForCausalLM`): multi-head latent attention, shared experts, the first
//! `first_k_dense_replace` layers dense.
//!
//! GLM-4.7-Flash (transformers `models/glm4_moe_lite/modeling_glm4_moe_lite.py`) is DeepSeek-V3's
//! attention and router verbatim with its own defaults (one group, scaling 1.8, top-4) and dense
//! layers from `mlp_layer_types` (default: the first one only; `first_k_dense_replace` is not
//! read by transformers there). Its rotary is GLM's, over `qk_rope_head_dim ·
//! partial_rotary_factor`; every release rotates all of them.
//!
//! Routing differs between the two (transformers `models/deepseek_v2/modeling_deepseek_v2.py`
//! `DeepseekV2TopkRouter`, `models/deepseek_v3/modeling_deepseek_v3.py` `DeepseekV3TopkRouter`):
//! - V2: softmax; `greedy` top-k or `group_limited_greedy` (group score = max); weights are the
//!   softmax scores times `routed_scaling_factor`, never renormalized (transformers ignores
//!   `norm_topk_prob` here, unlike the original remote code).
//! - V3: sigmoid; `e_score_correction_bias` added for selection only; group score = sum of the top-2
//!   biased scores; `topk_group` groups kept; weights are the unbiased sigmoid scores, renormalized
//!   when `norm_topk_prob`, times `routed_scaling_factor`.

use super::super::config::{CoreDefaults, ModelConfig};
use super::super::spec::{
    AttentionSpec, AttentionWindow, DenseSpec, GateSpec, IndexerSpec, MlaSpec, ModelSpec,
    Multipliers, NormKind, NormSpec, RopePairing, SharedExpertSpec, TensorNames,
};
use crate::error::Result;
use crate::routing::{GroupScore, Normalization, RouterSpec, RoutingRule, Selection};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V2,
    V3,
    Glm4Lite,
    V32,
}

pub fn spec_v2(cfg: &ModelConfig) -> Result<ModelSpec> {
    spec(cfg, Version::V2)
}

pub fn spec_v3(cfg: &ModelConfig) -> Result<ModelSpec> {
    spec(cfg, Version::V3)
}

pub fn spec_glm4_lite(cfg: &ModelConfig) -> Result<ModelSpec> {
    spec(cfg, Version::Glm4Lite)
}

pub fn spec_v32(cfg: &ModelConfig) -> Result<ModelSpec> {
    spec(cfg, Version::V32)
}

fn spec(cfg: &ModelConfig, version: Version) -> Result<ModelSpec> {
    cfg.require_silu("hidden_act")?;
    // GLM-4.7-Flash routes as V3 does.
    let v3 = version != Version::V2;
    let lite = version == Version::Glm4Lite;
    let core = super::super::config::CoreConfig::read(
        cfg,
        if lite {
            CoreDefaults {
                rms_norm_eps: 1e-5,
                max_position_embeddings: 202_752,
                tie_word_embeddings: false,
            }
        } else {
            CoreDefaults::default()
        },
    )?;
    let num_experts =
        cfg.positive_any(&["n_routed_experts", "num_local_experts", "num_experts"])?;
    let top_k = cfg.top_k(&["num_experts_per_tok"], lite.then_some(4), num_experts)?;
    let dense = dense_layers(cfg, version, core.num_hidden_layers)?;
    let (n_group, topk_group) = match version {
        Version::V2 | Version::Glm4Lite => (1, 1),
        Version::V3 | Version::V32 => (8, 4),
    };
    let n_group = cfg.opt_usize("n_group")?.unwrap_or(n_group);
    let topk_group = cfg.opt_usize("topk_group")?.unwrap_or(topk_group);
    let selection = match version {
        Version::V2 => match cfg.opt_str("topk_method")?.as_deref().unwrap_or("greedy") {
            "greedy" => Selection::TopK,
            "group_limited_greedy" => Selection::GroupLimited {
                num_groups: n_group,
                topk_groups: topk_group,
                group_score: GroupScore::Max,
            },
            other => {
                return Err(cfg.bad(format!(
                "topk_method '{other}' is not supported (expected greedy or group_limited_greedy)"
            )))
            }
        },
        Version::V3 | Version::Glm4Lite | Version::V32 => Selection::GroupLimited {
            num_groups: n_group,
            topk_groups: topk_group,
            group_score: GroupScore::TopTwoSum,
        },
    };
    if v3 {
        if let Some(scoring) = cfg.opt_str("scoring_func")? {
            if scoring != "sigmoid" {
                return Err(cfg.bad(format!("scoring_func '{scoring}' is not supported for DeepSeek-V3 (transformers uses sigmoid)")));
            }
        }
    }
    let router = RouterSpec {
        num_experts,
        top_k,
        rule: if v3 {
            RoutingRule::SigmoidTopK
        } else {
            RoutingRule::SoftmaxTopK
        },
        selection,
        normalization: if v3 && cfg.opt_bool("norm_topk_prob")?.unwrap_or(true) {
            Normalization::Sum
        } else {
            Normalization::None
        },
        routed_scaling_factor: cfg
            .opt_f64("routed_scaling_factor")?
            .unwrap_or(match version {
                Version::V2 => 1.0,
                Version::V3 | Version::V32 => 2.5,
                Version::Glm4Lite => 1.8,
            }) as f32,
        selection_bias: v3,
    };
    if let Some(problem) = router.problem() {
        return Err(cfg.bad(format!(
            "n_group / topk_group / num_experts_per_tok: {problem}"
        )));
    }
    let moe_intermediate = cfg.positive_any(&["moe_intermediate_size"])?;
    let n_shared = cfg
        .opt_usize("n_shared_experts")?
        .unwrap_or(if v3 { 1 } else { 2 });
    let rope = cfg.rope(10_000.0)?;
    if lite && rope.partial_rotary_factor != 1.0 {
        return Err(cfg.bad(format!(
            "partial_rotary_factor {} is not supported for GLM-4.7-Flash (its releases rotate all of qk_rope_head_dim)",
            rope.partial_rotary_factor
        )));
    }
    let mut moe = super::moe(
        router,
        GateSpec {
            in_f32: true,
            selection_bias: v3.then_some("gate.e_score_correction_bias"),
            ..super::gate("gate")
        },
        super::per_expert(moe_intermediate, "gate_proj", "up_proj", "down_proj"),
    );
    moe.shared = (n_shared > 0).then_some(SharedExpertSpec::swiglu(
        moe_intermediate * n_shared,
        "shared_experts",
    ));
    let (family, default_arch) = match version {
        Version::V2 => ("DeepSeek-V2", "DeepseekV2ForCausalLM"),
        Version::V3 => ("DeepSeek-V3", "DeepseekV3ForCausalLM"),
        Version::Glm4Lite => ("GLM-4.7-Flash", "Glm4MoeLiteForCausalLM"),
        Version::V32 => ("DeepSeek-V3.2", "DeepseekV32ForCausalLM"),
    };
    Ok(ModelSpec {
        global_attention: None,
        block: super::super::spec::BlockLayout::PreNorm,
        family,
        architecture: super::architecture_or(cfg, default_arch),
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
        linear_attention: None,
        attention: AttentionSpec::Mla(MlaSpec {
            num_heads: core.num_attention_heads,
            q_lora_rank: match version {
                // DeepseekV32Config: 1536 unless given; its attention has no direct q_proj.
                Version::V32 => Some(cfg.opt_usize("q_lora_rank")?.unwrap_or(1536)),
                _ => cfg.opt_usize("q_lora_rank")?,
            },
            kv_lora_rank: cfg.opt_usize("kv_lora_rank")?.unwrap_or(512),
            qk_nope_head_dim: cfg.opt_usize("qk_nope_head_dim")?.unwrap_or(if lite {
                192
            } else {
                128
            }),
            qk_rope_head_dim: cfg.opt_usize("qk_rope_head_dim")?.unwrap_or(64),
            v_head_dim: cfg
                .opt_usize("v_head_dim")?
                .unwrap_or(if lite { 256 } else { 128 }),
            attention_bias: cfg.opt_bool("attention_bias")?.unwrap_or(false),
            // V3.2's attention always rotates interleaved pairs (its indexer halves).
            rope_pairing: if matches!(version, Version::V2 | Version::V32)
                || cfg.opt_bool("rope_interleave")?.unwrap_or(true)
            {
                RopePairing::Interleaved
            } else {
                RopePairing::Halves
            },
            rope,
            indexer: match version {
                Version::V32 => Some(IndexerSpec {
                    heads: cfg.opt_usize("index_n_heads")?.unwrap_or(64),
                    head_dim: cfg.opt_usize("index_head_dim")?.unwrap_or(128),
                    topk: cfg.opt_usize("index_topk")?.unwrap_or(2048),
                }),
                _ => None,
            },
        }),
        layers: super::layers(core.num_hidden_layers, AttentionWindow::Full, |i| !dense[i]),
        dense: DenseSpec {
            intermediate_size: core.intermediate_size,
            bias: false,
        },
        moe,
        notes: Vec::new(),
    })
}

/// Which layers are dense: the first `first_k_dense_replace` (V2: 0, V3: 3 by default), or for
/// GLM-4.7-Flash its `mlp_layer_types` ("dense" / "sparse"), the first layer dense by default.
fn dense_layers(cfg: &ModelConfig, version: Version, layers: usize) -> Result<Vec<bool>> {
    let given = match version {
        Version::V2 | Version::V3 => None,
        Version::Glm4Lite | Version::V32 => {
            super::layer_kinds(cfg, "mlp_layer_types", layers, "dense", "sparse")?
        }
    };
    if let Some(dense) = given {
        return Ok(dense);
    }
    // V3.2 derives its default list from first_k_dense_replace; GLM-4.7-Flash does not read it.
    let first = match version {
        Version::Glm4Lite => 1,
        _ => cfg
            .opt_usize("first_k_dense_replace")?
            .unwrap_or(if version == Version::V2 { 0 } else { 3 }),
    };
    Ok((0..layers).map(|i| i < first).collect())
}
