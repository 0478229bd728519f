//! What a family file produces from config.json: a plain description of the network (attention
//! kind, which layers are MoE, the routing rule, expert wiring). The generic loader in
//! [`super::causal_lm`] builds any family from it, so families differ only in this data.

use super::config::RopeConfig;
use super::router::RouterSpec;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ModelSpec {
    /// Registry name of the family ("Mixtral", "DeepSeek-V3", ...).
    pub family: &'static str,
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: usize,
    pub attention: AttentionSpec,
    /// Intermediate size of dense (non-MoE) layers.
    pub dense_intermediate_size: usize,
    /// One entry per transformer block: `true` where the block's feed-forward is MoE.
    pub moe_layers: Vec<bool>,
    pub moe: MoeSpec,
}

impl ModelSpec {
    pub fn num_moe_layers(&self) -> usize {
        self.moe_layers.iter().filter(|m| **m).count()
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttentionSpec {
    /// Grouped-query attention with rotary embeddings.
    Gqa {
        num_heads: usize,
        num_kv_heads: usize,
        head_dim: usize,
        qkv_bias: bool,
        qk_norm: QkNormKind,
        clip_qkv: Option<f64>,
        sliding_window: Option<usize>,
        #[serde(skip)]
        rope: RopeConfig,
    },
    /// DeepSeek multi-head latent attention.
    Mla {
        num_heads: usize,
        q_lora_rank: Option<usize>,
        kv_lora_rank: usize,
        qk_nope_head_dim: usize,
        qk_rope_head_dim: usize,
        v_head_dim: usize,
        attention_bias: bool,
        rope_interleaved: bool,
        #[serde(skip)]
        rope: RopeConfig,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QkNormKind {
    None,
    PerHead,
    Full,
}

#[derive(Clone, Debug, Serialize)]
pub struct MoeSpec {
    pub router: RouterSpec,
    /// Intermediate size of one routed expert.
    pub expert_intermediate_size: usize,
    pub shared: Option<SharedExpertSpec>,
    /// Compute gate logits in f32 whatever the compute dtype (DeepSeek's routers cast to f32;
    /// Mixtral/Qwen/OLMoE compute them in the model dtype).
    pub gate_in_f32: bool,
    /// Candidate module names of the MoE block inside a layer, tried in order
    /// (`block_sparse_moe` in hub Mixtral checkpoints, `mlp` elsewhere).
    #[serde(skip)]
    pub module_names: &'static [&'static str],
}

#[derive(Clone, Debug, Serialize)]
pub struct SharedExpertSpec {
    pub intermediate_size: usize,
    /// Module name: `shared_expert` (Qwen2-MoE) or `shared_experts` (DeepSeek).
    pub module_name: &'static str,
    /// Qwen2-MoE multiplies the shared expert by `sigmoid(shared_expert_gate(x))`.
    pub sigmoid_gate: bool,
}
