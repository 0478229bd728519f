//! The fused CPU expert kernel: all routed experts of a layer in one pass over weights packed for
//! AVX-512, f32 accumulation, threads split over output columns.
//!
//! Why not candle's matmul per expert: on CPU it goes through the `gemm` crate's AVX2 kernels and
//! reached 13–45 GFLOP/s here (2 cores, AVX-512 machine) against PyTorch/oneDNN's 74–190 at the
//! shapes experts see (16–512 rows × 2048 × 2048). Experts are skinny matmuls over weights that
//! are read once per layer, so the layout does most of the work: each weight `[n, k]` (PyTorch
//! `Linear` layout) is stored as column panels of [`NR`] outputs, k-major, so the micro-kernel
//! streams one contiguous panel while broadcasting activations — no packing at run time. bf16
//! weights stay bf16 in memory (half the bytes to stream) and are widened block by block.
//!
//! Used when the CPU has AVX-512F (checked at run time); otherwise the grouped candle path runs.

use super::spec::{Activation, WeightTarget};
use half::bf16;
use rayon::prelude::*;

/// Output columns per panel: two 16-lane registers.
pub const NR: usize = 32;
/// Activation rows per micro-tile: 6 × 2 accumulators + 2 weight registers fit the 32 registers.
const MR: usize = 6;
/// k-block: the panel block (256 × 32 f32 = 32 KB) stays in L1 while every 6-row block of
/// activations streams past it. 512 (64 KB, past the 48 KB L1) was 1.24× slower on OLMoE f32
/// experts; 128 was slower again.
const KC: usize = 256;

/// Whether this CPU runs the kernel (AVX-512F).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[derive(Clone, Debug)]
enum Panels {
    F32(Vec<f32>),
    Bf16(Vec<bf16>),
}

/// A weight `[n, k]` as `ceil(n / NR)` panels; panel `p` holds `W[p·NR + j, kk]` at
/// `(p·k + kk)·NR + j`, zero past `n`.
#[derive(Clone, Debug)]
pub struct PackedMatrix {
    n: usize,
    k: usize,
    panels: Panels,
}

fn pack<T: Copy + Default>(w: &[T], n: usize, k: usize) -> Vec<T> {
    assert_eq!(w.len(), n * k, "weight is not [n, k]");
    let num_panels = n.div_ceil(NR);
    let mut out = vec![T::default(); num_panels * k * NR];
    for (row, w_row) in w.chunks_exact(k).enumerate() {
        let (p, j) = (row / NR, row % NR);
        let base = p * k * NR + j;
        for (kk, &v) in w_row.iter().enumerate() {
            out[base + kk * NR] = v;
        }
    }
    out
}

impl PackedMatrix {
    pub fn from_f32(w: &[f32], n: usize, k: usize) -> Self {
        Self {
            n,
            k,
            panels: Panels::F32(pack(w, n, k)),
        }
    }

    pub fn from_bf16(w: &[bf16], n: usize, k: usize) -> Self {
        Self {
            n,
            k,
            panels: Panels::Bf16(pack(w, n, k)),
        }
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }
}

/// A raw pointer threads may share because each writes a disjoint set of elements.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: `matmul` hands each task its own output columns; no element is written twice.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Through a method, so closures capture the whole (Sync) wrapper, not its raw pointer field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `y[m, n] = x[m, k] · Wᵀ` with `x`, `y` row-major f32 (`y` overwritten). Panics if the CPU lacks
/// AVX-512F (callers check [`supported`]) or on mismatched lengths.
pub fn matmul(x: &[f32], m: usize, w: &PackedMatrix, y: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    assert!(supported(), "the packed expert kernel needs AVX-512F");
    assert_eq!(x.len(), m * k, "x is not [m, k]");
    assert_eq!(y.len(), m * n, "y is not [m, n]");
    if m == 0 || n == 0 {
        return;
    }
    let out = SharedOut(y.as_mut_ptr());
    let num_panels = n.div_ceil(NR);
    (0..num_panels).into_par_iter().for_each_init(
        || vec![0f32; KC * NR],
        |scratch, p| {
            let cols = NR.min(n - p * NR);
            for k0 in (0..k).step_by(KC) {
                let kc = KC.min(k - k0);
                let panel: &[f32] = match &w.panels {
                    Panels::F32(v) => &v[(p * k + k0) * NR..(p * k + k0 + kc) * NR],
                    Panels::Bf16(v) => {
                        let src = &v[(p * k + k0) * NR..(p * k + k0 + kc) * NR];
                        for (d, s) in scratch.iter_mut().zip(src) {
                            *d = s.to_f32();
                        }
                        &scratch[..kc * NR]
                    }
                };
                for r0 in (0..m).step_by(MR) {
                    let rows = MR.min(m - r0);
                    // SAFETY: AVX-512F was checked above; reads stay inside `x` and `panel` (row
                    // pointers past `rows` repeat the last row), writes stay inside rows
                    // r0..r0+rows and columns p·NR..p·NR+cols of `y`, which only this task owns.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        avx512::tile(
                            x.as_ptr().add(r0 * k + k0),
                            k,
                            rows,
                            panel.as_ptr(),
                            kc,
                            out.get().add(r0 * n + p * NR),
                            n,
                            cols,
                            k0 > 0,
                        );
                    }
                }
            }
        },
    );
}

/// What an expert computes around its two matmuls: the activation and where the routing weight
/// applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExpertMath {
    pub activation: Activation,
    pub weights_on: WeightTarget,
}

/// A layer's routed experts packed for [`matmul`]: gate and up stacked as `[2I, H]`, down `[H, I]`,
/// and optional biases `[E·2I]`, `[E·H]` (row-major, gate then up).
#[derive(Clone, Debug)]
pub struct PackedExperts {
    pub gate_up: Vec<PackedMatrix>,
    pub down: Vec<PackedMatrix>,
    pub biases: Option<(Vec<f32>, Vec<f32>)>,
}

impl PackedExperts {
    /// Runs the routed experts on `x` (`[tokens, hidden]` f32, row-major): `order`/`counts` are
    /// the assignments grouped by expert ([`super::moe`]'s counting sort), `weights` the routing
    /// weights by flat assignment `t·k + r`. Returns `[tokens, hidden]`; the k outputs of a token
    /// are summed in slot order, so results do not depend on thread timing. With `expert_ms`, each
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
        let hidden = self.down.first().map_or(0, PackedMatrix::n);
        let inter = self.down.first().map_or(0, PackedMatrix::k);
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
            let rows = &order[offset..offset + count];
            for (dst, &flat) in xe.chunks_exact_mut(hidden).zip(rows) {
                let t = flat as usize / k;
                dst.copy_from_slice(&x[t * hidden..(t + 1) * hidden]);
                if math.weights_on == WeightTarget::Input {
                    let w = weights[flat as usize];
                    dst.iter_mut().for_each(|v| *v *= w);
                }
            }
            let gu = &mut gu[..count * 2 * inter];
            matmul(&xe[..count * hidden], count, &self.gate_up[expert], gu);
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
                let (g, u) = gur.split_at(inter);
                for ((hv, &gv), &uv) in hr.iter_mut().zip(g).zip(u) {
                    *hv = math.activation.apply(gv, uv);
                }
            }
            let out = &mut grouped[offset * hidden..(offset + count) * hidden];
            matmul(h, count, &self.down[expert], out);
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

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// One `rows × cols` tile (rows ≤ 6, cols ≤ 32) of `C (+)= A · B` over `kc` steps: `a` points at
    /// row 0 of A (row stride `lda`), `b` at a k-major panel block of NR columns, `c` at the tile's
    /// top-left (row stride `ldc`). Accumulates into C when `accumulate`, else overwrites.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn tile(
        a: *const f32,
        lda: usize,
        rows: usize,
        b: *const f32,
        kc: usize,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        accumulate: bool,
    ) {
        let row = |r: usize| a.add(r.min(rows - 1) * lda);
        let (a0, a1, a2, a3, a4, a5) = (row(0), row(1), row(2), row(3), row(4), row(5));
        let z = _mm512_setzero_ps();
        let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21) = (z, z, z, z, z, z);
        let (mut c30, mut c31, mut c40, mut c41, mut c50, mut c51) = (z, z, z, z, z, z);
        for kk in 0..kc {
            let b0 = _mm512_loadu_ps(b.add(kk * NR));
            let b1 = _mm512_loadu_ps(b.add(kk * NR + 16));
            let x = _mm512_set1_ps(*a0.add(kk));
            c00 = _mm512_fmadd_ps(x, b0, c00);
            c01 = _mm512_fmadd_ps(x, b1, c01);
            let x = _mm512_set1_ps(*a1.add(kk));
            c10 = _mm512_fmadd_ps(x, b0, c10);
            c11 = _mm512_fmadd_ps(x, b1, c11);
            let x = _mm512_set1_ps(*a2.add(kk));
            c20 = _mm512_fmadd_ps(x, b0, c20);
            c21 = _mm512_fmadd_ps(x, b1, c21);
            let x = _mm512_set1_ps(*a3.add(kk));
            c30 = _mm512_fmadd_ps(x, b0, c30);
            c31 = _mm512_fmadd_ps(x, b1, c31);
            let x = _mm512_set1_ps(*a4.add(kk));
            c40 = _mm512_fmadd_ps(x, b0, c40);
            c41 = _mm512_fmadd_ps(x, b1, c41);
            let x = _mm512_set1_ps(*a5.add(kk));
            c50 = _mm512_fmadd_ps(x, b0, c50);
            c51 = _mm512_fmadd_ps(x, b1, c51);
        }
        let mut tile = [0f32; MR * NR];
        let t = tile.as_mut_ptr();
        for (r, (lo, hi)) in [
            (c00, c01),
            (c10, c11),
            (c20, c21),
            (c30, c31),
            (c40, c41),
            (c50, c51),
        ]
        .into_iter()
        .enumerate()
        {
            _mm512_storeu_ps(t.add(r * NR), lo);
            _mm512_storeu_ps(t.add(r * NR + 16), hi);
        }
        for r in 0..rows {
            let dst = std::slice::from_raw_parts_mut(c.add(r * ldc), cols);
            let src = &tile[r * NR..r * NR + cols];
            if accumulate {
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            } else {
                dst.copy_from_slice(src);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                y[r * n + c] = (0..k).map(|kk| x[r * k + kk] * w[c * k + kk]).sum();
            }
        }
        y
    }

    #[test]
    fn packed_matmul_matches_the_definition_on_ragged_shapes() {
        if !supported() {
            eprintln!("skipped: no AVX-512F on this CPU");
            return;
        }
        // Rows not a multiple of 6, columns not of 32, k across two k-blocks and ragged.
        for &(m, n, k) in &[(1, 32, 8), (7, 45, 3), (13, 64, 600), (6, 96, 1100)] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
                .collect();
            let want = reference(&x, m, &w, n, k);
            let mut got = vec![f32::NAN; m * n];
            matmul(&x, m, &PackedMatrix::from_f32(&w, n, k), &mut got);
            for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - r).abs() <= 1e-4 * (1.0 + r.abs()),
                    "f32 {m}x{n}x{k} [{i}]: {g} vs {r}"
                );
            }
            let wb: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
            let rounded: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
            let want = reference(&x, m, &rounded, n, k);
            matmul(&x, m, &PackedMatrix::from_bf16(&wb, n, k), &mut got);
            for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - r).abs() <= 1e-4 * (1.0 + r.abs()),
                    "bf16 {m}x{n}x{k} [{i}]: {g} vs {r}"
                );
            }
        }
    }
}
