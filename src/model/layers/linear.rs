use crate::error::Result;
use crate::model::host::{self, Layout, Projection};
use crate::model::weights::Prefixed;
use candle_core::{DType, Tensor};

/// A weight matrix where the compute device wants it: on the CPU the stored matrix itself
/// (borrowing the file mapping, any stored format) for [`host::matmul`]; on a GPU a tensor in
/// the stored dtype, converted to the activations' dtype as the op runs.
#[derive(Clone, Debug)]
pub enum Weight {
    Host(Projection),
    Tensor(Tensor),
}

/// `y = x Wᵀ + b` over activations `[..., in]`; PyTorch's `nn.Linear`.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Weight,
    pub bias: Option<Tensor>,
    /// The bias in f32 for the host path.
    bias_f32: Option<Vec<f32>>,
}

impl Linear {
    /// Loads `{prefix}.weight` `[out, in]` (and `{prefix}.bias` when `bias`).
    pub fn load(w: &Prefixed, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = if w.weights.device.is_cpu() {
            Weight::Host(w.projection("weight", None, out_dim, in_dim, Layout::OutIn)?)
        } else {
            Weight::Tensor(w.get_stored("weight", &[out_dim, in_dim])?)
        };
        let bias = if bias {
            Some(w.get("bias", &[out_dim])?)
        } else {
            None
        };
        Self::new(weight, bias)
    }

    pub fn new(weight: Weight, bias: Option<Tensor>) -> Result<Self> {
        let bias_f32 = match (&weight, &bias) {
            (Weight::Host(_), Some(b)) => Some(b.to_dtype(DType::F32)?.to_vec1()?),
            _ => None,
        };
        Ok(Self {
            weight,
            bias,
            bias_f32,
        })
    }

    pub fn out_dim(&self) -> Result<usize> {
        Ok(match &self.weight {
            Weight::Host(p) => p.out_dim(),
            Weight::Tensor(t) => t.dim(0)?,
        })
    }

    /// `x Wᵀ + b` in the activations' dtype.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.weight {
            Weight::Tensor(w) => {
                let w = if w.dtype() == x.dtype() {
                    w.clone()
                } else {
                    w.to_dtype(x.dtype())?
                };
                // Activations are [tokens, in] everywhere; broadcast_matmul made cuBLAS
                // see a broadcast (copied) weight.
                let y = if x.rank() == 2 {
                    x.matmul(&w.t()?)?
                } else {
                    x.broadcast_matmul(&w.t()?)?
                };
                Ok(match &self.bias {
                    Some(b) => y.broadcast_add(&b.to_dtype(x.dtype())?)?,
                    None => y,
                })
            }
            Weight::Host(_) => {
                let mut shape = x.dims().to_vec();
                let y = self.forward_f32(x)?;
                *shape.last_mut().expect("activations have a last dimension") = self.out_dim()?;
                Ok(Tensor::from_vec(y, shape, x.device())?.to_dtype(x.dtype())?)
            }
        }
    }

    /// `x Wᵀ + b` as f32 values, row-major, accumulated in f32 and never rounded to the
    /// activations' dtype (the LM head's logits). bf16 activations multiply as bf16 (with
    /// `vdpbf16ps` where the CPU has it), as a bf16 matmul does.
    pub fn forward_f32(&self, x: &Tensor) -> Result<Vec<f32>> {
        let Weight::Host(p) = &self.weight else {
            return Ok(self
                .forward(x)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1()?);
        };
        let (k, n) = (p.in_dim(), p.out_dim());
        let m = x.elem_count() / k.max(1);
        let mut y = vec![0f32; m * n];
        match x.dtype() {
            DType::BF16 => {
                let xs: Vec<u16> = x
                    .flatten_all()?
                    .to_vec1::<half::bf16>()?
                    .into_iter()
                    .map(half::bf16::to_bits)
                    .collect();
                host::matmul_bf16(&xs, m, p, &mut y, n);
            }
            _ => {
                let xs: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                host::matmul(&xs, m, p, &mut y, n);
            }
        }
        if let Some(b) = &self.bias_f32 {
            for row in y.chunks_exact_mut(n) {
                row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
        }
        Ok(y)
    }
}
