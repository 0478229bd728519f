//! Rotary position embeddings: the inverse frequencies of each scaling variant (default, linear,
//! YaRN, llama3, LongRoPE), computed once, and their application in the two pairings found in
//! checkpoints, over all of a head's dimensions or its first `rotary_dim` (partial rotary).

use crate::error::Result;
use crate::model::config::{RopeConfig, RopeScaling};
use crate::model::spec::RopePairing;
use candle_core::{DType, Device, Tensor, D};

#[derive(Clone, Debug)]
pub struct Rotary {
    /// `rotary_dim / 2` inverse frequencies (f32, as transformers computes them).
    inv_freq: Vec<f32>,
    /// Factor multiplied into cos and sin (YaRN's attention factor; 1 otherwise).
    attention_scaling: f32,
    /// LongRoPE: the factor depends on the sequence: `(original_max, short, long)`.
    length_scaling: Option<(usize, f32, f32)>,
    pairing: RopePairing,
    rotary_dim: usize,
}

impl Rotary {
    /// Frequencies for `rotary_dim` rotated dimensions per head.
    pub fn new(
        rope: &RopeConfig,
        rotary_dim: usize,
        max_position_embeddings: usize,
        pairing: RopePairing,
    ) -> Self {
        let dim = rotary_dim;
        let base = rope.theta;
        // pos_freqs[i] = base^(2i/dim); default inv_freq = 1 / pos_freqs.
        let pos_freqs: Vec<f64> = (0..dim / 2)
            .map(|i| base.powf((2 * i) as f64 / dim as f64))
            .collect();
        let default = || pos_freqs.iter().map(|p| 1.0 / p).collect::<Vec<f64>>();
        let mut length_scaling = None;
        let (inv_freq, attention_scaling) = match &rope.scaling {
            RopeScaling::Default => (default(), 1.0),
            // llama.cpp: θ = position · base^(−2i/d) / factor[i].
            RopeScaling::FrequencyFactors { factors } => (
                default()
                    .iter()
                    .zip(factors.iter().chain(std::iter::repeat(&1.0)))
                    .map(|(f, factor)| f / factor)
                    .collect(),
                1.0,
            ),
            RopeScaling::Proportional {
                factor,
                rotated_fraction,
            } => {
                let angles = (rotated_fraction * dim as f64 / 2.0).floor() as usize;
                let inv = default()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| if i < angles { f / factor } else { 0.0 })
                    .collect();
                (inv, 1.0)
            }
            RopeScaling::Linear { factor } => {
                (pos_freqs.iter().map(|p| 1.0 / (p * factor)).collect(), 1.0)
            }
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                mscale,
                mscale_all_dim,
                attention_factor,
                truncate,
            } => {
                let original = *original_max_position_embeddings as f64;
                let factor = if *factor > 0.0 {
                    *factor
                } else {
                    max_position_embeddings as f64 / original
                };
                let get_mscale = |scale: f64, m: f64| {
                    if scale <= 1.0 {
                        1.0
                    } else {
                        0.1 * m * scale.ln() + 1.0
                    }
                };
                let attention = attention_factor.unwrap_or(match (mscale, mscale_all_dim) {
                    (Some(m), Some(all)) if *m != 0.0 && *all != 0.0 => {
                        get_mscale(factor, *m) / get_mscale(factor, *all)
                    }
                    _ => get_mscale(factor, 1.0),
                });
                let beta_fast = if *beta_fast == 0.0 { 32.0 } else { *beta_fast };
                let beta_slow = if *beta_slow == 0.0 { 1.0 } else { *beta_slow };
                let correction_dim = |rotations: f64| {
                    dim as f64 * (original / (rotations * 2.0 * std::f64::consts::PI)).ln()
                        / (2.0 * base.ln())
                };
                let (mut low, mut high) = (correction_dim(beta_fast), correction_dim(beta_slow));
                if *truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let low = low.max(0.0);
                let high = high.min(dim as f64 - 1.0);
                let high = if low == high { high + 0.001 } else { high };
                let inv = pos_freqs
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                        let extrapolation_factor = 1.0 - ramp;
                        let interpolation = 1.0 / (factor * p);
                        let extrapolation = 1.0 / p;
                        interpolation * (1.0 - extrapolation_factor)
                            + extrapolation * extrapolation_factor
                    })
                    .collect();
                (inv, attention)
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                // transformers `_compute_llama3_parameters`: long wavelengths divided by the
                // factor, short ones kept, the band between interpolated smoothly.
                let old = *original_max_position_embeddings as f64;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                let inv = default()
                    .into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        let scaled = if wavelen > low_wavelen { f / factor } else { f };
                        let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                        if medium {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * scaled / factor + smooth * scaled
                        } else {
                            scaled
                        }
                    })
                    .collect();
                (inv, 1.0)
            }
            RopeScaling::LongRope {
                short_factor,
                short_mscale,
                long_mscale,
                attention_factor,
                factor,
                original_max_position_embeddings,
                ..
            } => {
                let original = *original_max_position_embeddings;
                let factor = factor.unwrap_or(max_position_embeddings as f64 / original as f64);
                let attention = attention_factor.unwrap_or(if factor <= 1.0 {
                    1.0
                } else {
                    (1.0 + factor.ln() / (original as f64).ln()).sqrt()
                });
                length_scaling = Some((
                    original,
                    short_mscale.unwrap_or(attention) as f32,
                    long_mscale.unwrap_or(attention) as f32,
                ));
                // transformers 5.23's Phimoe rotary recomputes the frequencies without a sequence
                // length, which always selects `short_factor`.
                let inv = pos_freqs
                    .iter()
                    .enumerate()
                    .map(|(i, p)| 1.0 / (short_factor.get(i).copied().unwrap_or(1.0) * p))
                    .collect();
                (inv, attention)
            }
        };
        Self {
            inv_freq: inv_freq.into_iter().map(|f| f as f32).collect(),
            attention_scaling: attention_scaling as f32,
            length_scaling,
            pairing,
            rotary_dim,
        }
    }

    /// The cos/sin factor for a forward pass whose sequence ends at `sequence_end` positions.
    fn scaling_for(&self, sequence_end: usize) -> f32 {
        match self.length_scaling {
            Some((original, short, long)) => {
                if sequence_end > original {
                    long
                } else {
                    short
                }
            }
            None => self.attention_scaling,
        }
    }

    /// cos and sin, each `[len, rotary_dim/2]`, for positions `start .. start + len`. Computed with
    /// tensor ops on the compute device (f32 angles `position · inv_freq`, as transformers computes
    /// them): building them on the host cost ~0.5 ms per layer at 512 tokens plus an upload on a GPU.
    fn cos_sin(
        &self,
        start: usize,
        len: usize,
        scaling: f32,
        device: &Device,
        dtype: DType,
    ) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let positions = Tensor::arange(start as u32, (start + len) as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((len, 1))?;
        let inv_freq = Tensor::from_slice(&self.inv_freq, (1, half), device)?;
        let angles = positions.broadcast_mul(&inv_freq)?;
        let scaled = |t: Tensor| -> Result<Tensor> {
            let t = if scaling == 1.0 {
                t
            } else {
                t.affine(scaling as f64, 0.0)?
            };
            Ok(t.to_dtype(dtype)?)
        };
        Ok((scaled(angles.cos()?)?, scaled(angles.sin()?)?))
    }

    /// Rotates `xs` (`[heads, len, head_dim]` tensors) for positions starting at `start`, in a
    /// forward pass whose sequence ends at `sequence_end` (LongRoPE's scale depends on it). With
    /// partial rotary only the first `rotary_dim` dimensions turn; the rest pass through.
    pub fn apply(&self, xs: &[&Tensor], start: usize, sequence_end: usize) -> Result<Vec<Tensor>> {
        let Some(first) = xs.first() else {
            return Ok(Vec::new());
        };
        let (_, len, head_dim) = first.dims3()?;
        let scaling = self.scaling_for(sequence_end);
        let (cos, sin) = self.cos_sin(start, len, scaling, first.device(), first.dtype())?;
        xs.iter()
            .map(|x| {
                let (rot, pass) = if self.rotary_dim < head_dim {
                    (
                        x.narrow(D::Minus1, 0, self.rotary_dim)?,
                        Some(x.narrow(D::Minus1, self.rotary_dim, head_dim - self.rotary_dim)?),
                    )
                } else {
                    ((*x).clone(), None)
                };
                let x4 = rot.unsqueeze(0)?.contiguous()?;
                let y = match self.pairing {
                    RopePairing::Halves => candle_nn::rotary_emb::rope(&x4, &cos, &sin)?,
                    RopePairing::Interleaved => candle_nn::rotary_emb::rope_i(&x4, &cos, &sin)?,
                }
                .squeeze(0)?;
                Ok(match pass {
                    Some(pass) => Tensor::cat(&[&y, &pass], D::Minus1)?,
                    None => y,
                })
            })
            .collect()
    }
}
