use super::Linear;
use crate::error::Result;
use crate::model::spec::Activation;
use crate::model::weights::Prefixed;
use candle_core::Tensor;

/// The SwiGLU feed-forward block of dense layers and shared experts:
/// `down(silu(gate(x)) * up(x))`, with biases where the family has them (ERNIE `use_bias`).
#[derive(Clone, Debug)]
pub struct GatedMlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl GatedMlp {
    /// Loads `gate_proj`, `up_proj`, `down_proj` under `w`.
    pub fn load(w: &Prefixed, hidden: usize, intermediate: usize, bias: bool) -> Result<Self> {
        Ok(Self {
            gate: Linear::load(&w.pp("gate_proj"), hidden, intermediate, bias)?,
            up: Linear::load(&w.pp("up_proj"), hidden, intermediate, bias)?,
            down: Linear::load(&w.pp("down_proj"), intermediate, hidden, bias)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = (candle_nn::ops::silu(&self.gate.forward(x)?)? * self.up.forward(x)?)?;
        self.down.forward(&h)
    }
}

/// The experts' activation over stacked `[gate | up]` projections (the last dimension holds gate
/// then up, `2I` wide): [`Activation::apply`] as tensor ops, for the grouped and batched paths.
pub fn gated_activation(gate_up: &Tensor, activation: Activation) -> Result<Tensor> {
    let last = gate_up.rank() - 1;
    let i = gate_up.dim(last)? / 2;
    let (g, u) = (gate_up.narrow(last, 0, i)?, gate_up.narrow(last, i, i)?);
    Ok(match activation {
        Activation::SwiGlu => (candle_nn::ops::silu(&g)? * u)?,
        Activation::ClampedSwiGlu { alpha, limit } => {
            let (alpha, limit) = (f64::from(alpha), f64::from(limit));
            let g = g.minimum(limit)?;
            let u = u.clamp(-limit, limit)?;
            let glu = (&g * candle_nn::ops::sigmoid(&g.affine(alpha, 0.0)?)?)?;
            (u.affine(1.0, 1.0)? * glu)?
        }
    })
}
