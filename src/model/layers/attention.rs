//! Attention variants: grouped-query attention (optional q/k norm, biases, clip, sinks, sliding or
//! chunked windows, NoPE layers with temperature tuning) and multi-head latent attention
//! (DeepSeek-V2/V3). Both share one masked softmax
//! kernel and one KV-cache type, so appending tokens one at a time reproduces a full prefill.

use super::linear_attention::{GatedDeltaNet, LinearState};
use super::norm::rms_normalize;
use super::{Linear, Norm, RmsNorm, Rotary};
use crate::error::Result;
use crate::model::host;
use crate::model::spec::{AttentionWindow, TemperatureTuning};
use candle_core::{DType, Tensor, D};

/// Per-layer cache of what attention needs from earlier positions.
///
/// For GQA `keys`/`values` hold rotated keys and values `[kv_heads, seen, head_dim]`. For MLA they
/// hold the rotated shared key part `[1, seen, rope_dim]` and the normalized latent `[seen, kv_lora]`
/// (the compressed form DeepSeek caches, expanded by `kv_b_proj` at each step).
///
/// A linear-attention layer keeps its recurrent state and convolution inputs instead.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    keys: Option<Tensor>,
    values: Option<Tensor>,
    linear: LinearState,
    /// DeepSeek-V3.2's indexer keys `[1, seen, index_head_dim]`.
    index_keys: Option<Tensor>,
}

impl KvCache {
    /// Number of positions already cached.
    pub fn len(&self) -> usize {
        if self.linear.seen > 0 {
            return self.linear.seen;
        }
        self.values.as_ref().map_or(0, |v| {
            v.dims()
                .get(v.rank().saturating_sub(2))
                .copied()
                .unwrap_or(0)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached keys and values, when there are any.
    fn keys_and_values(&self) -> Option<(Tensor, Tensor)> {
        Some((self.keys.clone()?, self.values.clone()?))
    }

    /// Appends along the position axis (`dim`) and returns the full tensors.
    fn append(
        &mut self,
        keys: Tensor,
        values: Tensor,
        keys_dim: usize,
        values_dim: usize,
    ) -> Result<(Tensor, Tensor)> {
        let keys = match self.keys.take() {
            Some(old) => Tensor::cat(&[&old, &keys], keys_dim)?,
            None => keys,
        };
        let values = match self.values.take() {
            Some(old) => Tensor::cat(&[&old, &values], values_dim)?,
            None => values,
        };
        self.keys = Some(keys.clone());
        self.values = Some(values.clone());
        Ok((keys, values))
    }
}

/// Where q/k normalization sits, when the family has it.
#[derive(Clone, Debug)]
pub enum QkNorm {
    None,
    /// Qwen3, GLM-4-MoE: RMSNorm over each head's `head_dim`, before rotary (no key norm on a
    /// KV-sharing layer, which has no keys of its own).
    PerHead {
        q: RmsNorm,
        k: Option<RmsNorm>,
    },
    /// OLMoE: RMSNorm over the whole projection (`heads * head_dim`), before the head split.
    Full {
        q: RmsNorm,
        k: RmsNorm,
    },
    /// Llama-4: weightless RMS norm over each head after rotary (rotary layers only).
    L2AfterRotary {
        eps: f64,
    },
    /// HunYuan: RMSNorm with a weight over each head after rotary.
    PerHeadAfterRotary {
        q: RmsNorm,
        k: RmsNorm,
    },
}

/// The q/k/v/o projections: separate, or DBRX's fused `Wqkv`.
// One per layer: the variants' size difference costs nothing, boxing would add an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Projections {
    Separate {
        q: Linear,
        k: Linear,
        v: Linear,
        o: Linear,
    },
    Fused {
        qkv: Linear,
        o: Linear,
    },
    /// Gemma-4 `attention_k_eq_v`: the key projection's output is also the values.
    KeyIsValue {
        q: Linear,
        k: Linear,
        o: Linear,
    },
    /// Gemma-4's KV-sharing layers: queries only, keys and values from an earlier layer.
    QueryOnly {
        q: Linear,
        o: Linear,
    },
}

#[derive(Clone, Debug)]
pub struct GqaAttention {
    pub projections: Projections,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub qk_norm: QkNorm,
    /// OLMoE's and DBRX's `clip_qkv`: clamp q, k, v to ±value after projection.
    pub clip_qkv: Option<f64>,
    /// GPT-OSS: one learned logit per head that joins every softmax (`[heads]`, f32).
    pub sinks: Option<Tensor>,
    pub scale: f64,
    /// Qwen3-Next: `q_proj` holds per head the query then a gate; output × sigmoid(gate).
    pub output_gate: bool,
    /// Gemma-4: a weightless RMSNorm (this epsilon) over each value head.
    pub value_norm: Option<f64>,
    /// `None` on NoPE layers.
    pub rotary: Option<Rotary>,
    pub window: AttentionWindow,
    pub temperature_tuning: Option<TemperatureTuning>,
}

/// DeepSeek's query path: a direct projection, or a low-rank one (`q_lora_rank`).
#[derive(Clone, Debug)]
pub enum MlaQuery {
    Direct(Linear),
    LowRank { a: Linear, norm: RmsNorm, b: Linear },
}

#[derive(Clone, Debug)]
pub struct MlaAttention {
    pub q: MlaQuery,
    /// `kv_a_proj_with_mqa`: hidden → kv_lora_rank + qk_rope_head_dim.
    pub kv_a: Linear,
    pub kv_norm: RmsNorm,
    /// `kv_b_proj`: kv_lora_rank → heads × (qk_nope_head_dim + v_head_dim).
    pub kv_b: Linear,
    pub o: Linear,
    pub num_heads: usize,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
    /// Softmax scale: `qk_head_dim^-0.5`, times YaRN's `mscale²` when the rope is scaled.
    pub scale: f64,
    pub rotary: Rotary,
    /// DeepSeek-V3.2's sparse-attention indexer.
    pub indexer: Option<Indexer>,
}

/// DeepSeek Sparse Attention's indexer (transformers `DeepseekV32Indexer`): scores every earlier
/// key for each query as `Σ_h w_h · relu(q_h · k · d^-0.5)` with `w = weights_proj(x) · heads^-0.5`
/// and keeps the `topk` best (all of them while fewer are visible). Its keys are cached.
#[derive(Clone, Debug)]
pub struct Indexer {
    pub wq_b: Linear,
    pub wk: Linear,
    pub k_norm: Norm,
    pub weights_proj: Linear,
    pub heads: usize,
    pub head_dim: usize,
    pub topk: usize,
    /// The first `qk_rope_head_dim` of each head, halves pairing.
    pub rotary: Rotary,
}

impl Indexer {
    /// The additive `[len, seen]` mask of the keys each query of `x` selects (0) or not (−∞);
    /// `q_resid` is the attention's normalized low-rank query, `keys` the cached indexer keys.
    fn selection(
        &self,
        x: &Tensor,
        q_resid: &Tensor,
        keys: &mut Option<Tensor>,
        start: usize,
        sequence_end: usize,
    ) -> Result<Tensor> {
        let (len, _) = x.dims2()?;
        let (nh, d) = (self.heads, self.head_dim);
        let q = self
            .wq_b
            .forward(q_resid)?
            .reshape((len, nh, d))?
            .transpose(0, 1)?
            .contiguous()?;
        let k = self
            .k_norm
            .forward(&self.wk.forward(x)?)?
            .reshape((1, len, d))?;
        let rotated = self.rotary.apply(&[&q, &k], start, sequence_end)?;
        let all_keys = match keys.take() {
            Some(old) => Tensor::cat(&[&old, &rotated[1]], 1)?,
            None => rotated[1].clone(),
        };
        *keys = Some(all_keys.clone());
        let seen = all_keys.dim(1)?;
        let flat = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)
        };
        let (q, k) = (flat(&rotated[0])?, flat(&all_keys)?);
        let w = flat(&self.weights_proj.forward(x)?)?;
        let (scale, head_weight) = ((d as f32).powf(-0.5), (nh as f32).powf(-0.5));
        let mut mask = vec![f32::NEG_INFINITY; len * seen];
        for s in 0..len {
            let visible = (start + s + 1).min(seen);
            let row = &mut mask[s * seen..(s + 1) * seen];
            if self.topk >= visible {
                row[..visible].iter_mut().for_each(|m| *m = 0.0);
                continue;
            }
            let mut scores: Vec<(f32, usize)> = (0..visible)
                .map(|t| {
                    let key = &k[t * d..(t + 1) * d];
                    let score: f32 = (0..nh)
                        .map(|h| {
                            let qh = &q[(h * len + s) * d..(h * len + s + 1) * d];
                            let dot: f32 = qh.iter().zip(key).map(|(a, b)| a * b).sum();
                            w[s * nh + h] * head_weight * (dot * scale).max(0.0)
                        })
                        .sum();
                    (score, t)
                })
                .collect();
            // Best first; equal scores keep the earlier key.
            scores.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for &(_, t) in &scores[..self.topk] {
                row[t] = 0.0;
            }
        }
        Ok(Tensor::from_vec(mask, (len, seen), x.device())?)
    }
}

// One per layer: the variants' size difference costs nothing, boxing would add an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Attention {
    Gqa(GqaAttention),
    Mla(MlaAttention),
    /// Qwen3-Next's linear-attention layers.
    GatedDeltaNet(GatedDeltaNet),
}

impl Attention {
    /// Attends `x` (`[len, hidden]`, positions `cache.len()..`) to itself and the cache, in a
    /// forward pass whose sequence ends at `sequence_end` positions.
    pub fn forward(&self, x: &Tensor, cache: &mut KvCache, sequence_end: usize) -> Result<Tensor> {
        match self {
            Attention::Gqa(a) => a.forward(x, Keys::Own(cache), sequence_end),
            Attention::Mla(a) => a.forward(x, cache, sequence_end),
            Attention::GatedDeltaNet(a) => a.forward(x, &mut cache.linear),
        }
    }
}

/// Where a GQA layer's keys and values come from: its own projections, appended to its own
/// cache, or (Gemma-4's KV sharing) the cache of an earlier layer that has already taken in this
/// forward call's positions.
pub enum Keys<'a> {
    Own(&'a mut KvCache),
    SharedFrom(&'a KvCache),
}

impl Attention {
    /// [`Attention::forward`] for a KV-sharing layer: `x`'s positions end where `source`'s
    /// cache ends, and its keys and values are all the layer attends to.
    pub fn forward_shared(
        &self,
        x: &Tensor,
        source: &KvCache,
        sequence_end: usize,
    ) -> Result<Tensor> {
        match self {
            Attention::Gqa(a) => a.forward(x, Keys::SharedFrom(source), sequence_end),
            // ModelSpec::validate admits KV sharing on GQA models only.
            _ => Err(candle_core::Error::Msg(
                "only grouped-query attention shares keys and values".into(),
            )
            .into()),
        }
    }
}

impl GqaAttention {
    fn forward(&self, x: &Tensor, keys_from: Keys, sequence_end: usize) -> Result<Tensor> {
        let (len, _) = x.dims2()?;
        let start = match &keys_from {
            Keys::Own(cache) => cache.len(),
            Keys::SharedFrom(source) => source.len().saturating_sub(len),
        };
        let (q_dim, kv_dim) = (
            self.num_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
        );
        let mut gate = None;
        // Keys and values are `None` on a KV-sharing layer.
        let (mut q, mut kv, o) = match &self.projections {
            Projections::Separate { q, k, v, o } if self.output_gate => {
                // [len, heads, 2·d]: each head's query, then its gate.
                let qg = q
                    .forward(x)?
                    .reshape((len, self.num_heads, 2 * self.head_dim))?;
                let query = qg.narrow(2, 0, self.head_dim)?.reshape((len, q_dim))?;
                gate = Some(
                    qg.narrow(2, self.head_dim, self.head_dim)?
                        .reshape((len, q_dim))?,
                );
                (query, Some((k.forward(x)?, v.forward(x)?)), o)
            }
            Projections::Separate { q, k, v, o } => {
                (q.forward(x)?, Some((k.forward(x)?, v.forward(x)?)), o)
            }
            Projections::Fused { qkv, o } => {
                // DBRX clamps the fused projection before splitting it.
                let mut all = qkv.forward(x)?;
                if let Some(c) = self.clip_qkv {
                    all = all.clamp(-c, c)?;
                }
                (
                    all.narrow(1, 0, q_dim)?,
                    Some((
                        all.narrow(1, q_dim, kv_dim)?,
                        all.narrow(1, q_dim + kv_dim, kv_dim)?,
                    )),
                    o,
                )
            }
            Projections::KeyIsValue { q, k, o } => {
                let k = k.forward(x)?;
                (q.forward(x)?, Some((k.clone(), k)), o)
            }
            Projections::QueryOnly { q, o } => (q.forward(x)?, None, o),
        };
        if let QkNorm::Full { q: qn, k: kn } = &self.qk_norm {
            q = qn.forward(&q)?;
            if let Some((k, _)) = &mut kv {
                *k = kn.forward(k)?;
            }
        }
        if let (Some(c), Projections::Separate { .. }) = (self.clip_qkv, &self.projections) {
            q = q.clamp(-c, c)?;
            if let Some((k, v)) = &mut kv {
                *k = k.clamp(-c, c)?;
                *v = v.clamp(-c, c)?;
            }
        }
        let heads = |t: &Tensor, n: usize| t.reshape((len, n, self.head_dim));
        let mut q = heads(&q, self.num_heads)?;
        let mut kv = match kv {
            Some((k, v)) => Some((heads(&k, self.num_kv_heads)?, heads(&v, self.num_kv_heads)?)),
            None => None,
        };
        if let QkNorm::PerHead { q: qn, k: kn } = &self.qk_norm {
            q = qn.forward(&q)?;
            if let (Some((k, _)), Some(kn)) = (&mut kv, kn) {
                *k = kn.forward(k)?;
            }
        }
        if let (Some(eps), Some((_, v))) = (self.value_norm, &mut kv) {
            *v = rms_normalize(v, eps)?;
        }
        // [len, heads, d] -> [heads, len, d]
        let by_head = |t: &Tensor| t.transpose(0, 1)?.contiguous();
        let mut q = by_head(&q)?;
        let mut kv = match kv {
            Some((k, v)) => Some((by_head(&k)?, by_head(&v)?)),
            None => None,
        };
        if let Some(rotary) = &self.rotary {
            match &mut kv {
                Some((k, _)) => {
                    let rotated = rotary.apply(&[&q, k], start, sequence_end)?;
                    (q, *k) = (rotated[0].clone(), rotated[1].clone());
                }
                None => q = rotary.apply(&[&q], start, sequence_end)?[0].clone(),
            }
            if let QkNorm::L2AfterRotary { eps } = self.qk_norm {
                q = rms_normalize(&q, eps)?;
                if let Some((k, _)) = &mut kv {
                    *k = rms_normalize(k, eps)?;
                }
            }
        }
        if let QkNorm::PerHeadAfterRotary { q: qn, k: kn } = &self.qk_norm {
            q = qn.forward(&q)?;
            if let Some((k, _)) = &mut kv {
                *k = kn.forward(k)?;
            }
        }
        if let Some(t) = self.temperature_tuning {
            // Llama-4 NoPE layers: 1 + attn_scale · ln(1 + floor((p + 1) / floor_scale)).
            let scales: Vec<f32> = (start..start + len)
                .map(|p| {
                    let f = ((p as f64 + 1.0) / t.floor_scale).floor();
                    (f.ln_1p() * t.attn_scale + 1.0) as f32
                })
                .collect();
            let scales = Tensor::from_vec(scales, (1, len, 1), q.device())?.to_dtype(q.dtype())?;
            q = q.broadcast_mul(&scales)?;
        }
        let (k, v) = match (keys_from, kv) {
            (Keys::Own(cache), Some((k, v))) => cache.append(k, v, 1, 1)?,
            (Keys::SharedFrom(source), None) => source.keys_and_values().ok_or_else(|| {
                candle_core::Error::Msg("a KV-sharing layer ran before its source layer".into())
            })?,
            _ => {
                return Err(candle_core::Error::Msg(
                    "a layer with its own keys cannot share another layer's".into(),
                )
                .into())
            }
        };
        let keys = VisibleKeys {
            start,
            window: self.window,
            selected: None,
        };
        let out = masked_attention(&q, &k, &v, self.scale, keys, self.sinks.as_ref())?;
        match gate {
            Some(g) => o.forward(&(out * candle_nn::ops::sigmoid(&g)?)?),
            None => o.forward(&out),
        }
    }
}

impl MlaAttention {
    fn forward(&self, x: &Tensor, cache: &mut KvCache, sequence_end: usize) -> Result<Tensor> {
        let start = cache.len();
        let (len, _) = x.dims2()?;
        let h = self.num_heads;
        let (nope, rope, vdim) = (
            self.qk_nope_head_dim,
            self.qk_rope_head_dim,
            self.v_head_dim,
        );
        let (q, q_resid) = match &self.q {
            MlaQuery::Direct(p) => (p.forward(x)?, None),
            MlaQuery::LowRank { a, norm, b } => {
                let resid = norm.forward(&a.forward(x)?)?;
                (b.forward(&resid)?, Some(resid))
            }
        };
        // [len, h*(nope+rope)] -> [h, len, nope+rope]
        let q = q.reshape((len, h, nope + rope))?.transpose(0, 1)?;
        let q_nope = q.narrow(2, 0, nope)?;
        let q_rot = q.narrow(2, nope, rope)?.contiguous()?;
        let compressed = self.kv_a.forward(x)?;
        let latent = self
            .kv_norm
            .forward(&compressed.narrow(1, 0, self.kv_lora_rank)?)?;
        let k_rot = compressed
            .narrow(1, self.kv_lora_rank, rope)?
            .reshape((1, len, rope))?;
        let rotated = self.rotary.apply(&[&q_rot, &k_rot], start, sequence_end)?;
        let (q_rot, k_rot) = (&rotated[0], &rotated[1]);
        let (k_rot, latent) = cache.append(k_rot.clone(), latent, 1, 0)?;
        let seen = latent.dim(0)?;
        // kv_b_proj(latent): [seen, h*(nope+v)] -> [h, seen, nope+v]
        let kv = self
            .kv_b
            .forward(&latent)?
            .reshape((seen, h, nope + vdim))?
            .transpose(0, 1)?;
        let k_nope = kv.narrow(2, 0, nope)?;
        let v = kv.narrow(2, nope, vdim)?.contiguous()?;
        let k = Tensor::cat(&[&k_nope, &k_rot.broadcast_as((h, seen, rope))?], 2)?;
        let q = Tensor::cat(&[&q_nope, q_rot], 2)?;
        let selected = match (&self.indexer, &q_resid) {
            (Some(indexer), Some(r)) => {
                Some(indexer.selection(x, r, &mut cache.index_keys, start, sequence_end)?)
            }
            _ => None,
        };
        let keys = VisibleKeys {
            start,
            window: AttentionWindow::Full,
            selected: selected.as_ref(),
        };
        let out = masked_attention(&q, &k, &v, self.scale, keys, None)?;
        self.o.forward(&out)
    }
}

/// Which keys a query may attend: causal from absolute position `start` on, within `window`, and
/// (DeepSeek-V3.2) among those its indexer `selected` (`[len, seen]`, 0 or −∞).
#[derive(Clone, Copy)]
struct VisibleKeys<'a> {
    start: usize,
    window: AttentionWindow,
    selected: Option<&'a Tensor>,
}

/// `[kv_heads, s, d]` → `[kv_heads * repeat, s, d]`, each kv head serving `repeat` query heads.
fn repeat_kv(x: &Tensor, repeat: usize) -> Result<Tensor> {
    if repeat == 1 {
        return Ok(x.clone());
    }
    let (kv_heads, s, d) = x.dims3()?;
    Ok(x.unsqueeze(1)?
        .broadcast_as((kv_heads, repeat, s, d))?
        .reshape((kv_heads * repeat, s, d))?)
}

/// Causal softmax attention of `q` `[h, len, dq]` over `k` `[h, seen, dq]`, `v` `[h, seen, dv]`,
/// where query i sits at absolute position `start + i`, within `window`. Scores and softmax in
/// f32 (transformers' eager path). With `sinks` (`[h]`), each head's sink logit joins its
/// softmax as one more column that is then dropped, so it only takes probability mass (GPT-OSS).
/// Keys and values may have fewer heads than queries (grouped-query attention: each serves
/// `h / kv_heads` query heads). Returns `[len, h * dv]`. On the CPU the core runs in
/// [`host::attention::attend`] in f32 whatever the compute dtype.
fn masked_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    keys: VisibleKeys,
    sinks: Option<&Tensor>,
) -> Result<Tensor> {
    let VisibleKeys {
        start,
        window,
        selected,
    } = keys;
    let (h, len, dq) = q.dims3()?;
    let (kv_heads, seen, _) = k.dims3()?;
    if q.device().is_cpu() && selected.is_none() {
        let flat = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)
        };
        let dv = v.dim(2)?;
        let sinks = match sinks {
            Some(s) => Some(flat(s)?),
            None => None,
        };
        let shape = host::attention::Shape {
            heads: h,
            kv_heads,
            len,
            seen,
            dq,
            dv,
        };
        let out = host::attention::attend(
            &flat(q)?,
            &flat(k)?,
            &flat(v)?,
            shape,
            host::attention::Masking {
                scale: scale as f32,
                start,
                window,
            },
            sinks.as_deref(),
        );
        return Ok(Tensor::from_vec(out, (len, h * dv), q.device())?.to_dtype(q.dtype())?);
    }
    let repeat = h / kv_heads;
    let (k, v) = (&repeat_kv(k, repeat)?, &repeat_kv(v, repeat)?);
    let dtype = q.dtype();
    let scores = (q.contiguous()?.matmul(&k.t()?.contiguous()?)? * scale)?.to_dtype(DType::F32)?;
    let mask = causal_mask(len, seen, start, window, q.device())?;
    let scores = scores.broadcast_add(&mask)?;
    // DeepSeek-V3.2: only the keys the indexer selected (`[len, seen]`, 0 or −∞).
    let scores = match selected {
        Some(m) => scores.broadcast_add(&m.unsqueeze(0)?)?,
        None => scores,
    };
    let probs = match sinks {
        None => candle_nn::ops::softmax_last_dim(&scores)?,
        Some(sinks) => {
            let sink_column = sinks
                .to_dtype(DType::F32)?
                .reshape((h, 1, 1))?
                .broadcast_as((h, len, 1))?
                .contiguous()?;
            let all = Tensor::cat(&[&scores, &sink_column], 2)?;
            candle_nn::ops::softmax_last_dim(&all)?.narrow(2, 0, seen)?
        }
    }
    .to_dtype(dtype)?;
    let out = probs.contiguous()?.matmul(&v.contiguous()?)?; // [h, len, dv]
    let dv = out.dim(D::Minus1)?;
    Ok(out.transpose(0, 1)?.contiguous()?.reshape((len, h * dv))?)
}

/// `[1, len, seen]` additive mask: 0 where query i (absolute position `start + i`) may attend key
/// j (`j ≤ start + i`; with a sliding window also `start + i − j < w`; chunked, also
/// `j / c == (start + i) / c`), −∞ elsewhere. Built with tensor ops on the compute device: a
/// host-built mask was a 1 MB upload per layer at 512 tokens.
fn causal_mask(
    len: usize,
    seen: usize,
    start: usize,
    window: AttentionWindow,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let position = Tensor::arange(start as u32, (start + len) as u32, device)?.reshape((len, 1))?;
    let key = Tensor::arange(0u32, seen as u32, device)?.reshape((1, seen))?;
    let mut visible = key.broadcast_le(&position)?;
    match window {
        AttentionWindow::Full => {}
        AttentionWindow::Sliding(w) => {
            // start + i − j < w  ⇔  j + w > start + i
            let key_end =
                Tensor::arange(w as u32, (seen + w) as u32, device)?.reshape((1, seen))?;
            visible = (visible * key_end.broadcast_gt(&position)?)?;
        }
        AttentionWindow::Chunked(c) => {
            // Keys of the query's chunk start at (start + i) − (start + i) mod c.
            let chunk_start: Vec<u32> = (start..start + len).map(|p| (p - p % c) as u32).collect();
            let chunk_start = Tensor::from_vec(chunk_start, (len, 1), device)?;
            visible = (visible * key.broadcast_ge(&chunk_start)?)?;
        }
    }
    let open = Tensor::zeros((len, seen), DType::F32, device)?;
    let blocked = Tensor::full(f32::NEG_INFINITY, (len, seen), device)?;
    Ok(visible.where_cond(&open, &blocked)?.unsqueeze(0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The mask built with tensor ops is the definition, with and without a sliding window, for a
    /// first chunk and a later one.
    #[test]
    fn causal_mask_matches_the_definition() {
        use AttentionWindow::{Chunked, Full, Sliding};
        for (len, start, window) in [
            (5, 0, Full),
            (3, 4, Full),
            (6, 2, Sliding(3)),
            (1, 9, Sliding(4)),
            (7, 0, Chunked(3)),
            (4, 5, Chunked(4)),
        ] {
            let seen = start + len;
            let got: Vec<Vec<f32>> = causal_mask(len, seen, start, window, &Device::Cpu)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec2()
                .unwrap();
            for (i, row) in got.iter().enumerate() {
                let pos = start + i;
                for (j, &v) in row.iter().enumerate() {
                    let visible = j <= pos
                        && match window {
                            Full => true,
                            Sliding(w) => pos - j < w,
                            Chunked(c) => j / c == pos / c,
                        };
                    let want = if visible { 0.0 } else { f32::NEG_INFINITY };
                    assert_eq!(v, want, "len {len} start {start} {window:?} ({i}, {j})");
                }
            }
        }
    }
}
