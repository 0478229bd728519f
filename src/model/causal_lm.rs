//! The decoder-only language model every supported family shares: embeddings, pre-norm blocks
//! (attention + dense or MoE feed-forward), final norm, LM head. Built from a [`ModelSpec`] and the
//! checkpoint's weights; the names passed to `pp` mirror the weight names.

use super::host::{HostMatrix, Layout, Projection};
use super::layers::attention::{
    GqaAttention, Indexer, MlaAttention, MlaQuery, Projections, QkNorm,
};
use super::layers::linear_attention::{DeltaNetInput, GatedDeltaNet};
use super::layers::{Attention, GatedMlp, KvCache, Linear, Norm, RmsNorm, Rotary, Weight};
use super::moe::{resolve_kernel, ChunkPosition, MoeBlock};
use super::record::{ExpertKernel, ForwardOptions, LayerRecord};
use super::spec::{
    AttentionSpec, BlockLayout, DeltaNetProjections, FfnKind, LayerSpec, LinearAttentionSpec,
    ModelSpec, MoeSpec, NormKind, NormSpec, QkNormKind, QkvProjections, RopePairing,
};
use super::stopwatch::Stopwatch;
use super::weights::{Prefixed, Weights};
use crate::error::{Error, Result};
use crate::routing::Interventions;
use crate::routing::RouterSpec;
use crate::trace::LayerTimings;
use candle_core::{DType, Device, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Debug)]
enum FeedForward {
    Dense(Box<GatedMlp>),
    Moe(Box<MoeBlock>),
}

#[derive(Clone, Debug)]
struct Block {
    input_norm: Norm,
    attention: Attention,
    /// The feed-forward input's norm, or in a sandwich block the attention output's.
    post_attention_norm: Norm,
    ffn: FeedForward,
    /// Gemma-4's sandwich layout ([`BlockLayout::Sandwich`]).
    sandwich: Option<Sandwich>,
    /// KV sharing: the earlier layer whose keys and values this one attends to.
    kv_from: Option<usize>,
}

#[derive(Clone, Debug)]
struct Sandwich {
    ffn_output_norm: Norm,
    layer_scalar: f64,
}

/// Token embeddings: the stored matrix on the CPU (rows decoded as they are looked up), a tensor
/// on a GPU.
#[derive(Clone, Debug)]
enum Embedding {
    Host(HostMatrix),
    Tensor(Tensor),
}

impl Embedding {
    /// `[ids, hidden]` in `dtype` on `device`.
    fn lookup(&self, ids: &[u32], dtype: DType, device: &Device) -> Result<Tensor> {
        match self {
            Embedding::Host(m) => {
                let h = m.cols;
                let mut rows = vec![0f32; ids.len() * h];
                for (row, &id) in rows.chunks_exact_mut(h).zip(ids) {
                    m.decode_row(id as usize, 0, row);
                }
                Ok(Tensor::from_vec(rows, (ids.len(), h), device)?.to_dtype(dtype)?)
            }
            Embedding::Tensor(t) => {
                let index = Tensor::from_vec(ids.to_vec(), ids.len(), device)?;
                Ok(t.index_select(&index, 0)?.to_dtype(dtype)?)
            }
        }
    }
}

/// A loaded model plus its KV cache.
pub struct CausalLm {
    pub spec: ModelSpec,
    embed: Embedding,
    device: Device,
    dtype: DType,
    blocks: Vec<Block>,
    norm: Norm,
    lm_head: Linear,
    cache: Vec<KvCache>,
}

impl CausalLm {
    pub fn load(spec: ModelSpec, weights: &Weights, kernel: ExpertKernel) -> Result<Self> {
        Self::load_with_progress(spec, weights, kernel, &mut |_| true)
    }

    /// Like [`CausalLm::load`], reporting the fraction of layers loaded after each one; loading
    /// stops with [`Error::Cancelled`] as soon as `progress` returns `false`.
    pub fn load_with_progress(
        spec: ModelSpec,
        weights: &Weights,
        kernel: ExpertKernel,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> Result<Self> {
        let kernel = resolve_kernel(kernel, &weights.device, weights.dtype);
        let h = spec.hidden_size;
        let names = &spec.names;
        let on_cpu = weights.device.is_cpu();
        let embed_w = weights.pp(&names.embed);
        let embed = if on_cpu {
            Embedding::Host(embed_w.host("weight", &[spec.vocab_size, h])?)
        } else {
            Embedding::Tensor(embed_w.get_stored("weight", &[spec.vocab_size, h])?)
        };
        let mut blocks = Vec::with_capacity(spec.num_layers);
        for (layer, layer_spec) in spec.layers.iter().enumerate() {
            let w = weights.pp(&names.layers).pp(layer);
            let ffn = match layer_spec.ffn {
                FfnKind::Moe => {
                    let gate = spec.moe.gate.module;
                    let name = names
                        .moe
                        .iter()
                        .find(|n| w.pp_opt(n).pp(gate).contains("weight"))
                        .copied()
                        .unwrap_or(names.moe[0]);
                    let routed_here = spec.layers[layer].top_k.map(|k| MoeSpec {
                        router: RouterSpec {
                            top_k: k,
                            ..spec.moe.router.clone()
                        },
                        ..spec.moe.clone()
                    });
                    let moe = routed_here.as_ref().unwrap_or(&spec.moe);
                    FeedForward::Moe(Box::new(MoeBlock::load(
                        &w.pp_opt(name),
                        &w,
                        h,
                        moe,
                        &spec.norm,
                        kernel,
                    )?))
                }
                FfnKind::Dense => FeedForward::Dense(Box::new(GatedMlp::load(
                    &w.pp(names.dense_mlp),
                    h,
                    spec.dense.intermediate_size,
                    spec.dense.bias,
                )?)),
            };
            blocks.push(Block {
                input_norm: Norm::load(&w.pp(names.input_norm), h, &spec.norm)?,
                attention: match (&spec.linear_attention, layer_spec.attention.linear) {
                    (Some(linear), true) => {
                        load_linear_attention(&w.pp(linear.module), h, *linear, spec.norm.eps)?
                    }
                    _ => load_attention(&w.pp(names.attention), &spec, layer_spec)?,
                },
                post_attention_norm: Norm::load(&w.pp(names.post_attention_norm), h, &spec.norm)?,
                ffn,
                sandwich: match spec.block {
                    BlockLayout::PreNorm => None,
                    BlockLayout::Sandwich {
                        ffn_output_norm,
                        layer_scalar,
                    } => Some(Sandwich {
                        ffn_output_norm: Norm::load(&w.pp(ffn_output_norm), h, &spec.norm)?,
                        layer_scalar: f64::from(
                            w.get_as(layer_scalar, &[1], DType::F32)?.to_vec1::<f32>()?[0],
                        ),
                    }),
                },
                kv_from: layer_spec.attention.kv_from,
            });
            // Each layer's load frees its temporaries; hand them back now, not at the end, so
            // the peak stays near the weights (it was 1.12× them with one trim after loading).
            super::weights::release_freed_memory();
            if !progress((layer + 1) as f32 / spec.num_layers as f32) {
                return Err(Error::Cancelled);
            }
        }
        let norm = Norm::load(&weights.pp(&names.final_norm), h, &spec.norm)?;
        let head_weight = format!("{}.weight", names.lm_head);
        let lm_head = if weights.contains(&head_weight) || !spec.tie_word_embeddings {
            Linear::load(
                &weights.pp(&names.lm_head),
                h,
                spec.vocab_size,
                spec.lm_head_bias,
            )?
        } else {
            let bias = if spec.lm_head_bias {
                Some(weights.pp(&names.lm_head).get("bias", &[spec.vocab_size])?)
            } else {
                None
            };
            let weight = match &embed {
                Embedding::Host(m) => Weight::Host(Projection {
                    matrix: m.clone(),
                    layout: Layout::OutIn,
                }),
                Embedding::Tensor(t) => Weight::Tensor(t.clone()),
            };
            Linear::new(weight, bias)?
        };
        let cache = vec![KvCache::default(); spec.num_layers];
        super::weights::keep_freed_memory_for_reuse();
        Ok(Self {
            spec,
            embed,
            device: weights.device.clone(),
            dtype: weights.dtype,
            blocks,
            norm,
            lm_head,
            cache,
        })
    }

    /// Positions already in the KV cache.
    pub fn cached_len(&self) -> usize {
        self.cache.first().map_or(0, KvCache::len)
    }

    /// Makes later forward passes apply `interventions` (checked by `Interventions::problem`
    /// against this model) in every MoE block; an empty set routes as configured.
    pub fn set_interventions(&mut self, interventions: &Interventions) {
        for (layer, block) in self.blocks.iter_mut().enumerate() {
            if let FeedForward::Moe(moe) = &mut block.ffn {
                let change =
                    (!interventions.is_empty()).then(|| interventions.layer(layer, moe.router()));
                moe.set_intervention(change);
            }
        }
    }

    pub fn clear_kv_cache(&mut self) {
        self.cache.iter_mut().for_each(|c| *c = KvCache::default());
    }

    /// Runs `ids` as the next positions after the cache, as part of a sequence that ends at
    /// `sequence_end` positions (the whole prompt when the engine prefills it in chunks; LongRoPE
    /// scales by it as transformers does for one forward over the prompt). Appends one
    /// [`LayerRecord`] per block to `records` and returns the LM-head logits of the last position
    /// (f32, `[vocab]`), or of every position (`[ids, vocab]`) when `run.every_position_logits`. `progress(done, layers)` is told after each block (the first pass over a
    /// model larger than the page cache reads its weights from disk: minutes, not milliseconds).
    pub fn forward(
        &mut self,
        ids: &[u32],
        sequence_end: usize,
        run: &ForwardOptions,
        cancel: Option<&AtomicBool>,
        progress: Option<&(dyn Fn(usize, usize) + Send + Sync)>,
        records: &mut Vec<LayerRecord>,
    ) -> Result<Vec<f32>> {
        if let Some((position, &id)) = ids
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= self.spec.vocab_size)
        {
            return Err(Error::TokenOutOfRange {
                id,
                position: self.cached_len() + position,
                vocab_size: self.spec.vocab_size,
            });
        }
        let first_position = self.cached_len();
        let device = self.device.clone();
        let multipliers = self.spec.multipliers;
        let scaled = |t: Tensor, factor: f64| -> Result<Tensor> {
            Ok(if factor == 1.0 {
                t
            } else {
                t.affine(factor, 0.0)?
            })
        };
        let mut x = scaled(
            self.embed.lookup(ids, self.dtype, &device)?,
            multipliers.embedding,
        )?;
        for (layer, block) in self.blocks.iter().enumerate() {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Error::Cancelled);
            }
            let mut watch = Stopwatch::start(&device, run.synchronize_timings);
            let mut timings = LayerTimings::default();
            let attention_input = block.input_norm.forward(&x)?;
            let (earlier, rest) = self.cache.split_at_mut(layer);
            let attn = match block.kv_from.and_then(|j| earlier.get(j)) {
                Some(source) => {
                    block
                        .attention
                        .forward_shared(&attention_input, source, sequence_end)?
                }
                None => block
                    .attention
                    .forward(&attention_input, &mut rest[0], sequence_end)?,
            };
            let attn = match &block.sandwich {
                Some(_) => block.post_attention_norm.forward(&attn)?,
                None => attn,
            };
            x = (x + scaled(attn, multipliers.residual)?)?;
            timings.attention = watch.lap_ms();
            // A sandwich block's MoE reads the residual stream and normalizes each branch itself.
            let normed = match &block.sandwich {
                Some(_) => x.clone(),
                None => block.post_attention_norm.forward(&x)?,
            };
            let (ffn_out, moe) = match &block.ffn {
                FeedForward::Dense(mlp) => {
                    let y = mlp.forward(&normed)?;
                    timings.shared = watch.lap_ms();
                    (y, None)
                }
                FeedForward::Moe(moe) => {
                    let (y, record) = moe.forward(
                        &normed,
                        layer,
                        ChunkPosition {
                            first: first_position,
                            sequence_end,
                        },
                        run,
                        &mut watch,
                        &mut timings,
                    )?;
                    (y, Some(record))
                }
            };
            let ffn_out = match &block.sandwich {
                Some(s) => s.ffn_output_norm.forward(&ffn_out)?,
                None => ffn_out,
            };
            x = (x + scaled(ffn_out, multipliers.residual)?)?;
            if let Some(s) = &block.sandwich {
                x = scaled(x, s.layer_scalar)?;
            }
            timings.total = timings.attention + timings.router + timings.experts + timings.shared;
            records.push(LayerRecord {
                layer,
                moe,
                timings_ms: timings,
            });
            if let Some(report) = progress {
                report(layer + 1, self.spec.num_layers);
            }
        }
        let rows = if run.every_position_logits {
            x
        } else {
            x.narrow(0, ids.len() - 1, 1)?
        };
        let mut logits = self.lm_head.forward_f32(&self.norm.forward(&rows)?)?;
        if multipliers.logits_divisor != 1.0 {
            let d = multipliers.logits_divisor as f32;
            logits.iter_mut().for_each(|l| *l /= d);
        }
        if let Some(cap) = multipliers.final_logit_softcap {
            let cap = cap as f32;
            logits.iter_mut().for_each(|l| *l = (*l / cap).tanh() * cap);
        }
        if logits.iter().any(|l| !l.is_finite()) {
            return Err(Error::NonFinite {
                what: "output logits",
                layer: self.spec.num_layers,
            });
        }
        Ok(logits)
    }
}

/// Epsilon of DeepSeek's latent RMSNorms (`DeepseekV3RMSNorm(q_lora_rank)` takes the default).
const MLA_NORM_EPS: f64 = 1e-6;

fn load_attention(w: &Prefixed, spec: &ModelSpec, layer: &LayerSpec) -> Result<Attention> {
    let h = spec.hidden_size;
    let attention = match (&spec.global_attention, layer.attention.global) {
        (Some(global), true) => AttentionSpec::Gqa(global.clone()),
        _ => spec.attention.clone(),
    };
    let shares_keys = layer.attention.kv_from.is_some();
    Ok(match &attention {
        AttentionSpec::Gqa(a) => {
            let (q_dim, kv_dim) = (a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim);
            let eps = spec.norm.eps;
            let qk_norm = match a.qk_norm {
                QkNormKind::None => QkNorm::None,
                QkNormKind::PerHead => QkNorm::PerHead {
                    q: RmsNorm::load_kind(&w.pp("q_norm"), a.head_dim, eps, spec.norm.kind)?,
                    k: if shares_keys {
                        None
                    } else {
                        Some(RmsNorm::load_kind(
                            &w.pp("k_norm"),
                            a.head_dim,
                            eps,
                            spec.norm.kind,
                        )?)
                    },
                },
                QkNormKind::Full => QkNorm::Full {
                    q: RmsNorm::load(&w.pp("q_norm"), q_dim, eps)?,
                    k: RmsNorm::load(&w.pp("k_norm"), kv_dim, eps)?,
                },
                QkNormKind::L2AfterRotary => QkNorm::L2AfterRotary { eps },
                QkNormKind::PerHeadAfterRotary => QkNorm::PerHeadAfterRotary {
                    q: RmsNorm::load(&w.pp("query_layernorm"), a.head_dim, eps)?,
                    k: RmsNorm::load(&w.pp("key_layernorm"), a.head_dim, eps)?,
                },
            };
            let q_rows = if a.output_gate { 2 * q_dim } else { q_dim };
            let projections = match a.projections {
                QkvProjections::Separate if shares_keys => Projections::QueryOnly {
                    q: Linear::load(&w.pp("q_proj"), h, q_rows, a.qkv_bias)?,
                    o: Linear::load(&w.pp("o_proj"), q_dim, h, a.o_bias)?,
                },
                QkvProjections::Separate if a.value_is_key => Projections::KeyIsValue {
                    q: Linear::load(&w.pp("q_proj"), h, q_rows, a.qkv_bias)?,
                    k: Linear::load(&w.pp("k_proj"), h, kv_dim, a.qkv_bias)?,
                    o: Linear::load(&w.pp("o_proj"), q_dim, h, a.o_bias)?,
                },
                QkvProjections::Separate => Projections::Separate {
                    q: Linear::load(
                        &w.pp("q_proj"),
                        h,
                        if a.output_gate { 2 * q_dim } else { q_dim },
                        a.qkv_bias,
                    )?,
                    k: Linear::load(&w.pp("k_proj"), h, kv_dim, a.qkv_bias)?,
                    v: Linear::load(&w.pp("v_proj"), h, kv_dim, a.qkv_bias)?,
                    o: Linear::load(&w.pp("o_proj"), q_dim, h, a.o_bias)?,
                },
                QkvProjections::FusedWqkv => Projections::Fused {
                    qkv: Linear::load(&w.pp("Wqkv"), h, q_dim + 2 * kv_dim, a.qkv_bias)?,
                    o: Linear::load(&w.pp("out_proj"), q_dim, h, a.o_bias)?,
                },
            };
            Attention::Gqa(GqaAttention {
                projections,
                num_heads: a.num_heads,
                num_kv_heads: a.num_kv_heads,
                head_dim: a.head_dim,
                qk_norm,
                clip_qkv: a.clip_qkv,
                sinks: if a.sinks {
                    Some(w.get_as("sinks", &[a.num_heads], DType::F32)?)
                } else {
                    None
                },
                scale: a.scale,
                output_gate: a.output_gate,
                value_norm: a.value_norm.then_some(eps),
                rotary: layer.attention.rotary.then(|| {
                    Rotary::new(
                        &a.rope,
                        a.rotary_dim(),
                        spec.max_position_embeddings,
                        a.rope_pairing,
                    )
                }),
                window: layer.attention.window,
                temperature_tuning: layer.attention.temperature_tuning,
            })
        }
        AttentionSpec::Mla(m) => {
            let qk_head_dim = m.qk_nope_head_dim + m.qk_rope_head_dim;
            let q_out = m.num_heads * qk_head_dim;
            // transformers builds q_a_layernorm and kv_a_layernorm with the RMSNorm default eps
            // (1e-6), not config.rms_norm_eps.
            let eps = MLA_NORM_EPS;
            let q = match m.q_lora_rank {
                None => MlaQuery::Direct(Linear::load(&w.pp("q_proj"), h, q_out, false)?),
                Some(r) => MlaQuery::LowRank {
                    a: Linear::load(&w.pp("q_a_proj"), h, r, m.attention_bias)?,
                    norm: RmsNorm::load(&w.pp("q_a_layernorm"), r, eps)?,
                    b: Linear::load(&w.pp("q_b_proj"), r, q_out, false)?,
                },
            };
            Attention::Mla(MlaAttention {
                q,
                kv_a: Linear::load(
                    &w.pp("kv_a_proj_with_mqa"),
                    h,
                    m.kv_lora_rank + m.qk_rope_head_dim,
                    m.attention_bias,
                )?,
                kv_norm: RmsNorm::load(&w.pp("kv_a_layernorm"), m.kv_lora_rank, eps)?,
                kv_b: Linear::load(
                    &w.pp("kv_b_proj"),
                    m.kv_lora_rank,
                    m.num_heads * (m.qk_nope_head_dim + m.v_head_dim),
                    false,
                )?,
                o: Linear::load(
                    &w.pp("o_proj"),
                    m.num_heads * m.v_head_dim,
                    h,
                    m.attention_bias,
                )?,
                num_heads: m.num_heads,
                kv_lora_rank: m.kv_lora_rank,
                qk_nope_head_dim: m.qk_nope_head_dim,
                qk_rope_head_dim: m.qk_rope_head_dim,
                v_head_dim: m.v_head_dim,
                scale: mla_softmax_scale(&m.rope, qk_head_dim),
                rotary: Rotary::new(
                    &m.rope,
                    m.qk_rope_head_dim,
                    spec.max_position_embeddings,
                    m.rope_pairing,
                ),
                indexer: match (&m.indexer, m.q_lora_rank) {
                    (Some(ix), Some(rank)) => {
                        let iw = w.pp("indexer");
                        Some(Indexer {
                            wq_b: Linear::load(
                                &iw.pp("wq_b"),
                                rank,
                                ix.heads * ix.head_dim,
                                false,
                            )?,
                            wk: Linear::load(&iw.pp("wk"), h, ix.head_dim, false)?,
                            // nn.LayerNorm(head_dim, eps=1e-6), with its bias.
                            k_norm: Norm::load(
                                &iw.pp("k_norm"),
                                ix.head_dim,
                                &NormSpec {
                                    kind: NormKind::Layer { bias: true },
                                    eps: 1e-6,
                                },
                            )?,
                            weights_proj: Linear::load(&iw.pp("weights_proj"), h, ix.heads, false)?,
                            heads: ix.heads,
                            head_dim: ix.head_dim,
                            topk: ix.topk,
                            rotary: Rotary::new(
                                &m.rope,
                                m.qk_rope_head_dim,
                                spec.max_position_embeddings,
                                RopePairing::Halves,
                            ),
                        })
                    }
                    _ => None,
                },
            })
        }
    })
}

/// A Gated DeltaNet layer under `w` (its `linear_attn` module); the gated norm's epsilon is the
/// model's `rms_norm_eps`.
fn load_linear_attention(
    w: &Prefixed,
    hidden: usize,
    spec: LinearAttentionSpec,
    eps: f64,
) -> Result<Attention> {
    let key_dim = spec.num_key_heads * spec.key_head_dim;
    let value_dim = spec.num_value_heads * spec.value_head_dim;
    let conv_dim = 2 * key_dim + value_dim;
    let vector = |name: &str, len: usize| -> Result<Vec<f32>> {
        Ok(w.get_as(name, &[len], DType::F32)?.to_vec1::<f32>()?)
    };
    let conv_weight = w
        .get_as(
            "conv1d.weight",
            &[conv_dim, 1, spec.conv_kernel],
            DType::F32,
        )?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let nv = spec.num_value_heads;
    let projection = |name: &str, rows: usize| Linear::load(&w.pp(name), hidden, rows, false);
    let input = match spec.projections {
        DeltaNetProjections::GroupedQkvzBa => DeltaNetInput::Grouped {
            qkvz: projection("in_proj_qkvz", 2 * (key_dim + value_dim))?,
            ba: projection("in_proj_ba", 2 * nv)?,
        },
        DeltaNetProjections::Separate => DeltaNetInput::Separate {
            qkv: projection("in_proj_qkv", conv_dim)?,
            z: projection("in_proj_z", value_dim)?,
            b: projection("in_proj_b", nv)?,
            a: projection("in_proj_a", nv)?,
        },
    };
    Ok(Attention::GatedDeltaNet(GatedDeltaNet {
        spec,
        input,
        out_proj: Linear::load(&w.pp("out_proj"), value_dim, hidden, false)?,
        conv_weight,
        dt_bias: vector("dt_bias", spec.num_value_heads)?,
        a_log: vector("A_log", spec.num_value_heads)?,
        norm_weight: vector("norm.weight", spec.value_head_dim)?,
        norm_eps: eps,
    }))
}

/// DeepSeek's attention scale: `qk_head_dim^-0.5`, times `mscale²` with
/// `mscale = 0.1 · mscale_all_dim · ln(factor) + 1` when YaRN is on and `mscale_all_dim` is set
/// (transformers' `yarn_apply_mscale`).
fn mla_softmax_scale(rope: &super::config::RopeConfig, qk_head_dim: usize) -> f64 {
    let base = (qk_head_dim as f64).powf(-0.5);
    match rope.scaling {
        super::config::RopeScaling::Yarn {
            factor,
            mscale_all_dim: Some(all),
            ..
        } if all != 0.0 && factor > 1.0 => {
            let m = 0.1 * all * factor.ln() + 1.0;
            base * m * m
        }
        _ => base,
    }
}
