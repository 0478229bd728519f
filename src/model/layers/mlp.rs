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
        let h = (candle_nn::ops::silu(&self.gate.forward(x)?)? * self.up.forward(x)?)?;
        self.down.forward(&h)
    }
}
