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

use super::config::ModelConfig;
use super::router::{GroupScore, RouterSpec, Scoring, Selection};
use super::spec::{AttentionSpec, ModelSpec, MoeSpec, SharedExpertSpec};
use crate::error::Result;

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
    super::check_silu(cfg)?;
    let num_experts = cfg.usize_any(&["n_routed_experts", "num_local_experts", "num_experts"])?;
    let top_k = cfg.usize_any(&["num_experts_per_tok"])?;
    let first_dense = cfg
        .opt_usize("first_k_dense_replace")?
        .unwrap_or(if version == Version::V3 { 3 } else { 0 });
    let n_group = cfg
        .opt_usize("n_group")?
        .unwrap_or(if version == Version::V3 { 8 } else { 1 });
    let topk_group = cfg
        .opt_usize("topk_group")?
        .unwrap_or(if version == Version::V3 { 4 } else { 1 });
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
    if let Selection::GroupLimited {
        num_groups,
        topk_groups,
        ..
    } = selection
    {
        if num_groups == 0 || !num_experts.is_multiple_of(num_groups) || topk_groups > num_groups {
            return Err(cfg.bad(format!(
                "n_group ({num_groups}) must divide the {num_experts} experts and be ≥ topk_group ({topk_groups})"
            )));
        }
        if topk_groups * (num_experts / num_groups) < top_k {
            return Err(cfg.bad(format!(
                "topk_group ({topk_groups}) groups of {} experts cannot hold top-{top_k}",
                num_experts / num_groups
            )));
        }
    }
    if version == Version::V3 {
        if let Some(scoring) = cfg.opt_str("scoring_func")? {
            if scoring != "sigmoid" {
                return Err(cfg.bad(format!("scoring_func '{scoring}' is not supported for DeepSeek-V3 (transformers uses sigmoid)")));
            }
        }
    }
    let moe_intermediate = cfg.usize_any(&["moe_intermediate_size"])?;
    let n_shared = cfg
        .opt_usize("n_shared_experts")?
        .unwrap_or(if version == Version::V3 { 1 } else { 2 });
    let qk_rope_head_dim = cfg.opt_usize("qk_rope_head_dim")?.unwrap_or(64);
    let (family, default_arch) = match version {
        Version::V2 => ("DeepSeek-V2", "DeepseekV2ForCausalLM"),
        Version::V3 => ("DeepSeek-V3", "DeepseekV3ForCausalLM"),
    };
    Ok(ModelSpec {
        family,
        architecture: super::architecture_or(cfg, default_arch),
        vocab_size: cfg.vocab_size,
        hidden_size: cfg.hidden_size,
        num_layers: cfg.num_hidden_layers,
        rms_norm_eps: cfg.rms_norm_eps,
        tie_word_embeddings: cfg.tie_word_embeddings,
        max_position_embeddings: cfg.max_position_embeddings,
        attention: AttentionSpec::Mla {
            num_heads: cfg.num_attention_heads,
            q_lora_rank: cfg.opt_usize("q_lora_rank")?,
            kv_lora_rank: cfg.opt_usize("kv_lora_rank")?.unwrap_or(512),
            qk_nope_head_dim: cfg.opt_usize("qk_nope_head_dim")?.unwrap_or(128),
            qk_rope_head_dim,
            v_head_dim: cfg.opt_usize("v_head_dim")?.unwrap_or(128),
            attention_bias: cfg.opt_bool("attention_bias")?.unwrap_or(false),
            rope_interleaved: version == Version::V2
                || cfg.opt_bool("rope_interleave")?.unwrap_or(true),
            rope: cfg.rope.clone(),
        },
        dense_intermediate_size: cfg.intermediate_size,
        moe_layers: (0..cfg.num_hidden_layers)
            .map(|i| i >= first_dense)
            .collect(),
        moe: MoeSpec {
            router: RouterSpec {
                num_experts,
                top_k,
                scoring: match version {
                    Version::V2 => Scoring::Softmax,
                    Version::V3 => Scoring::Sigmoid,
                },
                selection,
                renormalize: version == Version::V3
                    && cfg.opt_bool("norm_topk_prob")?.unwrap_or(true),
                routed_scaling_factor: cfg
                    .opt_f64("routed_scaling_factor")?
                    .unwrap_or(if version == Version::V3 { 2.5 } else { 1.0 })
                    as f32,
                selection_bias: version == Version::V3,
            },
            expert_intermediate_size: moe_intermediate,
            shared: (n_shared > 0).then_some(SharedExpertSpec {
                intermediate_size: moe_intermediate * n_shared,
                module_name: "shared_experts",
                sigmoid_gate: false,
            }),
            gate_in_f32: true,
            module_names: &["mlp"],
        },
    })
}
