//! DeepSeek-V2 (`DeepseekV2ForCausalLM`) and DeepSeek-V3 (`DeepseekV3ForCausalLM`): multi-head
//! latent attention, shared experts, the first `first_k_dense_replace` layers dense.
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
    AttentionSpec, AttentionWindow, DenseSpec, GateSpec, MlaSpec, ModelSpec, Multipliers, NormKind,
    NormSpec, RopePairing, SharedExpertSpec, TensorNames,
};
use crate::error::Result;
use crate::routing::{GroupScore, Normalization, RouterSpec, RoutingRule, Selection};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V2,
    V3,
}

pub fn spec_v2(cfg: &ModelConfig) -> Result<ModelSpec> {
    spec(cfg, Version::V2)
}

pub fn spec_v3(cfg: &ModelConfig) -> Result<ModelSpec> {
    spec(cfg, Version::V3)
}

fn spec(cfg: &ModelConfig, version: Version) -> Result<ModelSpec> {
    cfg.require_silu("hidden_act")?;
    let v3 = version == Version::V3;
    let core = super::super::config::CoreConfig::read(cfg, CoreDefaults::default())?;
    let num_experts =
        cfg.positive_any(&["n_routed_experts", "num_local_experts", "num_experts"])?;
    let top_k = cfg.top_k(&["num_experts_per_tok"], None, num_experts)?;
    let first_dense = cfg
        .opt_usize("first_k_dense_replace")?
        .unwrap_or(if v3 { 3 } else { 0 });
    let n_group = cfg.opt_usize("n_group")?.unwrap_or(if v3 { 8 } else { 1 });
    let topk_group = cfg
        .opt_usize("topk_group")?
        .unwrap_or(if v3 { 4 } else { 1 });
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
        Version::V3 => Selection::GroupLimited {
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
        routed_scaling_factor: cfg.opt_f64("routed_scaling_factor")?.unwrap_or(if v3 {
            2.5
        } else {
            1.0
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
    let mut moe = super::moe(
        router,
        GateSpec {
            in_f32: true,
            selection_bias: v3.then_some("gate.e_score_correction_bias"),
            ..super::gate("gate")
        },
        super::per_expert(moe_intermediate, "gate_proj", "up_proj", "down_proj"),
    );
    moe.shared = (n_shared > 0).then_some(SharedExpertSpec {
        intermediate_size: moe_intermediate * n_shared,
        module: "shared_experts",
        sigmoid_gate: None,
        bias: false,
    });
    let (family, default_arch) = match version {
        Version::V2 => ("DeepSeek-V2", "DeepseekV2ForCausalLM"),
        Version::V3 => ("DeepSeek-V3", "DeepseekV3ForCausalLM"),
    };
    Ok(ModelSpec {
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
        attention: AttentionSpec::Mla(MlaSpec {
            num_heads: core.num_attention_heads,
            q_lora_rank: cfg.opt_usize("q_lora_rank")?,
            kv_lora_rank: cfg.opt_usize("kv_lora_rank")?.unwrap_or(512),
            qk_nope_head_dim: cfg.opt_usize("qk_nope_head_dim")?.unwrap_or(128),
            qk_rope_head_dim: cfg.opt_usize("qk_rope_head_dim")?.unwrap_or(64),
            v_head_dim: cfg.opt_usize("v_head_dim")?.unwrap_or(128),
            attention_bias: cfg.opt_bool("attention_bias")?.unwrap_or(false),
            rope_pairing: if version == Version::V2
                || cfg.opt_bool("rope_interleave")?.unwrap_or(true)
            {
                RopePairing::Interleaved
            } else {
                RopePairing::Halves
            },
            rope: cfg.rope(10_000.0)?,
        }),
        layers: super::layers(core.num_hidden_layers, AttentionWindow::Full, |i| {
            i >= first_dense
        }),
        dense: DenseSpec {
            intermediate_size: core.intermediate_size,
            bias: false,
        },
        moe,
        notes: Vec::new(),
    })
}
