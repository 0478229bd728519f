use super::Linear;
use crate::error::Result;
use crate::model::spec::{Activation, MlpProjections};
use crate::model::weights::Prefixed;
use candle_core::Tensor;

/// The gated feed-forward block of dense layers and shared experts:
/// `down(act(gate(x)) * up(x))`, SwiGLU unless [`GatedMlp::with_activation`] says otherwise
/// (Gemma-4's GeGLU), with biases where the family has them (ERNIE `use_bias`).
#[derive(Clone, Debug)]
pub struct GatedMlp {
    input: GatedInput,
    down: Linear,
    activation: Activation,
}

/// Gate and up as two matrices, or Granite's one `input_linear` holding gate rows then up rows.
#[derive(Clone, Debug)]
enum GatedInput {
    Separate {
        gate: Linear,
        up: Linear,
    },
    Stacked {
        gate_up: Linear,
        intermediate: usize,
    },
}

impl GatedMlp {
    /// Loads `gate_proj`, `up_proj`, `down_proj` under `w`.
    pub fn load(w: &Prefixed, hidden: usize, intermediate: usize, bias: bool) -> Result<Self> {
        Self::load_as(w, hidden, intermediate, bias, MlpProjections::GateUpDown)
    }

    /// Loads the matrices under the names `projections` says.
    pub fn load_as(
        w: &Prefixed,
        hidden: usize,
        intermediate: usize,
        bias: bool,
        projections: MlpProjections,
    ) -> Result<Self> {
        Ok(match projections {
            MlpProjections::GateUpDown => Self {
                input: GatedInput::Separate {
                    gate: Linear::load(&w.pp("gate_proj"), hidden, intermediate, bias)?,
                    up: Linear::load(&w.pp("up_proj"), hidden, intermediate, bias)?,
                },
                down: Linear::load(&w.pp("down_proj"), intermediate, hidden, bias)?,
                activation: Activation::SwiGlu,
            },
            MlpProjections::InputOutputLinear => Self {
                input: GatedInput::Stacked {
                    gate_up: Linear::load(&w.pp("input_linear"), hidden, 2 * intermediate, bias)?,
                    intermediate,
                },
                down: Linear::load(&w.pp("output_linear"), intermediate, hidden, bias)?,
                activation: Activation::SwiGlu,
            },
        })
    }

    /// The same MLP with `activation` over (gate, up).
    pub fn with_activation(self, activation: Activation) -> Self {
        Self { activation, ..self }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = match &self.input {
            GatedInput::Separate { gate, up } => {
                gated(&gate.forward(x)?, &up.forward(x)?, self.activation)?
            }
            GatedInput::Stacked {
                gate_up,
                intermediate,
            } => {
                let gu = gate_up.forward(x)?;
                let last = gu.rank() - 1;
                let g = gu.narrow(last, 0, *intermediate)?;
                let u = gu.narrow(last, *intermediate, *intermediate)?;
                gated(&g, &u, self.activation)?
            }
        };
        self.down.forward(&h)
    }
}

/// The experts' activation over stacked `[gate | up]` projections (the last dimension holds gate
/// then up, `2I` wide): [`Activation::apply`] as tensor ops, for the grouped and batched paths.
pub fn gated_activation(gate_up: &Tensor, activation: Activation) -> Result<Tensor> {
    let last = gate_up.rank() - 1;
    let i = gate_up.dim(last)? / 2;
    let (g, u) = (gate_up.narrow(last, 0, i)?, gate_up.narrow(last, i, i)?);
    gated(&g, &u, activation)
}

/// [`Activation::apply`] over a gate tensor and an up tensor of one shape.
fn gated(g: &Tensor, u: &Tensor, activation: Activation) -> Result<Tensor> {
    Ok(match activation {
        Activation::SwiGlu => (candle_nn::ops::silu(g)? * u)?,
        Activation::GeluTanhGlu => (g.gelu()? * u)?,
        Activation::ClampedSwiGlu { alpha, limit } => {
            let (alpha, limit) = (f64::from(alpha), f64::from(limit));
            let g = g.minimum(limit)?;
            let u = u.clamp(-limit, limit)?;
            let glu = (&g * candle_nn::ops::sigmoid(&g.affine(alpha, 0.0)?)?)?;
            (u.affine(1.0, 1.0)? * glu)?
        }
    })
}
