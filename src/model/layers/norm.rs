use crate::error::Result;
use crate::model::spec::{NormKind, NormSpec};
use crate::model::weights::Prefixed;
use candle_core::{DType, Tensor, D};

/// RMSNorm over the last dimension, computed in f32 like transformers' `*RMSNorm`
/// (`x * rsqrt(mean(x²) + eps)` in f32, cast back, then times the weight).
#[derive(Clone, Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
    /// `weight` is f32 and multiplies before the cast back: Qwen3-Next's zero-centred norms
    /// (it holds `1 + w`) and Gemma-4's.
    weight_in_f32: bool,
}

impl RmsNorm {
    pub fn load(w: &Prefixed, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.get("weight", &[dim])?,
            eps,
            weight_in_f32: false,
        })
    }

    /// A weightless RMSNorm times a given f32 `[dim]` vector, applied in f32 before the cast
    /// back (Gemma-4's router input: `rms(x) · scale · hidden^-½`).
    pub fn with_f32_weight(weight: Tensor, eps: f64) -> Self {
        Self {
            weight,
            eps,
            weight_in_f32: true,
        }
    }

    /// The norm of `kind` (plain or zero-centred RMSNorm) under `w`.
    pub fn load_kind(w: &Prefixed, dim: usize, eps: f64, kind: NormKind) -> Result<Self> {
        let weight = w.get_as("weight", &[dim], DType::F32)?;
        let weight = match kind {
            NormKind::ZeroCentredRms => weight.affine(1.0, 1.0)?,
            NormKind::RmsWeightInF32 => weight,
            NormKind::Rms | NormKind::Layer { .. } => return Self::load(w, dim, eps),
        };
        Ok(Self::with_f32_weight(weight, eps))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.weight_in_f32 {
            let dtype = x.dtype();
            let x32 = x.to_dtype(DType::F32)?;
            let variance = x32.sqr()?.mean_keepdim(D::Minus1)?;
            let normed = x32.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
            return Ok(normed.broadcast_mul(&self.weight)?.to_dtype(dtype)?);
        }
        Ok(rms_normalize(x, self.eps)?.broadcast_mul(&self.weight)?)
    }
}

/// `x * rsqrt(mean(x²) + eps)` over the last dimension in f32, cast back: RMSNorm without a
/// weight (Llama-4's "L2" q/k norm).
pub fn rms_normalize(x: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x32 = x.to_dtype(DType::F32)?;
    let variance = x32.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(x32
        .broadcast_div(&(variance + eps)?.sqrt()?)?
        .to_dtype(dtype)?)
}

/// PyTorch's `nn.LayerNorm` over the last dimension (biased variance), in f32.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Option<Tensor>,
    eps: f64,
}

impl LayerNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x32 = x.to_dtype(DType::F32)?;
        let centered = x32.broadcast_sub(&x32.mean_keepdim(D::Minus1)?)?;
        let variance = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
        let mut y = normed.broadcast_mul(&self.weight.to_dtype(DType::F32)?)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&b.to_dtype(DType::F32)?)?;
        }
        Ok(y.to_dtype(dtype)?)
    }
}

/// The model's normalization layer, of the kind its spec names.
#[derive(Clone, Debug)]
pub enum Norm {
    Rms(RmsNorm),
    Layer(LayerNorm),
}

impl Norm {
    pub fn load(w: &Prefixed, dim: usize, spec: &NormSpec) -> Result<Self> {
        Ok(match spec.kind {
            NormKind::Rms | NormKind::ZeroCentredRms | NormKind::RmsWeightInF32 => {
                Norm::Rms(RmsNorm::load_kind(w, dim, spec.eps, spec.kind)?)
            }
            NormKind::Layer { bias } => Norm::Layer(LayerNorm {
                weight: w.get("weight", &[dim])?,
                bias: if bias {
                    Some(w.get("bias", &[dim])?)
                } else {
                    None
                },
                eps: spec.eps,
            }),
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Norm::Rms(n) => n.forward(x),
            Norm::Layer(n) => n.forward(x),
        }
    }
}
