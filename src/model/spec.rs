//! What a family file produces from config.json: a plain description of the network — tensor
//! names, norms, attention and its per-layer variations, which layers are MoE, the routing rule,
//! how expert weights are stored and activated. The generic loader in [`super::causal_lm`] builds
//! any family from it, so families differ only in this data; [`ModelSpec::validate`] refuses a
//! spec the kernels could not run before any weight is read.

use super::config::RopeConfig;
use crate::routing::RouterSpec;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ModelSpec {
    /// Registry name of the family ("Mixtral", "DeepSeek-V3", ...).
    pub family: &'static str,
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub max_position_embeddings: usize,
    pub norm: NormSpec,
    pub tie_word_embeddings: bool,
    /// `lm_head.bias` (Phi-3.5-MoE's `lm_head_bias`).
    pub lm_head_bias: bool,
    pub multipliers: Multipliers,
    pub names: TensorNames,
    pub attention: AttentionSpec,
    /// The attention of layers whose `attention.global` is set, where it differs from
    /// `attention` (Gemma-4's full-attention layers: their own head_dim, kv heads, rotary, and
    /// values that are the keys).
    pub global_attention: Option<GqaSpec>,
    /// Where the norms and residual adds sit in a block.
    pub block: BlockLayout,
    /// The linear-attention token mixer of the layers whose `attention.linear` is set
    /// (Qwen3-Next's Gated DeltaNet); `None` when every layer attends.
    pub linear_attention: Option<LinearAttentionSpec>,
    /// One entry per transformer block.
    pub layers: Vec<LayerSpec>,
    /// Dense (non-MoE) feed-forward blocks.
    pub dense: DenseSpec,
    pub moe: MoeSpec,
    /// Things about this checkpoint a user should know that the numbers do not show (a config
    /// field transformers ignores, say); `info` prints them.
    pub notes: Vec<String>,
}

impl ModelSpec {
    pub fn num_moe_layers(&self) -> usize {
        self.layers.iter().filter(|l| l.ffn == FfnKind::Moe).count()
    }

    /// Whether some MoE layer routes with its own k.
    pub fn top_k_varies(&self) -> bool {
        self.layers.iter().any(|l| l.top_k.is_some())
    }

    /// The routing rule in words, with k as `k` where layers route with different k.
    pub fn router_description(&self) -> String {
        if self.top_k_varies() {
            self.moe.router.describe_with_k("k")
        } else {
            self.moe.router.describe()
        }
    }

    /// The k that MoE layer `layer` routes with.
    pub fn top_k_of(&self, layer: usize) -> usize {
        self.layers
            .get(layer)
            .and_then(|l| l.top_k)
            .unwrap_or(self.moe.router.top_k)
    }

    pub fn is_moe(&self, layer: usize) -> bool {
        self.layers
            .get(layer)
            .is_some_and(|l| l.ffn == FfnKind::Moe)
    }

    /// Why the kernels could not run this spec, if they could not (checked once, when the
    /// checkpoint is opened, so every later index and division is in range).
    pub fn validate(&self) -> Result<(), String> {
        if self.layers.len() != self.num_layers {
            return Err(format!(
                "{} layer specs for {} layers",
                self.layers.len(),
                self.num_layers
            ));
        }
        if self.hidden_size == 0 || self.vocab_size == 0 || self.num_layers == 0 {
            return Err("hidden size, vocabulary and layer count must be positive".into());
        }
        if let Some(problem) = self.implausible_size() {
            return Err(problem);
        }
        if self.norm.eps.is_nan() || self.norm.eps < 0.0 {
            return Err(format!(
                "norm epsilon {} must be non-negative",
                self.norm.eps
            ));
        }
        if let Some(problem) = self.moe.router.problem() {
            return Err(problem);
        }
        if self.num_moe_layers() > 0 && self.moe.experts.intermediate_size == 0 {
            return Err("the experts' intermediate size must be positive".into());
        }
        let dense_layers = self.layers.iter().any(|l| l.ffn == FfnKind::Dense);
        if dense_layers && self.dense.intermediate_size == 0 {
            return Err("dense layers need a positive intermediate_size".into());
        }
        for (i, layer) in self.layers.iter().enumerate() {
            if let Some(k) = layer.top_k {
                if k == 0 || k > self.moe.router.num_experts {
                    return Err(format!(
                        "layer {i}: top-k {k} must be in 1..={} (the number of experts)",
                        self.moe.router.num_experts
                    ));
                }
            }
            match layer.attention.window {
                AttentionWindow::Sliding(0) | AttentionWindow::Chunked(0) => {
                    return Err(format!("layer {i}: attention window of 0 tokens"))
                }
                _ => {}
            }
        }
        if let Some(l) = &self.linear_attention {
            if l.num_key_heads == 0
                || l.key_head_dim == 0
                || l.value_head_dim == 0
                || l.conv_kernel == 0
                || !l.num_value_heads.is_multiple_of(l.num_key_heads)
                || l.num_value_heads == 0
            {
                return Err(format!(
                    "linear attention: {} key heads × {}, {} value heads × {}, kernel {}: sizes must be positive and value heads a multiple of key heads",
                    l.num_key_heads, l.key_head_dim, l.num_value_heads, l.value_head_dim, l.conv_kernel
                ));
            }
        } else if let Some(i) = self.layers.iter().position(|l| l.attention.linear) {
            return Err(format!(
                "layer {i} is linear attention, which this model does not describe"
            ));
        }
        self.validate_layer_variants()?;
        if let Some(global) = &self.global_attention {
            global
                .problem()
                .map_or(Ok(()), |p| Err(format!("full-attention layers: {p}")))?;
        }
        match &self.attention {
            AttentionSpec::Gqa(a) => a.problem().map_or(Ok(()), Err)?,
            AttentionSpec::Mla(m) => {
                if let Some(ix) = &m.indexer {
                    if ix.heads == 0 || ix.topk == 0 || ix.head_dim < m.qk_rope_head_dim {
                        return Err(format!(
                            "indexer: {} heads × {}, top-{}: heads and top-k must be positive and head_dim at least qk_rope_head_dim {}",
                            ix.heads, ix.head_dim, ix.topk, m.qk_rope_head_dim
                        ));
                    }
                    if m.q_lora_rank.is_none() {
                        return Err("the sparse-attention indexer needs q_lora_rank".into());
                    }
                }
                if m.num_heads == 0 || m.kv_lora_rank == 0 || m.v_head_dim == 0 {
                    return Err("MLA heads, kv_lora_rank and v_head_dim must be positive".into());
                }
                if m.qk_rope_head_dim == 0 || m.qk_rope_head_dim % 2 != 0 {
                    return Err(format!(
                        "qk_rope_head_dim {} must be even and positive",
                        m.qk_rope_head_dim
                    ));
                }
            }
        }
        Ok(())
    }
}

impl ModelSpec {
    /// The per-layer attention variants and the block layout are consistent: global layers have a
    /// global attention to use, KV is shared only from an earlier unshared layer of the same
    /// kind, and a sandwich block holds an MoE block with its branch norms.
    fn validate_layer_variants(&self) -> Result<(), String> {
        for (i, layer) in self.layers.iter().enumerate() {
            let a = layer.attention;
            if a.global && self.global_attention.is_none() {
                return Err(format!(
                    "layer {i} uses full-layer attention, which this model does not describe"
                ));
            }
            if let (Some(_), AttentionSpec::Mla(_)) = (a.kv_from, &self.attention) {
                return Err(format!(
                    "layer {i} shares keys and values, which latent attention does not"
                ));
            }
            if let Some(j) = a.kv_from {
                let source = self.layers.get(j).map(|l| l.attention);
                let fits = j < i
                    && source
                        .is_some_and(|s| s.kv_from.is_none() && s.global == a.global && !s.linear)
                    && !a.linear;
                if !fits {
                    return Err(format!(
                        "layer {i} shares the keys and values of layer {j}, which is not an earlier unshared layer of its kind"
                    ));
                }
            }
        }
        if let BlockLayout::Sandwich { .. } = self.block {
            if let Some(i) = self.layers.iter().position(|l| l.ffn != FfnKind::Moe) {
                return Err(format!(
                    "layer {i} is dense, which this block layout does not describe"
                ));
            }
            if self.moe.branch_norms.is_none() {
                return Err("sandwich blocks need the MoE branch norms".into());
            }
        }
        Ok(())
    }
}

/// Upper bounds on a spec's sizes, each far beyond released models (hidden 7168, vocabulary 262 k,
/// 512 experts, 10 M positions): sizes past them are corrupt configs, and refusing them keeps every
/// byte count the loader and the memory notes compute well inside `usize`.
const MAX_SIZES: &[(&str, usize)] = &[
    ("hidden size", 1 << 20),
    ("vocabulary", 1 << 24),
    ("expert count", 1 << 16),
    ("intermediate size (or LoRA rank)", 1 << 22),
    ("head count", 1 << 14),
    ("head_dim", 1 << 14),
    ("max_position_embeddings", 1 << 30),
];

impl ModelSpec {
    /// The first size past its bound in [`MAX_SIZES`], in words.
    fn implausible_size(&self) -> Option<String> {
        let (heads, head_dim) = match &self.attention {
            AttentionSpec::Gqa(a) => (a.num_heads.max(a.num_kv_heads), a.head_dim),
            AttentionSpec::Mla(m) => (
                m.num_heads,
                m.qk_nope_head_dim
                    .saturating_add(m.qk_rope_head_dim)
                    .max(m.v_head_dim),
            ),
        };
        let sizes = [
            self.hidden_size,
            self.vocab_size,
            self.moe.router.num_experts,
            self.moe
                .experts
                .intermediate_size
                .max(self.dense.intermediate_size)
                .max(self.moe.shared.as_ref().map_or(0, |s| s.intermediate_size))
                .max(match &self.attention {
                    AttentionSpec::Mla(m) => m.kv_lora_rank.max(m.q_lora_rank.unwrap_or(0)),
                    AttentionSpec::Gqa(_) => 0,
                }),
            heads,
            head_dim,
            self.max_position_embeddings,
        ];
        MAX_SIZES
            .iter()
            .zip(sizes)
            .find(|((_, max), size)| size > max)
            .map(|((what, max), size)| {
                format!("{what} {size} is beyond any real model (at most {max})")
            })
    }
}

/// Normalization layers (every norm of the model has the same kind and epsilon).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct NormSpec {
    pub kind: NormKind,
    pub eps: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum NormKind {
    /// RMSNorm with a weight, computed in f32.
    Rms,
    /// Gemma-4's RMSNorm: the weight multiplies in f32 before the cast back (as zero-centred
    /// norms do, but the stored weight is used as it is).
    RmsWeightInF32,
    /// Qwen3-Next's zero-centred RMSNorm: the stored weight w is used as `1 + w`, multiplied in
    /// f32 before the cast back (every norm of the model, q/k norms included).
    ZeroCentredRms,
    /// LayerNorm with a weight and, when `bias`, a bias (Phi-3.5-MoE; DBRX has none).
    Layer { bias: bool },
}

/// Granite's scalar multipliers (1 elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Multipliers {
    /// Embeddings are multiplied by this.
    pub embedding: f64,
    /// Each block's attention and feed-forward outputs are multiplied by this before the
    /// residual add.
    pub residual: f64,
    /// The LM head's logits are divided by this (`logits_scaling`).
    pub logits_divisor: f64,
    /// Gemma's `final_logit_softcapping` c: logits become `c · tanh(logits / c)`.
    pub final_logit_softcap: Option<f64>,
}

impl Default for Multipliers {
    fn default() -> Self {
        Self {
            embedding: 1.0,
            residual: 1.0,
            logits_divisor: 1.0,
            final_logit_softcap: None,
        }
    }
}

/// Where a family keeps its tensors: module paths, joined with `.` as the weight names are.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TensorNames {
    /// Token embeddings (`model.embed_tokens`; DBRX `transformer.wte`).
    pub embed: String,
    /// The blocks, indexed after this (`model.layers`; DBRX `transformer.blocks`).
    pub layers: String,
    pub final_norm: String,
    pub lm_head: String,
    /// Inside a block:
    pub input_norm: &'static str,
    pub post_attention_norm: &'static str,
    pub attention: &'static str,
    /// Module of a dense block's MLP (`mlp`; Llama-4 `feed_forward`).
    pub dense_mlp: &'static str,
    /// Candidate module names of the MoE block, tried in order (hub Mixtral and Phi-3.5-MoE use
    /// `block_sparse_moe`, transformers 5 writes `mlp`).
    pub moe: &'static [&'static str],
}

impl TensorNames {
    /// The Llama layout under `model.` most families use.
    pub fn llama() -> Self {
        Self::llama_under("model", "lm_head")
    }

    /// The Llama layout under another root (Llama-4's multimodal `language_model.model`).
    pub fn llama_under(root: &str, lm_head: &str) -> Self {
        Self {
            embed: format!("{root}.embed_tokens"),
            layers: format!("{root}.layers"),
            final_norm: format!("{root}.norm"),
            lm_head: lm_head.to_owned(),
            input_norm: "input_layernorm",
            post_attention_norm: "post_attention_layernorm",
            attention: "self_attn",
            dense_mlp: "mlp",
            moe: &["mlp"],
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttentionSpec {
    /// Grouped-query attention with rotary embeddings.
    Gqa(GqaSpec),
    /// DeepSeek multi-head latent attention.
    Mla(MlaSpec),
}

#[derive(Clone, Debug, Serialize)]
pub struct GqaSpec {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub projections: QkvProjections,
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub qk_norm: QkNormKind,
    /// Clamp q, k and v to ±value after projection (OLMoE, DBRX `clip_qkv`).
    pub clip_qkv: Option<f64>,
    /// A learned per-head logit joins each softmax and takes probability mass (GPT-OSS `sinks`).
    pub sinks: bool,
    /// Softmax scale: `head_dim^-0.5`, or Granite's `attention_multiplier`.
    pub scale: f64,
    /// Qwen3-Next: `q_proj` yields per head the query and as many gate values; the attention
    /// output is multiplied by `sigmoid(gate)` before `o_proj`.
    pub output_gate: bool,
    /// Gemma-4 `attention_k_eq_v` (its full layers): no `v_proj`; the values are the key
    /// projection's output before the key norm and rotary.
    pub value_is_key: bool,
    /// Gemma-4: a weightless RMSNorm over each value head.
    pub value_norm: bool,
    #[serde(skip)]
    pub rope: RopeConfig,
    pub rope_pairing: RopePairing,
}

impl GqaSpec {
    /// Rotated dimensions per head (all of them unless `partial_rotary_factor` < 1).
    pub fn rotary_dim(&self) -> usize {
        (self.head_dim as f64 * self.rope.partial_rotary_factor) as usize
    }

    /// Why the kernels could not run this attention, if they could not.
    fn problem(&self) -> Option<String> {
        if self.num_heads == 0 || self.num_kv_heads == 0 || self.head_dim == 0 {
            return Some("attention heads and head_dim must be positive".into());
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Some(format!(
                "{} attention heads are not a multiple of {} kv heads",
                self.num_heads, self.num_kv_heads
            ));
        }
        let rotary = self.rotary_dim();
        if rotary == 0 || !rotary.is_multiple_of(2) {
            return Some(format!(
                "{rotary} rotary dimensions of head_dim {} (partial_rotary_factor {}): must be even and positive",
                self.head_dim, self.rope.partial_rotary_factor
            ));
        }
        None
    }
}

/// How q, k and v are projected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum QkvProjections {
    /// `q_proj`, `k_proj`, `v_proj`, `o_proj`.
    Separate,
    /// DBRX: one `Wqkv` `[q + 2·kv, hidden]` split into q, k, v; output `out_proj`.
    FusedWqkv,
}

#[derive(Clone, Debug, Serialize)]
pub struct MlaSpec {
    pub num_heads: usize,
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
    pub attention_bias: bool,
    pub rope_pairing: RopePairing,
    #[serde(skip)]
    pub rope: RopeConfig,
    /// DeepSeek-V3.2's sparse-attention indexer: each query attends only to the keys it selects.
    pub indexer: Option<IndexerSpec>,
}

/// DeepSeek Sparse Attention's indexer (`self_attn.indexer`): per query, the `topk` earlier keys
/// with the highest `Σ_h w_h · relu(q_h · k)` (its own `heads` × `head_dim` queries from the
/// low-rank query, one LayerNorm'd key per position, rotary on the first `qk_rope_head_dim` in
/// halves pairing); attention is masked to them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IndexerSpec {
    pub heads: usize,
    pub head_dim: usize,
    pub topk: usize,
}

/// How rotated dimensions pair up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RopePairing {
    /// Llama/Mistral/Qwen: dimension i pairs with i + d/2 (`rotate_half`).
    Halves,
    /// Dimensions 2i and 2i+1 (DeepSeek MLA, Llama-4's complex rotation, ERNIE-4.5).
    Interleaved,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QkNormKind {
    None,
    /// RMSNorm with a weight over each head, before rotary (Qwen3, GLM-4-MoE).
    PerHead,
    /// RMSNorm over the whole projection before the head split (OLMoE).
    Full,
    /// Weightless RMS ("L2") norm over each head *after* rotary, on rotary layers only (Llama-4).
    L2AfterRotary,
    /// RMSNorm with a weight over each head *after* rotary (HunYuan's `query_layernorm` /
    /// `key_layernorm`).
    PerHeadAfterRotary,
}

/// One block's variations.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LayerSpec {
    pub attention: LayerAttention,
    pub ffn: FfnKind,
    /// This layer's k where it differs from the router's (HunYuan's per-layer `moe_topk`).
    pub top_k: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LayerAttention {
    pub window: AttentionWindow,
    /// `false` for NoPE layers (Llama-4): no rotary embedding at all.
    pub rotary: bool,
    /// Llama-4's attention temperature tuning on NoPE layers.
    pub temperature_tuning: Option<TemperatureTuning>,
    /// The layer mixes tokens with the model's [`LinearAttentionSpec`] instead of attention.
    pub linear: bool,
    /// The layer attends with the model's `global_attention` (Gemma-4's full layers).
    pub global: bool,
    /// Gemma-4's KV sharing: the layer has no key/value projections and attends to the keys and
    /// values of this earlier layer (the last unshared layer of its kind).
    pub kv_from: Option<usize>,
}

impl LayerAttention {
    pub const FULL: Self = Self {
        window: AttentionWindow::Full,
        rotary: true,
        temperature_tuning: None,
        linear: false,
        global: false,
        kv_from: None,
    };
}

/// Gated DeltaNet (Qwen3-Next's and Qwen3.5's `linear_attn`): a depthwise causal convolution over
/// the q, k, v projections, then a recurrent state per value head updated by the gated delta rule,
/// a gated RMSNorm and `out_proj`. Weights under `module`: the input projections, `conv1d`,
/// `dt_bias`, `A_log`, `norm`, `out_proj`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LinearAttentionSpec {
    pub module: &'static str,
    pub projections: DeltaNetProjections,
    pub num_key_heads: usize,
    pub num_value_heads: usize,
    pub key_head_dim: usize,
    pub value_head_dim: usize,
    pub conv_kernel: usize,
}

/// How a Gated DeltaNet stores its input projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaNetProjections {
    /// Qwen3-Next: `in_proj_qkvz` and `in_proj_ba`, rows grouped per key head (q, k, v, z and
    /// b, a of the value heads that key head serves).
    GroupedQkvzBa,
    /// Qwen3.5: `in_proj_qkv` (q, k, v one after the other), `in_proj_z`, `in_proj_b`,
    /// `in_proj_a`.
    Separate,
}

/// Which earlier positions a query may attend to (always causal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "tokens")]
pub enum AttentionWindow {
    Full,
    /// The last `w` positions, itself included (`q − k < w`).
    Sliding(usize),
    /// Positions in the same block of `c` (`q / c == k / c`; Llama-4 chunked attention).
    Chunked(usize),
}

/// Queries at position p are scaled by `1 + attn_scale · ln(1 + floor((p + 1) / floor_scale))`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TemperatureTuning {
    pub floor_scale: f64,
    pub attn_scale: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FfnKind {
    Dense,
    Moe,
}

/// A dense SwiGLU MLP (`gate_proj`, `up_proj`, `down_proj`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DenseSpec {
    pub intermediate_size: usize,
    /// ERNIE-4.5's `use_bias`.
    pub bias: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct MoeSpec {
    pub router: RouterSpec,
    pub gate: GateSpec,
    pub experts: ExpertSpec,
    pub shared: Option<SharedExpertSpec>,
    /// What the routing weight multiplies: the expert's output, or (Llama-4) its input.
    pub weights_on: WeightTarget,
    /// Gemma-4: the block reads the residual stream itself and each branch has its own norms.
    pub branch_norms: Option<BranchNorms>,
}

/// Gemma-4's MoE layer runs a dense MLP (the "shared" branch) and the routed experts side by
/// side on the residual stream, each between its own input and output RMSNorm (names under the
/// decoder block); the router normalizes the residual itself ([`GateSpec::input_scale`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BranchNorms {
    pub shared_input: &'static str,
    pub shared_output: &'static str,
    pub experts_input: &'static str,
    pub experts_output: &'static str,
}

/// Where a block's norms and residual adds sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BlockLayout {
    /// `x += attn(input_norm(x)); x += ffn(post_attention_norm(x))` (Llama and all but Gemma).
    PreNorm,
    /// Gemma-4: `x += post_attention_norm(attn(input_norm(x)))`, then
    /// `x += ffn_output_norm(moe(x))` with the MoE block's own branch norms, then the whole
    /// stream times the block's stored scalar (`layer_scalar`, `[1]`).
    Sandwich {
        ffn_output_norm: &'static str,
        layer_scalar: &'static str,
    },
}

/// The router's linear layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GateSpec {
    /// Module under the MoE block (`gate`, `router`, `router.layer`).
    pub module: &'static str,
    /// GPT-OSS's router has a bias.
    pub bias: bool,
    /// Compute the logits in f32 whatever the compute dtype (DeepSeek, GLM, ERNIE cast the
    /// router to f32; the others run it in the model dtype).
    pub in_f32: bool,
    /// Name of the selection-only bias under the MoE block, when the router has one
    /// (`gate.e_score_correction_bias`, ERNIE's `moe_statics.e_score_correction_bias`).
    pub selection_bias: Option<&'static str>,
    /// Gemma-4: the gate reads `rms(x) · scale · hidden^-½`, `scale` this `[hidden]` vector
    /// under the MoE block (`router.scale`).
    pub input_scale: Option<&'static str>,
    /// Gemma-4: the routing weights, after renormalization, times this learned `[experts]`
    /// vector under the MoE block at the chosen ids (`router.per_expert_scale`).
    pub expert_scale: Option<&'static str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightTarget {
    Output,
    Input,
}

/// How the routed experts are stored and what they compute.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExpertSpec {
    pub intermediate_size: usize,
    /// Module under the MoE block holding the experts (`experts`, DBRX `experts.mlp`; empty when
    /// the tensors sit in the block itself, Granite's `input_linear`).
    pub module: &'static str,
    pub layout: ExpertLayout,
    pub activation: Activation,
    /// Per-expert biases on both projections (GPT-OSS `gate_up_proj_bias`, `down_proj_bias`).
    pub bias: bool,
}

/// Expert tensor layouts found in released checkpoints. Whatever the layout, loading yields per
/// expert a gate-then-up `[2I, H]` and a down `[H, I]` matrix, the form every kernel takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ExpertLayout {
    /// One tensor per expert and projection, `{n}.{gate}.weight` `[I, H]` etc. (hub Mixtral,
    /// Qwen, DeepSeek, GLM, ERNIE); transformers 5's packed `gate_up_proj` `[E, 2I, H]` +
    /// `down_proj` `[E, H, I]` is accepted too.
    PerExpert {
        gate: &'static str,
        up: &'static str,
        down: &'static str,
    },
    /// All experts in one tensor per projection.
    Stacked {
        gate_up: &'static str,
        down: &'static str,
        /// `[E, out, in]` (Granite) or `[E, in, out]` (GPT-OSS, Llama-4: `x @ W`).
        orientation: Orientation,
        /// Gate and up as two halves, or interleaved rows/columns (GPT-OSS: gate even, up odd).
        gate_up_order: GateUpOrder,
    },
    /// DBRX: `w1` (gate), `v1` (up) and `w2` (down, stored transposed) each `[E·I, H]`.
    DbrxFlat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Orientation {
    OutIn,
    InOut,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GateUpOrder {
    Halves,
    Interleaved,
}

/// The experts' gated activation over gate g and up u.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Activation {
    /// `silu(g) · u`.
    SwiGlu,
    /// Gemma's `gelu_pytorch_tanh(g) · u`.
    GeluTanhGlu,
    /// GPT-OSS: g ← min(g, limit), u ← clamp(u, ±limit), `(u + 1) · g · sigmoid(alpha · g)`.
    ClampedSwiGlu { alpha: f32, limit: f32 },
}

impl Activation {
    /// The activation of one (gate, up) pair in f32, the definition every kernel follows
    /// (with a vectorizable `exp` accurate to a few ulp).
    #[inline(always)]
    pub fn apply(self, g: f32, u: f32) -> f32 {
        use super::host::math::exp;
        match self {
            Activation::SwiGlu => g / (1.0 + exp(-g)) * u,
            Activation::GeluTanhGlu => gelu_tanh(g) * u,
            Activation::ClampedSwiGlu { alpha, limit } => {
                let g = g.min(limit);
                let u = u.clamp(-limit, limit);
                (u + 1.0) * (g / (1.0 + exp(-g * alpha)))
            }
        }
    }
}

/// `gelu_pytorch_tanh`: `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`, written as
/// `x · sigmoid(2a)` (the same function) so it vectorizes through [`super::host::math::exp`].
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let a = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    x / (1.0 + super::host::math::exp(-2.0 * a))
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SharedExpertSpec {
    pub intermediate_size: usize,
    /// Module name: `shared_expert` (Qwen2-MoE, Llama-4), `shared_experts` (DeepSeek, GLM,
    /// ERNIE, dots1), `shared_mlp` (HunYuan, Granite-MoE-Shared).
    pub module: &'static str,
    /// Qwen2-MoE multiplies the shared expert by `sigmoid(shared_expert_gate(x))`.
    pub sigmoid_gate: Option<&'static str>,
    pub bias: bool,
    /// Granite-MoE-Shared keeps `shared_mlp` in the decoder block beside `block_sparse_moe`;
    /// everyone else inside the MoE module.
    pub beside_moe: bool,
    pub projections: MlpProjections,
    /// Gemma-4's dense MLP beside the experts uses `gelu_pytorch_tanh`; SwiGLU elsewhere.
    pub activation: Activation,
}

impl SharedExpertSpec {
    /// A bias-free SwiGLU MLP under the MoE module, `gate_proj` / `up_proj` / `down_proj`.
    pub fn swiglu(intermediate_size: usize, module: &'static str) -> Self {
        Self {
            intermediate_size,
            module,
            sigmoid_gate: None,
            bias: false,
            beside_moe: false,
            projections: MlpProjections::GateUpDown,
            activation: Activation::SwiGlu,
        }
    }
}

/// How a gated MLP's matrices are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MlpProjections {
    /// `gate_proj`, `up_proj`, `down_proj`.
    GateUpDown,
    /// Granite: `input_linear` `[2I, H]` (gate rows, then up rows) and `output_linear`.
    InputOutputLinear,
}
