use super::Linear;
use crate::error::Result;
use crate::model::weights::Prefixed;
use candle_core::Tensor;

/// The SwiGLU feed-forward block every supported family uses for dense layers and shared experts:
/// `down(silu(gate(x)) * up(x))`.
#[derive(Clone, Debug)]
pub struct GatedMlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl GatedMlp {
    /// Loads `gate_proj`, `up_proj`, `down_proj` under `w`.
    pub fn load(w: &Prefixed, hidden: usize, intermediate: usize) -> Result<Self> {
        Ok(Self {
            gate: Linear::load(&w.pp("gate_proj"), hidden, intermediate, false)?,
            up: Linear::load(&w.pp("up_proj"), hidden, intermediate, false)?,
            down: Linear::load(&w.pp("down_proj"), intermediate, hidden, false)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // Separate gate and up weights here; `swiglu_stacked` is the same activation for the
        // experts' stacked `[gate | up]` projections.
        let h = (candle_nn::ops::silu(&self.gate.forward(x)?)? * self.up.forward(x)?)?;
        self.down.forward(&h)
    }
}

/// `silu(gate) * up` where the last dimension of `gate_up` holds gate then up (`2I` wide): the
/// activation of routed experts, whose gate and up projections are stacked into one matmul.
pub fn swiglu_stacked(gate_up: &Tensor) -> Result<Tensor> {
    let last = gate_up.rank() - 1;
    let i = gate_up.dim(last)? / 2;
    Ok((candle_nn::ops::silu(&gate_up.narrow(last, 0, i)?)? * gate_up.narrow(last, i, i)?)?)
}
