//! The CPU expert path: all routed experts of a layer over their stored matrices (usually the
//! file mapping itself, any stored format) with [`host::matmul`], f32 accumulation. Tokens are
//! grouped by expert once; each expert runs its gate/up projection, the activation and its down
//! projection on a contiguous block of its rows; outputs are put back per token in slot order,
//! so results do not depend on thread timing.

use super::host::{self, Projection};
use super::spec::{Activation, GateUpOrder, WeightTarget};
use rayon::prelude::*;

/// What an expert computes around its matmuls: the activation and where the routing weight
/// applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExpertMath {
    pub activation: Activation,
    pub weights_on: WeightTarget,
}

/// An expert's gate and up projections as stored.
#[derive(Clone, Debug)]
pub enum GateUp {
    /// One `[2I, H]` (or `[H, 2I]`) projection, gate and up as halves or interleaved.
    Fused(Projection, GateUpOrder),
    /// Separate `[I, H]` projections (per-expert checkpoints, DBRX).
    Split { gate: Projection, up: Projection },
}

#[derive(Clone, Debug)]
pub struct HostExpert {
    pub gate_up: GateUp,
    pub down: Projection,
}

/// A layer's routed experts on the host, with optional biases `[E·2I]` (in the stored gate/up
/// order) and `[E·H]`.
#[derive(Clone, Debug)]
pub struct HostExperts {
    pub experts: Vec<HostExpert>,
    pub biases: Option<(Vec<f32>, Vec<f32>)>,
}

impl HostExperts {
    /// Stored bytes of all experts.
    pub fn size_bytes(&self) -> usize {
        self.experts
            .iter()
            .map(|e| {
                e.down.matrix.size_bytes()
                    + match &e.gate_up {
                        GateUp::Fused(p, _) => p.matrix.size_bytes(),
                        GateUp::Split { gate, up } => {
                            gate.matrix.size_bytes() + up.matrix.size_bytes()
                        }
                    }
            })
            .sum()
    }

    /// Runs the routed experts on `x` (`[tokens, hidden]` f32, row-major): `order`/`counts` are
    /// the assignments grouped by expert ([`super::moe`]'s counting sort), `weights` the routing
    /// weights by flat assignment `t·k + r`. Returns `[tokens, hidden]`. With `expert_ms`, each
    /// expert's wall time is recorded (`[experts]`, 0 when unused).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        k: usize,
        order: &[u32],
        counts: &[usize],
        weights: &[f32],
        math: &ExpertMath,
        mut expert_ms: Option<&mut Vec<f64>>,
    ) -> Vec<f32> {
        let Some(first) = self.experts.first() else {
            return vec![0.0; x.len()];
        };
        let hidden = first.down.out_dim();
        let inter = first.down.in_dim();
        let tokens = x.len() / hidden.max(1);
        let assignments = order.len();
        let widest = counts.iter().copied().max().unwrap_or(0);
        let mut xe = vec![0f32; widest * hidden];
        let mut gu = vec![0f32; widest * 2 * inter];
        let mut h = vec![0f32; widest * inter];
        // Expert outputs in grouped order, then put back per token.
        let mut grouped = vec![0f32; assignments * hidden];
        if let Some(times) = expert_ms.as_deref_mut() {
            times.clear();
            times.resize(counts.len(), 0.0);
        }
        let mut offset = 0;
        for (expert, &count) in counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let started = std::time::Instant::now();
            let e = &self.experts[expert];
            let rows = &order[offset..offset + count];
            for (dst, &flat) in xe.chunks_exact_mut(hidden).zip(rows) {
                let t = flat as usize / k;
                dst.copy_from_slice(&x[t * hidden..(t + 1) * hidden]);
                if math.weights_on == WeightTarget::Input {
                    let w = weights[flat as usize];
                    dst.iter_mut().for_each(|v| *v *= w);
                }
            }
            let xe = &xe[..count * hidden];
            let gu = &mut gu[..count * 2 * inter];
            let order = match &e.gate_up {
                GateUp::Fused(p, order) => {
                    host::matmul(xe, count, p, gu, 2 * inter);
                    *order
                }
                GateUp::Split { gate, up } => {
                    host::matmul(xe, count, gate, gu, 2 * inter);
                    host::matmul(xe, count, up, &mut gu[inter..], 2 * inter);
                    GateUpOrder::Halves
                }
            };
            let bias = self.biases.as_ref().map(|(g, d)| {
                (
                    &g[expert * 2 * inter..(expert + 1) * 2 * inter],
                    &d[expert * hidden..(expert + 1) * hidden],
                )
            });
            let h = &mut h[..count * inter];
            for (hr, gur) in h
                .chunks_exact_mut(inter)
                .zip(gu.chunks_exact_mut(2 * inter))
            {
                if let Some((b, _)) = bias {
                    gur.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                }
                match order {
                    GateUpOrder::Halves => {
                        let (g, u) = gur.split_at(inter);
                        for ((hv, &gv), &uv) in hr.iter_mut().zip(g).zip(u) {
                            *hv = math.activation.apply(gv, uv);
                        }
                    }
                    GateUpOrder::Interleaved => {
                        for (hv, pair) in hr.iter_mut().zip(gur.chunks_exact(2)) {
                            *hv = math.activation.apply(pair[0], pair[1]);
                        }
                    }
                }
            }
            let out = &mut grouped[offset * hidden..(offset + count) * hidden];
            host::matmul(h, count, &e.down, out, hidden);
            for (row, &flat) in out.chunks_exact_mut(hidden).zip(rows) {
                if let Some((_, b)) = bias {
                    row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                }
                if math.weights_on == WeightTarget::Output {
                    let w = weights[flat as usize];
                    row.iter_mut().for_each(|v| *v *= w);
                }
            }
            if let Some(times) = expert_ms.as_deref_mut() {
                times[expert] = started.elapsed().as_secs_f64() * 1e3;
            }
            offset += count;
        }
        let mut position = vec![0usize; assignments];
        for (j, &flat) in order.iter().enumerate() {
            position[flat as usize] = j;
        }
        let mut y = vec![0f32; tokens * hidden];
        y.par_chunks_mut(hidden).enumerate().for_each(|(t, yt)| {
            for r in 0..k {
                let j = position[t * k + r];
                let src = &grouped[j * hidden..(j + 1) * hidden];
                yt.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            }
        });
        y
    }
}
