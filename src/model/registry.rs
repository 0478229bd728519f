//! The one table of supported families. Nothing else in the crate lists architecture names: the
//! CLI's error message, `moescope info` and the README's table are generated from [`FAMILIES`].

use super::config::ModelConfig;
use super::family::{
    dbrx, deepseek, dots1, ernie, gemma4, glm4_moe, gpt_oss, granite, hunyuan, llama4, minimax_m2,
    mixtral, olmoe, phimoe, qwen3_next, qwen_moe,
};
use super::spec::ModelSpec;
use crate::error::{Error, Result};

pub struct Family {
    /// Display name.
    pub name: &'static str,
    /// `architectures[0]` values in config.json.
    pub architectures: &'static [&'static str],
    /// `model_type` values, used when `architectures` is absent.
    pub model_types: &'static [&'static str],
    /// The transformers modeling file the implementation is checked against.
    pub reference: &'static str,
    /// What the router does, in a phrase (README table).
    pub routing: &'static str,
    pub spec: fn(&ModelConfig) -> Result<ModelSpec>,
}

pub static FAMILIES: &[Family] = &[
    Family {
        name: "Mixtral",
        architectures: &["MixtralForCausalLM"],
        model_types: &["mixtral"],
        reference: "models/mixtral/modeling_mixtral.py",
        routing: "softmax → top-k → renormalize",
        spec: mixtral::spec,
    },
    Family {
        name: "Qwen2-MoE",
        architectures: &["Qwen2MoeForCausalLM"],
        model_types: &["qwen2_moe"],
        reference: "models/qwen2_moe/modeling_qwen2_moe.py",
        routing: "softmax → top-k (renormalize if norm_topk_prob); shared expert × sigmoid gate",
        spec: qwen_moe::spec_qwen2,
    },
    Family {
        name: "Qwen3-MoE",
        architectures: &["Qwen3MoeForCausalLM"],
        model_types: &["qwen3_moe"],
        reference: "models/qwen3_moe/modeling_qwen3_moe.py",
        routing: "softmax → top-k (renormalize if norm_topk_prob)",
        spec: qwen_moe::spec_qwen3,
    },
    Family {
        name: "OLMoE",
        architectures: &["OlmoeForCausalLM"],
        model_types: &["olmoe"],
        reference: "models/olmoe/modeling_olmoe.py",
        routing: "softmax → top-k, no renormalization",
        spec: olmoe::spec,
    },
    Family {
        name: "DeepSeek-V2",
        architectures: &["DeepseekV2ForCausalLM"],
        model_types: &["deepseek_v2"],
        reference: "models/deepseek_v2/modeling_deepseek_v2.py",
        routing: "softmax → greedy or group-limited (max) top-k × routed_scaling_factor; shared experts",
        spec: deepseek::spec_v2,
    },
    Family {
        name: "DeepSeek-V3",
        architectures: &["DeepseekV3ForCausalLM"],
        model_types: &["deepseek_v3"],
        reference: "models/deepseek_v3/modeling_deepseek_v3.py",
        routing: "sigmoid + selection bias → group-limited (top-2 sum) top-k → renormalize × routed_scaling_factor; shared experts",
        spec: deepseek::spec_v3,
    },
    Family {
        name: "GPT-OSS",
        architectures: &["GptOssForCausalLM"],
        model_types: &["gpt_oss"],
        reference: "models/gpt_oss/modeling_gpt_oss.py",
        routing: "top-k of logits (router bias) → softmax over k; clamped SwiGLU experts with biases; attention sinks",
        spec: gpt_oss::spec,
    },
    Family {
        name: "GLM-4-MoE",
        architectures: &["Glm4MoeForCausalLM"],
        model_types: &["glm4_moe"],
        reference: "models/glm4_moe/modeling_glm4_moe.py",
        routing: "sigmoid + selection bias → group-limited (top-2 sum) top-k → renormalize × routed_scaling_factor; shared experts",
        spec: glm4_moe::spec,
    },
    Family {
        name: "Llama-4",
        architectures: &["Llama4ForCausalLM", "Llama4ForConditionalGeneration"],
        model_types: &["llama4_text", "llama4"],
        reference: "models/llama4/modeling_llama4.py",
        routing: "top-k of logits → sigmoid of the chosen logit scales the expert input; shared expert",
        spec: llama4::spec,
    },
    Family {
        name: "Granite-MoE",
        architectures: &["GraniteMoeForCausalLM"],
        model_types: &["granitemoe"],
        reference: "models/granitemoe/modeling_granitemoe.py",
        routing: "top-k of logits → softmax over k",
        spec: granite::spec,
    },
    Family {
        name: "Phi-3.5-MoE",
        architectures: &["PhimoeForCausalLM", "PhiMoEForCausalLM"],
        model_types: &["phimoe"],
        reference: "models/phimoe/modeling_phimoe.py",
        routing: "sparsemixer top-2 (each slot's weight from its own masked softmax)",
        spec: phimoe::spec,
    },
    Family {
        name: "DBRX",
        architectures: &["DbrxForCausalLM"],
        model_types: &["dbrx"],
        reference: "models/dbrx/modeling_dbrx.py",
        routing: "softmax → top-k → weights ÷ their p-norm (moe_normalize_expert_weights)",
        spec: dbrx::spec,
    },
    Family {
        name: "ERNIE-4.5-MoE",
        architectures: &["Ernie4_5_MoeForCausalLM"],
        model_types: &["ernie4_5_moe"],
        reference: "models/ernie4_5_moe/modeling_ernie4_5_moe.py",
        routing: "softmax + selection bias → top-k → ÷ max(sum, moe_norm_min); shared experts",
        spec: ernie::spec,
    },
    Family {
        name: "MiniMax-M2",
        architectures: &["MiniMaxM2ForCausalLM"],
        model_types: &["minimax_m2"],
        reference: "models/minimax_m2/modeling_minimax_m2.py",
        routing: "sigmoid + selection bias → top-k → renormalize; q/k RMSNorm over the projection, partial rotary",
        spec: minimax_m2::spec,
    },
    Family {
        name: "GLM-4.7-Flash",
        architectures: &["Glm4MoeLiteForCausalLM"],
        model_types: &["glm4_moe_lite"],
        reference: "models/glm4_moe_lite/modeling_glm4_moe_lite.py",
        routing: "DeepSeek-V3's: sigmoid + selection bias → group-limited top-k → renormalize × routed_scaling_factor; shared experts; MLA",
        spec: deepseek::spec_glm4_lite,
    },
    Family {
        name: "HunYuan-MoE",
        architectures: &["HunYuanMoEV1ForCausalLM"],
        model_types: &["hunyuan_v1_moe"],
        reference: "models/hunyuan_v1_moe/modeling_hunyuan_v1_moe.py",
        routing: "softmax → top-k (k per layer) → renormalize; unweighted shared MLP",
        spec: hunyuan::spec,
    },
    Family {
        name: "dots1",
        architectures: &["Dots1ForCausalLM"],
        model_types: &["dots1"],
        reference: "models/dots1/modeling_dots1.py",
        routing: "sigmoid + selection bias → group-limited (top-2 sum) top-k (renormalize if norm_topk_prob) × routed_scaling_factor; shared experts",
        spec: dots1::spec,
    },
    Family {
        name: "Granite-MoE-Shared",
        architectures: &["GraniteMoeSharedForCausalLM"],
        model_types: &["granitemoeshared"],
        reference: "models/granitemoeshared/modeling_granitemoeshared.py",
        routing: "top-k of logits → softmax over k; shared MLP beside the experts",
        spec: granite::spec_shared,
    },
    Family {
        name: "Qwen3-Next",
        architectures: &["Qwen3NextForCausalLM"],
        model_types: &["qwen3_next"],
        reference: "models/qwen3_next/modeling_qwen3_next.py",
        routing: "softmax → top-k (renormalize if norm_topk_prob); shared expert × sigmoid gate; Gated DeltaNet and gated attention layers",
        spec: qwen3_next::spec,
    },
    Family {
        name: "Qwen3.5-MoE",
        architectures: &["Qwen3_5MoeForCausalLM", "Qwen3_5MoeForConditionalGeneration"],
        model_types: &["qwen3_5_moe_text", "qwen3_5_moe"],
        reference: "models/qwen3_5_moe/modeling_qwen3_5_moe.py",
        routing: "softmax → top-k → renormalize; shared expert × sigmoid gate; Gated DeltaNet and gated attention layers",
        spec: qwen3_next::spec_qwen3_5_moe,
    },
    Family {
        name: "DeepSeek-V3.2",
        architectures: &["DeepseekV32ForCausalLM"],
        model_types: &["deepseek_v32"],
        reference: "models/deepseek_v32/modeling_deepseek_v32.py",
        routing: "DeepSeek-V3's; MLA whose queries attend only to the keys a sparse-attention indexer selects",
        spec: deepseek::spec_v32,
    },
    Family {
        name: "Gemma-4",
        architectures: &["Gemma4ForCausalLM", "Gemma4ForConditionalGeneration"],
        model_types: &["gemma4_text"],
        reference: "models/gemma4/modeling_gemma4.py",
        routing: "RMS-normed residual × scale → softmax → top-k → renormalize → × per-expert scale; dense GeGLU MLP beside the experts; sliding/full layers with their own heads, KV sharing",
        spec: gemma4::spec,
    },
];

/// Every architecture name the registry accepts, for error messages.
pub fn supported_architectures() -> Vec<&'static str> {
    FAMILIES
        .iter()
        .flat_map(|f| f.architectures.iter().copied())
        .collect()
}

/// The family of a config: by `architectures[0]`, else by `model_type`.
pub fn lookup(cfg: &ModelConfig) -> Result<&'static Family> {
    let by_arch = cfg
        .architecture
        .as_deref()
        .and_then(|a| FAMILIES.iter().find(|f| f.architectures.contains(&a)));
    let by_type = || {
        cfg.model_type
            .as_deref()
            .and_then(|t| FAMILIES.iter().find(|f| f.model_types.contains(&t)))
    };
    by_arch
        .or_else(by_type)
        .ok_or_else(|| Error::UnknownArchitecture {
            name: cfg
                .architecture
                .clone()
                .or_else(|| cfg.model_type.clone())
                .unwrap_or_else(|| {
                    "(none: config.json has neither 'architectures' nor 'model_type')".into()
                }),
            path: cfg.path.clone(),
            supported: supported_architectures(),
        })
}

/// The README's supported-families table (kept in sync by a test).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| Family | `architectures[0]` | `model_type` | Routing | Reference (transformers) |\n|---|---|---|---|---|\n",
    );
    for f in FAMILIES {
        out.push_str(&format!(
            "| {} | {} | {} | {} | `{}` |\n",
            f.name,
            f.architectures
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", "),
            f.model_types
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", "),
            f.routing,
            f.reference
        ));
    }
    out
}
