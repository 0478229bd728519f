//! Rotary position embeddings: the inverse frequencies of each scaling variant (default, linear,
//! YaRN), computed once, and their application in the two layouts found in checkpoints.

use crate::error::Result;
use crate::model::config::{RopeConfig, RopeScaling};
use candle_core::{DType, Device, Tensor};

/// How the rotated dimensions are paired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotaryLayout {
    /// Llama/Mistral/Qwen: dimension i pairs with i + d/2 (`rotate_half`).
    Halves,
    /// DeepSeek MLA: dimensions 2i and 2i+1 pair up. transformers' DeepSeek-V2 rotates them in place
    /// (complex multiply), DeepSeek-V3 de-interleaves first; q·k is identical either way.
    Interleaved,
}

#[derive(Clone, Debug)]
pub struct Rotary {
    /// `dim / 2` inverse frequencies (f32, as transformers computes them).
    inv_freq: Vec<f32>,
    /// YaRN's attention factor multiplied into cos and sin (1 otherwise).
    attention_scaling: f32,
    layout: RotaryLayout,
}

impl Rotary {
    /// Frequencies for `dim` rotated dimensions per head.
    pub fn new(
        rope: &RopeConfig,
        dim: usize,
        max_position_embeddings: usize,
        layout: RotaryLayout,
    ) -> Self {
        let base = rope.theta;
        // pos_freqs[i] = base^(2i/dim); default inv_freq = 1 / pos_freqs.
        let pos_freqs: Vec<f64> = (0..dim / 2)
            .map(|i| base.powf((2 * i) as f64 / dim as f64))
            .collect();
        let (inv_freq, attention_scaling) = match &rope.scaling {
            RopeScaling::Default => (pos_freqs.iter().map(|p| 1.0 / p).collect::<Vec<_>>(), 1.0),
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
        };
        Self {
            inv_freq: inv_freq.into_iter().map(|f| f as f32).collect(),
            attention_scaling: attention_scaling as f32,
            layout,
        }
    }

    /// cos and sin, each `[len, dim/2]`, for positions `start .. start + len`. Computed with tensor
    /// ops on the compute device (f32 angles `position · inv_freq`, as transformers computes them):
    /// building them on the host cost ~0.5 ms per layer at 512 tokens plus an upload on a GPU.
    fn cos_sin(
        &self,
        start: usize,
        len: usize,
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
            let t = if self.attention_scaling == 1.0 {
                t
            } else {
                t.affine(self.attention_scaling as f64, 0.0)?
            };
            Ok(t.to_dtype(dtype)?)
        };
        Ok((scaled(angles.cos()?)?, scaled(angles.sin()?)?))
    }

    /// Rotates `xs` (`[heads, len, dim]` tensors) for positions starting at `start`.
    pub fn apply(&self, xs: &[&Tensor], start: usize) -> Result<Vec<Tensor>> {
        let Some(first) = xs.first() else {
            return Ok(Vec::new());
        };
        let (_, len, _) = first.dims3()?;
        let (cos, sin) = self.cos_sin(start, len, first.device(), first.dtype())?;
        xs.iter()
            .map(|x| {
                let x4 = x.unsqueeze(0)?.contiguous()?;
                let y = match self.layout {
                    RotaryLayout::Halves => candle_nn::rotary_emb::rope(&x4, &cos, &sin)?,
                    RotaryLayout::Interleaved => candle_nn::rotary_emb::rope_i(&x4, &cos, &sin)?,
                };
                Ok(y.squeeze(0)?)
            })
            .collect()
    }
}
