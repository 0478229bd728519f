//! The CPU expert path: all routed experts of a layer over their stored matrices (usually the
//! file mapping itself, any stored format) with [`host::matmul`], f32 accumulation. Tokens are
//! grouped by expert once; each expert runs its gate/up projection, the activation and its down
//! projection on a contiguous block of its rows; outputs are put back per token in slot order,
//! so results do not depend on thread timing.

use super::host::{self, Projection};
use super::spec::{Activation, GateUpOrder, WeightTarget};
use rayon::prelude::*;

/// A layer's input to the experts: f32, or bf16 (bits) when the model computes in bf16 — then
/// the experts multiply bf16 values as a bf16 matmul does (`vdpbf16ps` where the CPU has it) and
/// round their intermediate activations to bf16, as transformers' bf16 experts do.
#[derive(Clone, Copy)]
pub enum Activations<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u16]),
}

impl Activations<'_> {
    fn len(&self) -> usize {
        match self {
            Activations::F32(x) => x.len(),
            Activations::Bf16(x) => x.len(),
        }
    }
}

fn round_bf16(v: f32) -> u16 {
    half::bf16::from_f32(v).to_bits()
}

fn widen_bf16(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// `y = x · Wᵀ` on f32 or bf16 rows.
fn matmul_rows(x: &Rows, m: usize, w: &Projection, y: &mut [f32], ldy: usize) {
    match x {
        Rows::F32(x) => host::matmul(x, m, w, y, ldy),
        Rows::Bf16(x) => host::matmul_bf16(x, m, w, y, ldy),
    }
}

/// One expert's gathered rows.
enum Rows {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
}

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
    ///
    /// Experts with few rows run side by side, one per thread (split across threads, their
    /// matmuls were mostly synchronization: 18–60 GFLOP/s below 32 rows); the others run one after
    /// another, each matmul split across threads.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: Activations,
        k: usize,
        order: &[u32],
        counts: &[usize],
        weights: &[f32],
        math: &ExpertMath,
        expert_ms: Option<&mut Vec<f64>>,
    ) -> Vec<f32> {
        let Some(first) = self.experts.first() else {
            return vec![0.0; x.len()];
        };
        let hidden = first.down.out_dim();
        let tokens = x.len() / hidden.max(1);
        let assignments = order.len();
        // Expert outputs in grouped order, then put back per token.
        let mut grouped = vec![0f32; assignments * hidden];
        let mut jobs: Vec<Job> = Vec::new();
        let mut rest = grouped.as_mut_slice();
        let mut offset = 0;
        for (expert, &count) in counts.iter().enumerate() {
            let (out, tail) = rest.split_at_mut(count * hidden);
            rest = tail;
            if count > 0 {
                jobs.push(Job {
                    expert,
                    rows: &order[offset..offset + count],
                    out,
                    elapsed_ms: 0.0,
                });
            }
            offset += count;
        }
        let (mut small, mut large): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|j| j.rows.len() < PARALLEL_EXPERT_ROWS);
        let run = |job: &mut Job| {
            let started = std::time::Instant::now();
            self.run_expert(job.expert, x, k, job.rows, weights, math, job.out);
            job.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        };
        small.par_iter_mut().for_each(run);
        large.iter_mut().for_each(run);
        if let Some(times) = expert_ms {
            times.clear();
            times.resize(counts.len(), 0.0);
            for job in small.iter().chain(&large) {
                times[job.expert] = job.elapsed_ms;
            }
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

    /// One expert on its assigned rows: gather (× weight when it applies to the input),
    /// gate/up, bias, activation, down, bias, × weight; results into `out` (`[rows, hidden]`).
    #[allow(clippy::too_many_arguments)]
    fn run_expert(
        &self,
        expert: usize,
        x: Activations,
        k: usize,
        rows: &[u32],
        weights: &[f32],
        math: &ExpertMath,
        out: &mut [f32],
    ) {
        let e = &self.experts[expert];
        let hidden = e.down.out_dim();
        let inter = e.down.in_dim();
        let count = rows.len();
        let scale = |flat: u32| match math.weights_on {
            WeightTarget::Input => Some(weights[flat as usize]),
            WeightTarget::Output => None,
        };
        let xe = match x {
            Activations::F32(x) => {
                let mut xe = vec![0f32; count * hidden];
                for (dst, &flat) in xe.chunks_exact_mut(hidden).zip(rows) {
                    let t = flat as usize / k;
                    dst.copy_from_slice(&x[t * hidden..(t + 1) * hidden]);
                    if let Some(w) = scale(flat) {
                        dst.iter_mut().for_each(|v| *v *= w);
                    }
                }
                Rows::F32(xe)
            }
            Activations::Bf16(x) => {
                let mut xe = vec![0u16; count * hidden];
                for (dst, &flat) in xe.chunks_exact_mut(hidden).zip(rows) {
                    let t = flat as usize / k;
                    dst.copy_from_slice(&x[t * hidden..(t + 1) * hidden]);
                    if let Some(w) = scale(flat) {
                        dst.iter_mut()
                            .for_each(|v| *v = round_bf16(widen_bf16(*v) * w));
                    }
                }
                Rows::Bf16(xe)
            }
        };
        let bf16 = matches!(xe, Rows::Bf16(_));
        let mut gu = vec![0f32; count * 2 * inter];
        let order = match &e.gate_up {
            GateUp::Fused(p, order) => {
                matmul_rows(&xe, count, p, &mut gu, 2 * inter);
                *order
            }
            GateUp::Split { gate, up } => {
                matmul_rows(&xe, count, gate, &mut gu, 2 * inter);
                matmul_rows(&xe, count, up, &mut gu[inter..], 2 * inter);
                GateUpOrder::Halves
            }
        };
        let bias = self.biases.as_ref().map(|(g, d)| {
            (
                &g[expert * 2 * inter..(expert + 1) * 2 * inter],
                &d[expert * hidden..(expert + 1) * hidden],
            )
        });
        let mut h = vec![0f32; count * inter];
        let activate = |(hr, gur): (&mut [f32], &mut [f32])| {
            if let Some((b, _)) = bias {
                gur.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
            if bf16 {
                // The gate/up projection's output is a bf16 tensor in a bf16 model.
                gur.iter_mut().for_each(|v| *v = widen_bf16(round_bf16(*v)));
            }
            activation_row(math.activation, order, gur, hr);
        };
        if count >= PARALLEL_EXPERT_ROWS {
            h.par_chunks_mut(inter)
                .zip(gu.par_chunks_mut(2 * inter))
                .for_each(activate);
        } else {
            h.chunks_mut(inter)
                .zip(gu.chunks_mut(2 * inter))
                .for_each(activate);
        }
        if bf16 {
            let hb: Vec<u16> = h.iter().map(|&v| round_bf16(v)).collect();
            host::matmul_bf16(&hb, count, &e.down, out, hidden);
        } else {
            host::matmul(&h, count, &e.down, out, hidden);
        }
        for (row, &flat) in out.chunks_exact_mut(hidden).zip(rows) {
            if let Some((_, b)) = bias {
                row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
            if math.weights_on == WeightTarget::Output {
                let w = weights[flat as usize];
                row.iter_mut().for_each(|v| *v *= w);
            }
        }
    }
}

/// Experts with fewer rows than this run side by side, one per thread.
const PARALLEL_EXPERT_ROWS: usize = 32;

/// One expert's share of a layer: its assignments and its block of the grouped output.
struct Job<'a> {
    expert: usize,
    rows: &'a [u32],
    out: &'a mut [f32],
    elapsed_ms: f64,
}

/// `h = act(gate, up)` over one row, the activation chosen outside the element loop so the loop
/// vectorizes.
fn activation_row(activation: Activation, order: GateUpOrder, gu: &[f32], h: &mut [f32]) {
    let inter = h.len();
    match (activation, order) {
        (Activation::SwiGlu, GateUpOrder::Halves) => {
            let (g, u) = gu.split_at(inter);
            for ((hv, &gv), &uv) in h.iter_mut().zip(g).zip(u) {
                *hv = host::math::silu(gv) * uv;
            }
        }
        (a, GateUpOrder::Halves) => {
            let (g, u) = gu.split_at(inter);
            for ((hv, &gv), &uv) in h.iter_mut().zip(g).zip(u) {
                *hv = a.apply(gv, uv);
            }
        }
        (a, GateUpOrder::Interleaved) => {
            for (hv, pair) in h.iter_mut().zip(gu.chunks_exact(2)) {
                *hv = a.apply(pair[0], pair[1]);
            }
        }
    }
}
