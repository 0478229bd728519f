use crate::error::Result;
use crate::model::weights::Prefixed;
use candle_core::Tensor;

/// `y = x Wᵀ + b` over 2-D activations (tokens × features); PyTorch's `nn.Linear`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[out, in]`, as stored in checkpoints.
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Loads `{prefix}.weight` (and `{prefix}.bias` when `bias`) with shape `[out, in]`.
    pub fn load(w: &Prefixed, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = w.get("weight", &[out_dim, in_dim])?;
        let bias = if bias {
            Some(w.get("bias", &[out_dim])?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    pub fn from_weight(weight: Tensor) -> Self {
        Self { weight, bias: None }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.weight.t()?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}
