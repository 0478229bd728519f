//! Gated DeltaNet, the linear-attention token mixer of Qwen3-Next (transformers
//! `models/qwen3_next/modeling_qwen3_next.py`, `Qwen3NextGatedDeltaNet`), written once for any
//! family that has it.
//!
//! Per layer: `in_proj_qkvz` and `in_proj_ba` project the input, grouped per key head; q, k and v
//! pass a depthwise causal convolution (kernel `conv_kernel`, SiLU); each value head keeps a
//! `[key_head_dim, value_head_dim]` state S that every token decays by `exp(g)` and corrects
//! toward its value by the delta rule (`S += k ⊗ β·(v − Sᵀk)`), and reads out `Sᵀq`; a gated
//! RMSNorm (`norm(o) · silu(z)`) and `out_proj` follow. The state and the convolution's last
//! inputs live in the layer's [`KvCache`](super::KvCache), so feeding tokens one at a time gives
//! exactly what one pass over them gives. transformers runs a prefill through its chunked form
//! and single tokens through the recurrent one; they are the same sums in another order, and this
//! file computes the recurrent form for both, in f32 on the host (where transformers computes the
//! rule in f32 too).

use super::Linear;
use crate::error::Result;
use crate::model::spec::LinearAttentionSpec;
use candle_core::{DType, Tensor};

/// What a Gated DeltaNet layer carries from earlier positions.
#[derive(Clone, Debug, Default)]
pub struct LinearState {
    /// The convolution's last `conv_kernel − 1` inputs, oldest first, `conv_dim` each.
    conv: Vec<f32>,
    /// One `[key_head_dim, value_head_dim]` state per value head.
    recurrent: Vec<f32>,
    /// Positions seen.
    pub seen: usize,
}

/// The input projections, as [`DeltaNetProjections`](crate::model::spec::DeltaNetProjections)
/// names them.
// One per layer: the variants' size difference costs nothing, boxing would add an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum DeltaNetInput {
    Grouped {
        qkvz: Linear,
        ba: Linear,
    },
    Separate {
        qkv: Linear,
        z: Linear,
        b: Linear,
        a: Linear,
    },
}

#[derive(Clone, Debug)]
pub struct GatedDeltaNet {
    pub spec: LinearAttentionSpec,
    pub input: DeltaNetInput,
    pub out_proj: Linear,
    /// `conv1d.weight` `[conv_dim, 1, kernel]` as `[conv_dim][kernel]`.
    pub conv_weight: Vec<f32>,
    pub dt_bias: Vec<f32>,
    pub a_log: Vec<f32>,
    /// The gated RMSNorm's weight, `[value_head_dim]`.
    pub norm_weight: Vec<f32>,
    pub norm_eps: f64,
}

impl GatedDeltaNet {
    fn key_dim(&self) -> usize {
        self.spec.num_key_heads * self.spec.key_head_dim
    }

    fn value_dim(&self) -> usize {
        self.spec.num_value_heads * self.spec.value_head_dim
    }

    /// Channels the convolution runs over: q, k and v.
    pub fn conv_dim(&self) -> usize {
        2 * self.key_dim() + self.value_dim()
    }

    /// Mixes `x` (`[len, hidden]`, the positions after `state.seen`) and advances the state.
    pub fn forward(&self, x: &Tensor, state: &mut LinearState) -> Result<Tensor> {
        let (len, _) = x.dims2()?;
        let dtype = x.dtype();
        let host = |l: &Linear| -> Result<Vec<f32>> {
            Ok(l.forward(x)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1()?)
        };
        let s = self.spec;
        let (hk, hv, nk, nv) = (
            s.key_head_dim,
            s.value_head_dim,
            s.num_key_heads,
            s.num_value_heads,
        );
        let per_key = nv / nk;
        let (key_dim, value_dim, conv_dim) = (self.key_dim(), self.value_dim(), self.conv_dim());
        let kernel = s.conv_kernel;
        // A fresh state (the conv part is empty anyway when the kernel is 1).
        if state.recurrent.is_empty() {
            state.conv = vec![0.0; (kernel - 1) * conv_dim];
            state.recurrent = vec![0.0; nv * hk * hv];
        }

        // Each token's [q | k | v] after the kept convolution inputs, its z, b and a.
        let mut mixed = Vec::with_capacity((kernel - 1 + len) * conv_dim);
        mixed.extend_from_slice(&state.conv);
        let (z, b, a) = match &self.input {
            DeltaNetInput::Separate { qkv, z, b, a } => {
                mixed.extend(host(qkv)?);
                (host(z)?, host(b)?, host(a)?)
            }
            DeltaNetInput::Grouped { qkvz, ba } => {
                let (qkvz, ba) = (host(qkvz)?, host(ba)?);
                ungroup(&qkvz, &ba, &mut mixed, s, len)
            }
        };

        // Depthwise causal convolution over the kept inputs and these, then SiLU.
        let mut conv = vec![0f32; len * conv_dim];
        for t in 0..len {
            for c in 0..conv_dim {
                let w = &self.conv_weight[c * kernel..(c + 1) * kernel];
                let sum: f32 = (0..kernel)
                    .map(|j| w[j] * mixed[(t + j) * conv_dim + c])
                    .sum();
                conv[t * conv_dim + c] = silu(sum);
            }
        }
        state.conv = mixed[len * conv_dim..].to_vec();

        // The gated delta rule, one value head at a time.
        let mut out = vec![0f32; len * value_dim];
        let scale = (hk as f32).powf(-0.5);
        for t in 0..len {
            let row = &conv[t * conv_dim..(t + 1) * conv_dim];
            for h in 0..nv {
                let kh = h / per_key;
                let q = l2_normalized(&row[kh * hk..(kh + 1) * hk]);
                let k = l2_normalized(&row[key_dim + kh * hk..key_dim + (kh + 1) * hk]);
                let v = &row[2 * key_dim + h * hv..2 * key_dim + (h + 1) * hv];
                let beta = sigmoid(b[t * nv + h]);
                let decay =
                    (-self.a_log[h].exp() * softplus(a[t * nv + h] + self.dt_bias[h])).exp();
                let state_h = &mut state.recurrent[h * hk * hv..(h + 1) * hk * hv];
                state_h.iter_mut().for_each(|x| *x *= decay);
                let mut delta = vec![0f32; hv];
                for (j, d) in delta.iter_mut().enumerate() {
                    let remembered: f32 = (0..hk).map(|i| state_h[i * hv + j] * k[i]).sum();
                    *d = (v[j] - remembered) * beta;
                }
                for i in 0..hk {
                    for j in 0..hv {
                        state_h[i * hv + j] += k[i] * delta[j];
                    }
                }
                let o = &mut out[t * value_dim + h * hv..t * value_dim + (h + 1) * hv];
                for (j, o) in o.iter_mut().enumerate() {
                    *o = (0..hk).map(|i| state_h[i * hv + j] * q[i] * scale).sum();
                }
            }
        }
        state.seen += len;

        // Gated RMSNorm per value head: weight · norm(o) · silu(z).
        for (o, z) in out.chunks_exact_mut(hv).zip(z.chunks_exact(hv)) {
            let mean_square = o.iter().map(|x| x * x).sum::<f32>() / hv as f32;
            let inv = 1.0 / (mean_square + self.norm_eps as f32).sqrt();
            for ((o, &w), &z) in o.iter_mut().zip(&self.norm_weight).zip(z) {
                *o = w * (*o * inv) * silu(z);
            }
        }
        let out = Tensor::from_vec(out, (len, value_dim), x.device())?.to_dtype(dtype)?;
        self.out_proj.forward(&out)
    }
}

/// Qwen3-Next's grouped rows (per key head: q, k, v and z of the value heads it serves; b and a
/// likewise) reordered: [q | k | v] appended to `mixed` per token; z, b, a returned.
fn ungroup(
    qkvz: &[f32],
    ba: &[f32],
    mixed: &mut Vec<f32>,
    s: LinearAttentionSpec,
    len: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (hk, hv, nk, nv) = (
        s.key_head_dim,
        s.value_head_dim,
        s.num_key_heads,
        s.num_value_heads,
    );
    let per_key = nv / nk;
    let (key_dim, value_dim) = (nk * hk, nv * hv);
    let conv_dim = 2 * key_dim + value_dim;
    let group = 2 * hk + 2 * per_key * hv;
    let mut z = vec![0f32; len * value_dim];
    let mut b = vec![0f32; len * nv];
    let mut a = vec![0f32; len * nv];
    for t in 0..len {
        let row = &qkvz[t * 2 * (key_dim + value_dim)..(t + 1) * 2 * (key_dim + value_dim)];
        let start = mixed.len();
        mixed.resize(start + conv_dim, 0.0);
        let (q_out, rest) = mixed[start..].split_at_mut(key_dim);
        let (k_out, v_out) = rest.split_at_mut(key_dim);
        for head in 0..nk {
            let g = &row[head * group..(head + 1) * group];
            q_out[head * hk..(head + 1) * hk].copy_from_slice(&g[..hk]);
            k_out[head * hk..(head + 1) * hk].copy_from_slice(&g[hk..2 * hk]);
            let vs = per_key * hv;
            v_out[head * vs..(head + 1) * vs].copy_from_slice(&g[2 * hk..2 * hk + vs]);
            z[t * value_dim + head * vs..t * value_dim + (head + 1) * vs]
                .copy_from_slice(&g[2 * hk + vs..]);
            let ba_row = &ba[t * 2 * nv + head * 2 * per_key..][..2 * per_key];
            b[t * nv + head * per_key..][..per_key].copy_from_slice(&ba_row[..per_key]);
            a[t * nv + head * per_key..][..per_key].copy_from_slice(&ba_row[per_key..]);
        }
    }
    (z, b, a)
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// PyTorch's `softplus` (β 1, threshold 20).
fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// `x · rsqrt(Σx² + 1e-6)` (the FLA library's l2norm, as transformers uses it).
fn l2_normalized(x: &[f32]) -> Vec<f32> {
    let inv = 1.0 / (x.iter().map(|v| v * v).sum::<f32>() + 1e-6).sqrt();
    x.iter().map(|v| v * inv).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::Weight;
    use candle_core::Device;

    fn linear(rows: usize, cols: usize, seed: u32) -> Linear {
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 1000.0
                    - 0.5)
                    * 0.6
            })
            .collect();
        let w = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
        Linear::new(Weight::Tensor(w), None).unwrap()
    }

    fn layer() -> GatedDeltaNet {
        let spec = LinearAttentionSpec {
            module: "linear_attn",
            projections: crate::model::spec::DeltaNetProjections::GroupedQkvzBa,
            num_key_heads: 2,
            num_value_heads: 4,
            key_head_dim: 3,
            value_head_dim: 2,
            conv_kernel: 3,
        };
        let hidden = 5;
        let (kd, vd) = (6, 8);
        GatedDeltaNet {
            spec,
            input: DeltaNetInput::Grouped {
                qkvz: linear(2 * kd + 2 * vd, hidden, 1),
                ba: linear(8, hidden, 2),
            },
            out_proj: linear(hidden, vd, 3),
            conv_weight: (0..(2 * kd + vd) * 3)
                .map(|i| 0.1 * (i % 7) as f32 - 0.2)
                .collect(),
            dt_bias: vec![0.5, -0.2, 0.1, 1.0],
            a_log: vec![0.0, -1.0, 0.5, 0.2],
            norm_weight: vec![1.1, 0.9],
            norm_eps: 1e-6,
        }
    }

    /// Tokens fed one at a time (and in uneven chunks) through the state give what one pass
    /// over all of them gives: the state carries everything the rule and the convolution need.
    #[test]
    fn stepping_through_the_state_equals_one_pass() {
        let layer = layer();
        let x: Vec<f32> = (0..7 * 5)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let x = Tensor::from_vec(x, (7, 5), &Device::Cpu).unwrap();
        let mut whole = LinearState::default();
        let all: Vec<Vec<f32>> = layer.forward(&x, &mut whole).unwrap().to_vec2().unwrap();
        let mut stepped = LinearState::default();
        let mut rows = Vec::new();
        for (start, len) in [(0, 1), (1, 3), (4, 1), (5, 2)] {
            let part = layer.forward(&x.narrow(0, start, len).unwrap(), &mut stepped);
            rows.extend(part.unwrap().to_vec2::<f32>().unwrap());
        }
        assert_eq!(stepped.seen, 7);
        for (a, b) in all.iter().flatten().zip(rows.iter().flatten()) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
