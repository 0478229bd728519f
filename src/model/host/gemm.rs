//! `y = x · Wᵀ` on the CPU over a [`HostMatrix`] in its stored format, f32 accumulation.
//!
//! Why our own: candle's CPU matmul (the `gemm` crate's AVX2 path) reached 13–45 GFLOP/s at the
//! shapes MoE layers see on this project's 2-core AVX-512 machine against 74–190 for
//! PyTorch/oneDNN, and it needs weights in the compute dtype, i.e. a widened copy of every bf16
//! or quantized checkpoint. Here the weights stay where they are (usually the file mapping) and
//! are decoded block by block:
//!
//! - many rows (prefill): output columns in panels of [`NR`]; per panel and 256-deep k-block the
//!   weights are decoded to an f32 k-major block (32 KB, stays in L1) that a 6×32 micro-kernel
//!   streams while broadcasting activations; threads split the panels. The block is decoded once
//!   per k-block and reused by every 6-row tile, so decoding costs O(n·k) against O(m·n·k) FLOPs.
//! - few rows (decode, the LM head): a dot product per weight row (or an axpy per weight row for
//!   `[in, out]` matrices), decoding each row once; threads split the rows or columns.
//!
//! The micro-kernel is chosen at run time: AVX-512F, AVX2+FMA, or portable Rust. Never
//! `target-cpu=native`: one binary runs everywhere.

use super::matrix::HostMatrix;
use rayon::prelude::*;

/// Output columns per panel: two 16-lane registers.
pub const NR: usize = 32;
/// Activation rows per micro-tile: 6 × 2 accumulators + 2 weight registers fit the 32 registers.
const MR: usize = 6;
/// k-block: the decoded panel block (256 × 32 f32 = 32 KB) stays in L1 while every 6-row block
/// of activations streams past it. 512 (64 KB, past the 48 KB L1) was 1.24× slower on OLMoE f32
/// experts; 128 was slower again.
const KC: usize = 256;
/// Up to this many rows go through the dot-product path (no panel decoding to amortize).
const GEMV_ROWS: usize = 2;
/// Below this many rows, bf16/f32 `[out, in]` weights are read in place by dot products; from it
/// on, packed activations and decoded panels are faster (at 512 rows 201–224 against 167 GFLOP/s).
const DOT_ROWS: usize = 128;
/// Below this many rows on AVX2, weight rows are decoded contiguously and multiplied as dot
/// products: transposing them into k-major panels cost as much as the FMAs at experts' row counts.
const AVX2_DOT_ROWS: usize = 64;
/// Below this many rows on AVX-512, block-quantized weight rows (and f16) are decoded
/// contiguously and multiplied as dot products, as on AVX2: on OLMoE-dims Q8_0 experts 93–144
/// GFLOP/s against 60 through decoded panels (thresholds 32–1024 measured; above 64 rows the
/// two were within noise, so the panels are kept only for long prompts' projections).
const AVX512_DECODED_ROWS: usize = 1024;

/// How a stored matrix maps onto `y = x · Wᵀ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Stored `[out, in]` (PyTorch `Linear`).
    OutIn,
    /// Stored `[in, out]` (used as `x @ W`: GPT-OSS and Llama-4 experts, DBRX's `w2`).
    InOut,
}

/// A matrix and how it is applied.
#[derive(Clone, Debug)]
pub struct Projection {
    pub matrix: HostMatrix,
    pub layout: Layout,
}

impl Projection {
    pub fn out_dim(&self) -> usize {
        match self.layout {
            Layout::OutIn => self.matrix.rows,
            Layout::InOut => self.matrix.cols,
        }
    }

    pub fn in_dim(&self) -> usize {
        match self.layout {
            Layout::OutIn => self.matrix.cols,
            Layout::InOut => self.matrix.rows,
        }
    }
}

/// The micro-kernel this CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

/// Detected once.
pub fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    })
}

/// A raw pointer threads may share because each writes a disjoint set of elements.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task of `matmul` writes its own output columns (or rows); no element is written
// twice.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Through a method, so closures capture the whole (Sync) wrapper, not its raw pointer field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `y[i·ldy + j] = Σ_k x[i·k + kk] · W(j, kk)` for `i < m`, `j < n` (`y` overwritten there;
/// other elements untouched). Panics on mismatched lengths.
pub fn matmul(x: &[f32], m: usize, w: &Projection, y: &mut [f32], ldy: usize) {
    let (n, k) = (w.out_dim(), w.in_dim());
    assert_eq!(x.len(), m * k, "x is not [m, k]");
    assert!(ldy >= n, "output row stride below the output width");
    if m == 0 || n == 0 {
        return;
    }
    assert!(y.len() >= (m - 1) * ldy + n, "y too short");
    if k == 0 {
        for i in 0..m {
            y[i * ldy..i * ldy + n].fill(0.0);
        }
        return;
    }
    let isa = isa();
    // `[out, in]` bf16 and f32 with few rows read in place (138–164 GFLOP/s for bf16 at 8–64
    // rows, where decoding panels is not amortized).
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && w.layout == Layout::OutIn {
        match direct::Stored::of(&w.matrix) {
            Some(d) if m < DOT_ROWS => return direct::dot_rows(x, m, k, d, n, y, ldy),
            None if m > GEMV_ROWS && m < AVX512_DECODED_ROWS => {
                return direct::dot_rows_decoded(x, m, k, &w.matrix, n, y, ldy)
            }
            _ => {}
        }
    }
    if m <= GEMV_ROWS {
        return gemv(x, m, w, y, ldy);
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && w.layout == Layout::OutIn && m < AVX2_DOT_ROWS {
        return avx2::dot_rows_decoded(x, m, k, &w.matrix, n, y, ldy);
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        return packed14::matmul(x, m, k, w, n, y, ldy);
    }
    let out = SharedOut(y.as_mut_ptr());
    let num_panels = n.div_ceil(NR);
    (0..num_panels).into_par_iter().for_each_init(
        || (vec![0f32; KC * NR], vec![0f32; KC]),
        |(panel, row), p| {
            let cols = NR.min(n - p * NR);
            for k0 in (0..k).step_by(KC) {
                let kc = KC.min(k - k0);
                decode_panel(w, p * NR, cols, k0, kc, panel, row);
                for r0 in (0..m).step_by(MR) {
                    let rows = MR.min(m - r0);
                    // SAFETY: reads stay inside `x` and `panel` (row pointers past `rows` repeat
                    // the last row), writes stay inside rows r0..r0+rows and columns
                    // p·NR..p·NR+cols of `y`, which only this task owns; the ISA was detected.
                    unsafe {
                        tile(
                            isa,
                            x.as_ptr().add(r0 * k + k0),
                            k,
                            rows,
                            panel.as_ptr(),
                            kc,
                            out.get().add(r0 * ldy + p * NR),
                            ldy,
                            cols,
                            k0 > 0,
                        );
                    }
                }
            }
        },
    );
}

/// Whether this CPU multiplies bf16 pairs natively (AVX512-BF16's `vdpbf16ps`: two products per
/// lane per instruction; measured here at half the rate of f32 FMAs, so the same FLOP rate).
pub fn has_bf16_dot() -> bool {
    static BF16: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *BF16.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            isa() == Isa::Avx512 && std::arch::is_x86_feature_detected!("avx512bf16")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// `y = x · Wᵀ` for bf16 activations (the bits of `x`, row-major `[m, k]`), f32 results, what a
/// bf16 matmul computes: exact products of bf16 values accumulated in f32. bf16 `[out, in]`
/// weights go through `vdpbf16ps` where the CPU has it; everything else through [`matmul`] on the
/// widened activations.
pub fn matmul_bf16(x: &[u16], m: usize, w: &Projection, y: &mut [f32], ldy: usize) {
    let (n, k) = (w.out_dim(), w.in_dim());
    assert_eq!(x.len(), m * k, "x is not [m, k]");
    #[cfg(target_arch = "x86_64")]
    // vdpbf16ps runs at half the f32 FMA rate on this project's Zen CPUs, so only where panels
    // are not amortized does the pair product beat widening (113 against 107 GFLOP/s at 8 rows;
    // 161 against 208 at 512).
    if has_bf16_dot() && w.layout == Layout::OutIn && m > 0 && m < DOT_ROWS && n > 0 {
        if let Some(direct::Stored::Bf16(p)) = direct::Stored::of(&w.matrix) {
            assert!(ldy >= n && y.len() >= (m - 1) * ldy + n, "y too short");
            return direct::dot_rows_bf16(x, m, k, p, n, y, ldy);
        }
    }
    let widened: Vec<f32> = x
        .iter()
        .map(|&b| f32::from_bits(u32::from(b) << 16))
        .collect();
    matmul(&widened, m, w, y, ldy)
}

/// `y[i·ldy + j] = x[i, :] · w[j, :]` for f32 slices `x` `[m, k]` and `w` `[n, k]` (the attention
/// core's Q·Kᵀ and P·Vᵀ): the in-place dot-product kernel on AVX-512, plain loops elsewhere.
pub fn matmul_f32_rows(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    y: &mut [f32],
    ldy: usize,
) {
    assert_eq!(x.len(), m * k, "x is not [m, k]");
    assert_eq!(w.len(), n * k, "w is not [n, k]");
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldy >= n && y.len() >= (m - 1) * ldy + n, "y too short");
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx512 && k > 0 {
        return direct::dot_rows(x, m, k, direct::Stored::F32(w.as_ptr()), n, y, ldy);
    }
    for i in 0..m {
        for j in 0..n {
            y[i * ldy + j] = dot(&x[i * k..(i + 1) * k], &w[j * k..(j + 1) * k]);
        }
    }
}

/// Decodes W's output columns `j0 .. j0 + cols`, inputs `k0 .. k0 + kc`, into `panel` as a k-major
/// `kc × NR` block (columns past `cols` left as they are: their outputs are never stored).
fn decode_panel(
    w: &Projection,
    j0: usize,
    cols: usize,
    k0: usize,
    kc: usize,
    panel: &mut [f32],
    row: &mut [f32],
) {
    match w.layout {
        Layout::OutIn => {
            for j in 0..cols {
                w.matrix.decode_row(j0 + j, k0, &mut row[..kc]);
                for (kk, &v) in row[..kc].iter().enumerate() {
                    panel[kk * NR + j] = v;
                }
            }
        }
        Layout::InOut => {
            for kk in 0..kc {
                w.matrix
                    .decode_row(k0 + kk, j0, &mut panel[kk * NR..kk * NR + cols]);
            }
        }
    }
}

/// Few rows: each weight row decoded once and used by every activation row.
fn gemv(x: &[f32], m: usize, w: &Projection, y: &mut [f32], ldy: usize) {
    let (n, k) = (w.out_dim(), w.in_dim());
    let out = SharedOut(y.as_mut_ptr());
    match w.layout {
        Layout::OutIn => {
            const ROWS_PER_TASK: usize = 16;
            (0..n.div_ceil(ROWS_PER_TASK))
                .into_par_iter()
                .for_each_init(
                    || vec![0f32; k],
                    |row, t| {
                        for j in t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(n) {
                            w.matrix.decode_row(j, 0, row);
                            for i in 0..m {
                                let v = dot(&x[i * k..(i + 1) * k], row);
                                // SAFETY: element (i, j) belongs to this task's rows of W.
                                unsafe { *out.get().add(i * ldy + j) = v };
                            }
                        }
                    },
                );
        }
        Layout::InOut => {
            const COLS_PER_TASK: usize = 256;
            (0..n.div_ceil(COLS_PER_TASK))
                .into_par_iter()
                .for_each_init(
                    || {
                        (
                            vec![0f32; COLS_PER_TASK],
                            vec![0f32; GEMV_ROWS * COLS_PER_TASK],
                        )
                    },
                    |(row, acc), t| {
                        let c0 = t * COLS_PER_TASK;
                        let cols = COLS_PER_TASK.min(n - c0);
                        acc.fill(0.0);
                        for kk in 0..k {
                            w.matrix.decode_row(kk, c0, &mut row[..cols]);
                            for i in 0..m {
                                let a = x[i * k + kk];
                                let dst = &mut acc[i * COLS_PER_TASK..i * COLS_PER_TASK + cols];
                                dst.iter_mut()
                                    .zip(&row[..cols])
                                    .for_each(|(d, &w)| *d += a * w);
                            }
                        }
                        for i in 0..m {
                            // SAFETY: columns c0..c0+cols of every row belong to this task.
                            let dst = unsafe {
                                std::slice::from_raw_parts_mut(out.get().add(i * ldy + c0), cols)
                            };
                            dst.copy_from_slice(&acc[i * COLS_PER_TASK..i * COLS_PER_TASK + cols]);
                        }
                    },
                );
        }
    }
}

/// Σ a·b with 16 partial sums (vectorizes; the sum order is fixed).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// One `rows × cols` tile (rows ≤ 6, cols ≤ 32) of `C (+)= A · B` over `kc` steps with the
/// detected ISA: `a` points at row 0 of A (row stride `lda`), `b` at a k-major panel block of NR
/// columns, `c` at the tile's top-left (row stride `ldc`). Accumulates into C when `accumulate`.
///
/// # Safety
/// The pointers must cover the ranges described, and `isa` must be what [`isa`] detected.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    isa: Isa,
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
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::tile(a, lda, rows, b, kc, c, ldc, cols, accumulate),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::tile(a, lda, rows, b, kc, c, ldc, cols, accumulate),
        _ => portable::tile(a, lda, rows, b, kc, c, ldc, cols, accumulate),
    }
}

mod portable {
    use super::{MR, NR};

    /// The micro-tile in plain Rust: six rows of NR accumulators.
    #[inline(always)]
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
        let mut acc = [[0f32; NR]; MR];
        for kk in 0..kc {
            let bk = std::slice::from_raw_parts(b.add(kk * NR), NR);
            for (r, acc_r) in acc.iter_mut().enumerate().take(rows) {
                let x = *a.add(r * lda + kk);
                for (acc_v, &w) in acc_r.iter_mut().zip(bk) {
                    *acc_v += x * w;
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate().take(rows) {
            let dst = std::slice::from_raw_parts_mut(c.add(r * ldc), cols);
            if accumulate {
                dst.iter_mut().zip(acc_r).for_each(|(d, s)| *d += s);
            } else {
                dst.copy_from_slice(&acc_r[..cols]);
            }
        }
    }
}

/// Weight rows decoded at a time by [`decoded_rows`] (16 rows of 2048 f32: 128 KB, in L2 while
/// every activation row passes over them) and per task.
const DECODED_ROWS: usize = 16;

/// `y[i, j] = x[i, :] · W[j, :]` for W `[n, k]` in any stored format: each weight row decoded once,
/// contiguously, then multiplied by `tile` over blocks of ≤ 4 activation rows × ≤ `tile_cols`
/// decoded rows (`tile(a, rows, w, cols, c)`: activations and weights with stride `k`, outputs
/// with stride `ldy`). The AVX2 and AVX-512 few-row paths differ only in their tile.
///
/// # Safety
/// `tile` must only read `rows` rows at `a` and `cols` rows at `w` (each `k` long) and write
/// `rows × cols` outputs at `c`; the ISA it uses must have been detected.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn decoded_rows(
    x: &[f32],
    m: usize,
    k: usize,
    w: &HostMatrix,
    n: usize,
    y: &mut [f32],
    ldy: usize,
    tile_cols: usize,
    tile: unsafe fn(*const f32, usize, *const f32, usize, usize, *mut f32, usize),
) {
    let out = SharedOut(y.as_mut_ptr());
    (0..n.div_ceil(DECODED_ROWS)).into_par_iter().for_each_init(
        || vec![0f32; DECODED_ROWS * k],
        |decoded, t| {
            let c0 = t * DECODED_ROWS;
            let c_end = (c0 + DECODED_ROWS).min(n);
            for (j, row) in (c0..c_end).zip(decoded.chunks_exact_mut(k)) {
                w.decode_row(j, 0, row);
            }
            for i0 in (0..m).step_by(4) {
                let rows = 4.min(m - i0);
                for j0 in (c0..c_end).step_by(tile_cols) {
                    let cols = tile_cols.min(c_end - j0);
                    // SAFETY: reads stay in rows i0..i0+rows of x and the decoded rows
                    // j0..j0+cols; writes go to outputs this task owns (its W rows); the caller
                    // vouches for the tile.
                    unsafe {
                        tile(
                            x.as_ptr().add(i0 * k),
                            rows,
                            decoded.as_ptr().add((j0 - c0) * k),
                            cols,
                            k,
                            out.get().add(i0 * ldy + j0),
                            ldy,
                        )
                    }
                }
            }
        },
    );
}

/// The micro-tile for AVX2 + FMA (16 ymm registers): the 32 panel columns as two halves of 16,
/// each 6 rows × 2 registers of accumulators (12) + 2 weight registers + 1 broadcast. The plain
/// loops compiled for AVX2 kept 24 accumulators and spilled: 40 GFLOP/s on 2 cores.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{MR, NR};
    use crate::model::host::matrix::HostMatrix;
    use std::arch::x86_64::*;

    /// `y[i, j] = x[i, :] · W[j, :]` for W `[n, k]` in any stored format: each weight row is
    /// decoded once, contiguously, and reused by every activation row in 4 × 2 tiles of 8-lane
    /// accumulators.
    pub fn dot_rows_decoded(
        x: &[f32],
        m: usize,
        k: usize,
        w: &HostMatrix,
        n: usize,
        y: &mut [f32],
        ldy: usize,
    ) {
        // SAFETY: `dot_tile` reads and writes only the tile it is given; callers detected AVX2
        // and FMA.
        unsafe { super::decoded_rows(x, m, k, w, n, y, ldy, 2, dot_tile) }
    }

    /// `rows` (≤ 4) activation rows against `cols` (≤ 2) weight rows, both with stride `k`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_tile(
        a: *const f32,
        rows: usize,
        w: *const f32,
        cols: usize,
        k: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        let ap: [*const f32; 4] = std::array::from_fn(|r| a.add(r.min(rows - 1) * k));
        let wp: [*const f32; 2] = std::array::from_fn(|j| w.add(j.min(cols - 1) * k));
        let mut acc = [[_mm256_setzero_ps(); 2]; 4];
        let body = k - k % 8;
        let mut kk = 0;
        while kk < body {
            let w0 = _mm256_loadu_ps(wp[0].add(kk));
            let w1 = _mm256_loadu_ps(wp[1].add(kk));
            for r in 0..4 {
                let x = _mm256_loadu_ps(ap[r].add(kk));
                acc[r][0] = _mm256_fmadd_ps(x, w0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(x, w1, acc[r][1]);
            }
            kk += 8;
        }
        for (r, acc_r) in acc.iter().enumerate().take(rows) {
            for (j, &v) in acc_r.iter().enumerate().take(cols) {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), v);
                let mut sum = lanes.iter().sum::<f32>();
                for t in body..k {
                    sum += *ap[r].add(t) * *wp[j].add(t);
                }
                *c.add(r * ldc + j) = sum;
            }
        }
    }

    /// As [`super::portable::tile`]; rows past `rows` repeat the last row and are not stored.
    #[target_feature(enable = "avx2,fma")]
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
        let ap: [*const f32; MR] = std::array::from_fn(|r| a.add(r.min(rows - 1) * lda));
        for c0 in (0..cols).step_by(16) {
            let bh = b.add(c0);
            let mut acc = [[_mm256_setzero_ps(); 2]; MR];
            for kk in 0..kc {
                let w0 = _mm256_loadu_ps(bh.add(kk * NR));
                let w1 = _mm256_loadu_ps(bh.add(kk * NR + 8));
                for r in 0..MR {
                    let x = _mm256_broadcast_ss(&*ap[r].add(kk));
                    acc[r][0] = _mm256_fmadd_ps(x, w0, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(x, w1, acc[r][1]);
                }
            }
            let n = (cols - c0).min(16);
            for (r, acc_r) in acc.iter().enumerate().take(rows) {
                let mut sums = [0f32; 16];
                _mm256_storeu_ps(sums.as_mut_ptr(), acc_r[0]);
                _mm256_storeu_ps(sums.as_mut_ptr().add(8), acc_r[1]);
                let dst = std::slice::from_raw_parts_mut(c.add(r * ldc + c0), n);
                if accumulate {
                    dst.iter_mut().zip(&sums).for_each(|(d, s)| *d += s);
                } else {
                    dst.copy_from_slice(&sums[..n]);
                }
            }
        }
    }
}

/// `[out, in]` f32 and bf16 matrices read in place by an AVX-512 kernel, nothing decoded into
/// buffers: dot products over the contiguous weight rows, 4 activation rows × 4 weight rows of
/// 16-lane accumulators reduced once per tile, bf16 widened in registers (a shift). Decoding a
/// k-major panel per 256-deep block cost as much as the FMAs for experts with few rows. (`[in,
/// out]` matrices read in place, with their rows' stride, ran at 40–75 GFLOP/s against 121–153
/// through decoded panels: every k step touched another page.)
#[cfg(target_arch = "x86_64")]
mod direct {
    use super::SharedOut;
    use crate::model::host::matrix::{Format, HostMatrix};
    use rayon::prelude::*;
    use std::arch::x86_64::*;

    /// A matrix the direct kernels read: element pointer and type.
    #[derive(Clone, Copy)]
    pub enum Stored {
        F32(*const f32),
        Bf16(*const u16),
    }

    // SAFETY: the pointers point into a HostMatrix's bytes, which outlive the matmul call and
    // are only read.
    unsafe impl Send for Stored {}
    unsafe impl Sync for Stored {}

    impl Stored {
        /// The matrix, when it is f32 or bf16 and its elements are aligned for their type.
        pub fn of(m: &HostMatrix) -> Option<Stored> {
            let ptr = m.bytes.as_slice().as_ptr();
            match m.format {
                Format::F32 if (ptr as usize).is_multiple_of(4) => Some(Stored::F32(ptr.cast())),
                Format::Bf16 if (ptr as usize).is_multiple_of(2) => Some(Stored::Bf16(ptr.cast())),
                _ => None,
            }
        }
    }

    /// Weight rows per task of [`dot_rows`]: 64 bf16 rows of 2048 are 256 KB, within L2, reused
    /// by every 4-row block of activations.
    const ROWS_PER_TASK: usize = 64;

    /// `y[i, j] = x[i, :] · W[j, :]` for W `[n, k]` row-major.
    pub fn dot_rows(x: &[f32], m: usize, k: usize, w: Stored, n: usize, y: &mut [f32], ldy: usize) {
        let lda = k;
        let out = SharedOut(y.as_mut_ptr());
        let threads = rayon::current_num_threads().max(1);
        // Enough tasks to keep every thread busy, no smaller than a 4-row tile.
        let per_task = ROWS_PER_TASK
            .min(n.div_ceil(threads).next_multiple_of(4))
            .max(4);
        (0..n.div_ceil(per_task)).into_par_iter().for_each(|t| {
            let j_end = ((t + 1) * per_task).min(n);
            for i0 in (0..m).step_by(4) {
                let rows = 4.min(m - i0);
                for j0 in (t * per_task..j_end).step_by(4) {
                    let cols = 4.min(j_end - j0);
                    // SAFETY: AVX-512F was detected; reads stay in rows i0..i0+rows of x and
                    // j0..j0+cols of W; writes go to outputs this task owns (its W rows).
                    unsafe {
                        let c = out.get().add(i0 * ldy + j0);
                        let a = x.as_ptr().add(i0 * lda);
                        match w {
                            Stored::F32(p) => {
                                dot_tile(a, lda, rows, p.add(j0 * k), cols, k, c, ldy, |q| {
                                    _mm512_loadu_ps(q)
                                })
                            }
                            Stored::Bf16(p) => {
                                dot_tile(a, lda, rows, p.add(j0 * k), cols, k, c, ldy, |q| {
                                    widen_bf16(q)
                                })
                            }
                        }
                    }
                }
            }
        });
    }

    /// [`dot_rows`] for W in any stored format (ggml blocks): each weight row decoded once,
    /// contiguously, then read by the same 4 × 4 tiles. Through k-major panels (the blocked
    /// path) the transposed stores of decoding cost as much as the FMAs at experts' row counts.
    pub fn dot_rows_decoded(
        x: &[f32],
        m: usize,
        k: usize,
        w: &HostMatrix,
        n: usize,
        y: &mut [f32],
        ldy: usize,
    ) {
        // SAFETY: `f32_tile` reads and writes only the tile it is given; callers detected
        // AVX-512F.
        unsafe { super::decoded_rows(x, m, k, w, n, y, ldy, 4, f32_tile) }
    }

    /// [`dot_tile`] over f32 rows that share the stride `k`.
    #[target_feature(enable = "avx512f")]
    unsafe fn f32_tile(
        a: *const f32,
        rows: usize,
        w: *const f32,
        cols: usize,
        k: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        dot_tile(a, k, rows, w, cols, k, c, ldc, |q| _mm512_loadu_ps(q))
    }

    /// `y[i, j] = x[i, :] · W[j, :]` for bf16 x and W (`[n, k]` row-major): 32 pairs per
    /// `vdpbf16ps`, the tasks as in [`dot_rows`].
    pub fn dot_rows_bf16(
        x: &[u16],
        m: usize,
        k: usize,
        w: *const u16,
        n: usize,
        y: &mut [f32],
        ldy: usize,
    ) {
        let out = SharedOut(y.as_mut_ptr());
        let w = Stored::Bf16(w);
        let threads = rayon::current_num_threads().max(1);
        let per_task = ROWS_PER_TASK
            .min(n.div_ceil(threads).next_multiple_of(4))
            .max(4);
        (0..n.div_ceil(per_task)).into_par_iter().for_each(|t| {
            let Stored::Bf16(w) = w else {
                unreachable!("built as bf16")
            };
            let j_end = ((t + 1) * per_task).min(n);
            for i0 in (0..m).step_by(4) {
                let rows = 4.min(m - i0);
                for j0 in (t * per_task..j_end).step_by(4) {
                    let cols = 4.min(j_end - j0);
                    // SAFETY: AVX512-BF16 was detected; reads stay in rows i0..i0+rows of x and
                    // j0..j0+cols of W; writes go to outputs this task owns.
                    unsafe {
                        dot_tile_bf16(
                            x.as_ptr().add(i0 * k),
                            rows,
                            w.add(j0 * k),
                            cols,
                            k,
                            out.get().add(i0 * ldy + j0),
                            ldy,
                        )
                    }
                }
            }
        });
    }

    /// One 4×4 tile of bf16 dot products over `k` (rows of both operands have stride `k`).
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn dot_tile_bf16(
        a: *const u16,
        rows: usize,
        w: *const u16,
        cols: usize,
        k: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        let arow = |r: usize| a.add(r.min(rows - 1) * k);
        let wrow = |j: usize| w.add(j.min(cols - 1) * k);
        let (a0, a1, a2, a3) = (arow(0), arow(1), arow(2), arow(3));
        let (w0, w1, w2, w3) = (wrow(0), wrow(1), wrow(2), wrow(3));
        let load =
            |p: *const u16| -> __m512bh { std::mem::transmute(_mm512_loadu_si512(p.cast())) };
        let mut acc = [_mm512_setzero_ps(); 16];
        let body = k - k % 32;
        let mut kk = 0;
        while kk < body {
            let x = [
                load(a0.add(kk)),
                load(a1.add(kk)),
                load(a2.add(kk)),
                load(a3.add(kk)),
            ];
            for (j, wp) in [w0, w1, w2, w3].into_iter().enumerate() {
                let wv = load(wp.add(kk));
                for r in 0..4 {
                    acc[r * 4 + j] = _mm512_dpbf16_ps(acc[r * 4 + j], x[r], wv);
                }
            }
            kk += 32;
        }
        let widen = |v: u16| f32::from_bits(u32::from(v) << 16);
        for r in 0..rows {
            let ar = arow(r);
            for j in 0..cols {
                let wj = wrow(j);
                let mut v = _mm512_reduce_add_ps(acc[r * 4 + j]);
                for t in body..k {
                    v += widen(*ar.add(t)) * widen(*wj.add(t));
                }
                *c.add(r * ldc + j) = v;
            }
        }
    }

    /// 16 bf16 at `p` as 16 f32.
    #[inline(always)]
    unsafe fn widen_bf16(p: *const u16) -> __m512 {
        let h = _mm256_loadu_si256(p.cast());
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
    }

    #[inline(always)]
    unsafe fn scalar<T: Copy + Into<Widen>>(p: *const T) -> f32 {
        (*p).into().0
    }

    /// A stored element as f32 (the scalar tail of a row).
    pub struct Widen(f32);
    impl From<f32> for Widen {
        fn from(v: f32) -> Self {
            Widen(v)
        }
    }
    impl From<u16> for Widen {
        fn from(v: u16) -> Self {
            Widen(f32::from_bits(u32::from(v) << 16))
        }
    }

    /// One tile: `rows` (≤ 4) activation rows at `a` (stride `lda`) against `cols` (≤ 4) weight
    /// rows at `w` (stride `ldw`), over `k`; `load` reads 16 weights as f32.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dot_tile<T: Copy + Into<Widen>>(
        a: *const f32,
        lda: usize,
        rows: usize,
        w: *const T,
        cols: usize,
        k: usize,
        c: *mut f32,
        ldc: usize,
        load: impl Fn(*const T) -> __m512,
    ) {
        let arow = |r: usize| a.add(r.min(rows - 1) * lda);
        let wrow = |j: usize| w.add(j.min(cols - 1) * k);
        let (a0, a1, a2, a3) = (arow(0), arow(1), arow(2), arow(3));
        let (w0, w1, w2, w3) = (wrow(0), wrow(1), wrow(2), wrow(3));
        let mut acc = [_mm512_setzero_ps(); 16];
        let body = k - k % 16;
        let mut kk = 0;
        while kk < body {
            let x = [
                _mm512_loadu_ps(a0.add(kk)),
                _mm512_loadu_ps(a1.add(kk)),
                _mm512_loadu_ps(a2.add(kk)),
                _mm512_loadu_ps(a3.add(kk)),
            ];
            for (j, wp) in [w0, w1, w2, w3].into_iter().enumerate() {
                let wv = load(wp.add(kk));
                for r in 0..4 {
                    acc[r * 4 + j] = _mm512_fmadd_ps(x[r], wv, acc[r * 4 + j]);
                }
            }
            kk += 16;
        }
        for r in 0..rows {
            let ar = arow(r);
            for j in 0..cols {
                let wj = wrow(j);
                let mut v = _mm512_reduce_add_ps(acc[r * 4 + j]);
                for t in body..k {
                    v += *ar.add(t) * scalar(wj.add(t));
                }
                *c.add(r * ldc + j) = v;
            }
        }
    }
}

/// The AVX-512 blocked path: activations packed once per call into 14-row, k-major blocks, so a
/// 14×32 micro-tile (28 accumulators) broadcasts them from consecutive addresses; each task
/// decodes the 256-deep blocks of four 32-column weight panels and runs every row block over
/// them. Against the 6×32 tile reading activation rows in place (rows 8 KB apart all fall in one
/// L1 set) this took a single core from 75 to 140 GFLOP/s on a 504×1536×2048 probe.
#[cfg(target_arch = "x86_64")]
mod packed14 {
    use super::{decode_panel, Projection, SharedOut, KC, NR};
    use rayon::prelude::*;
    use std::arch::x86_64::*;

    const MR: usize = 14;
    /// Panels decoded per task and reused by every row block (4 × 32 KB: in L2).
    const PANELS: usize = 4;

    pub fn matmul(
        x: &[f32],
        m: usize,
        k: usize,
        w: &Projection,
        n: usize,
        y: &mut [f32],
        ldy: usize,
    ) {
        let row_blocks = m.div_ceil(MR);
        // Block (rb, k0) of the packed activations starts at rb·MR·k + k0·MR, k-major, rows past
        // m zero.
        let mut packed = vec![0f32; row_blocks * MR * k];
        packed
            .par_chunks_mut(MR * k)
            .enumerate()
            .for_each(|(rb, block)| {
                for r in 0..MR.min(m - rb * MR) {
                    let src = &x[(rb * MR + r) * k..(rb * MR + r + 1) * k];
                    for k0 in (0..k).step_by(KC) {
                        let kc = KC.min(k - k0);
                        let dst = &mut block[k0 * MR..(k0 + kc) * MR];
                        for (kk, &v) in src[k0..k0 + kc].iter().enumerate() {
                            dst[kk * MR + r] = v;
                        }
                    }
                }
            });
        let out = SharedOut(y.as_mut_ptr());
        let group_cols = PANELS * NR;
        (0..n.div_ceil(group_cols)).into_par_iter().for_each_init(
            || (vec![0f32; PANELS * KC * NR], vec![0f32; KC]),
            |(panels, row), g| {
                let j0 = g * group_cols;
                let count = PANELS.min((n - j0).div_ceil(NR));
                for k0 in (0..k).step_by(KC) {
                    let kc = KC.min(k - k0);
                    for p in 0..count {
                        let cols = NR.min(n - j0 - p * NR);
                        decode_panel(
                            w,
                            j0 + p * NR,
                            cols,
                            k0,
                            kc,
                            &mut panels[p * KC * NR..],
                            row,
                        );
                    }
                    for rb in 0..row_blocks {
                        let rows = MR.min(m - rb * MR);
                        let a = packed[rb * MR * k + k0 * MR..].as_ptr();
                        for p in 0..count {
                            let cols = NR.min(n - j0 - p * NR);
                            // SAFETY: AVX-512F was detected; `a` covers kc·MR packed values,
                            // the panel kc·NR; writes go to rows rb·MR.. and this task's columns.
                            unsafe {
                                tile(
                                    a,
                                    panels[p * KC * NR..].as_ptr(),
                                    kc,
                                    out.get().add(rb * MR * ldy + j0 + p * NR),
                                    ldy,
                                    rows,
                                    cols,
                                    k0 > 0,
                                )
                            };
                        }
                    }
                }
            },
        );
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        a: *const f32,
        b: *const f32,
        kc: usize,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for kk in 0..kc {
            let b0 = _mm512_loadu_ps(b.add(kk * NR));
            let b1 = _mm512_loadu_ps(b.add(kk * NR + 16));
            let ak = a.add(kk * MR);
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*ak.add(r));
                acc_r[0] = _mm512_fmadd_ps(x, b0, acc_r[0]);
                acc_r[1] = _mm512_fmadd_ps(x, b1, acc_r[1]);
            }
        }
        let mut tile = [0f32; MR * NR];
        for (r, acc_r) in acc.iter().enumerate() {
            _mm512_storeu_ps(tile.as_mut_ptr().add(r * NR), acc_r[0]);
            _mm512_storeu_ps(tile.as_mut_ptr().add(r * NR + 16), acc_r[1]);
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

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// The 6×32 micro-tile: two 16-lane accumulators per row, the panel's two vectors loaded once
    /// per k step and multiplied by each row's broadcast activation.
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

/// The blocked path with the micro-kernel forced to `isa_override`, single-threaded (tests
/// compare every ISA the CPU has).
#[cfg(test)]
pub(crate) fn matmul_with(isa_override: Isa, x: &[f32], m: usize, w: &Projection, y: &mut [f32]) {
    let (n, k) = (w.out_dim(), w.in_dim());
    let mut panel = vec![0f32; KC * NR];
    let mut row = vec![0f32; KC];
    for p in 0..n.div_ceil(NR) {
        let cols = NR.min(n - p * NR);
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            decode_panel(w, p * NR, cols, k0, kc, &mut panel, &mut row);
            for r0 in (0..m).step_by(MR) {
                // SAFETY: as in `matmul`; callers pass an ISA the CPU has.
                unsafe {
                    tile(
                        isa_override,
                        x.as_ptr().add(r0 * k + k0),
                        k,
                        MR.min(m - r0),
                        panel.as_ptr(),
                        kc,
                        y.as_mut_ptr().add(r0 * n + p * NR),
                        n,
                        cols,
                        k0 > 0,
                    )
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::matrix::{Bytes, Format, HostMatrix};
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

    fn matrix(values: &[f32], rows: usize, cols: usize, format: &str) -> HostMatrix {
        let (bytes, format): (Vec<u8>, Format) = match format {
            "f32" => (
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                Format::F32,
            ),
            "bf16" => (
                values
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
                Format::Bf16,
            ),
            _ => (
                values
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
                Format::F16,
            ),
        };
        HostMatrix {
            bytes: Bytes::Owned(bytes.into()),
            format,
            rows,
            cols,
        }
    }

    fn transpose(w: &[f32], n: usize, k: usize) -> Vec<f32> {
        let mut t = vec![0f32; n * k];
        for j in 0..n {
            for kk in 0..k {
                t[kk * n + j] = w[j * k + kk];
            }
        }
        t
    }

    /// Every path (GEMV, blocked with each ISA this CPU has), both layouts and every float format
    /// equal the definition on the stored (rounded) values, on ragged shapes: rows not a multiple
    /// of 6, columns not of 32, k across two k-blocks, one row, k = 1.
    #[test]
    fn matmul_matches_the_definition_on_ragged_shapes() {
        let mut isas = vec![Isa::Portable];
        if isa() == Isa::Avx512 {
            isas.extend([Isa::Avx2, Isa::Avx512]);
        } else if isa() == Isa::Avx2 {
            isas.push(Isa::Avx2);
        }
        for &(m, n, k) in &[
            (1, 32, 8),
            (2, 45, 3),
            (7, 45, 3),
            (13, 64, 600),
            (6, 96, 1100),
            (3, 5, 1),
        ] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
                .collect();
            for format in ["f32", "bf16", "f16"] {
                let stored = matrix(&w, n, k, format).to_f32();
                let want = reference(&x, m, &stored, n, k);
                let check = |got: &[f32], what: &str| {
                    for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - r).abs() <= 1e-4 * (1.0 + r.abs()),
                            "{what} {format} {m}x{n}x{k} [{i}]: {g} vs {r}"
                        );
                    }
                };
                let out_in = Projection {
                    matrix: matrix(&w, n, k, format),
                    layout: Layout::OutIn,
                };
                let in_out = Projection {
                    matrix: matrix(&transpose(&w, n, k), k, n, format),
                    layout: Layout::InOut,
                };
                #[cfg(target_arch = "x86_64")]
                if matches!(isa(), Isa::Avx2 | Isa::Avx512) {
                    // The AVX2 few-row path, whichever path `matmul` picks on this CPU.
                    let mut y = vec![f32::NAN; m * n];
                    avx2::dot_rows_decoded(&x, m, k, &out_in.matrix, n, &mut y, n);
                    check(&y, "OutIn AVX2 dot rows");
                }
                #[cfg(target_arch = "x86_64")]
                if isa() == Isa::Avx512 {
                    // The AVX-512 decoded-rows path, which block-quantized weights take.
                    let mut y = vec![f32::NAN; m * n];
                    direct::dot_rows_decoded(&x, m, k, &out_in.matrix, n, &mut y, n);
                    check(&y, "OutIn AVX-512 decoded rows");
                }
                for p in [&out_in, &in_out] {
                    let mut y = vec![f32::NAN; m * n];
                    matmul(&x, m, p, &mut y, n);
                    check(&y, &format!("{:?}", p.layout));
                    for &isa in &isas {
                        let mut y = vec![f32::NAN; m * n];
                        matmul_with(isa, &x, m, p, &mut y);
                        check(&y, &format!("{:?} {isa:?}", p.layout));
                    }
                }
                // bf16 activations: products of the rounded values, whatever the path.
                let xb: Vec<u16> = x
                    .iter()
                    .map(|&v| half::bf16::from_f32(v).to_bits())
                    .collect();
                let xr: Vec<f32> = xb
                    .iter()
                    .map(|&b| f32::from_bits(u32::from(b) << 16))
                    .collect();
                let want_b = reference(&xr, m, &stored, n, k);
                for p in [&out_in, &in_out] {
                    let mut y = vec![f32::NAN; m * n];
                    matmul_bf16(&xb, m, p, &mut y, n);
                    for (i, (g, r)) in y.iter().zip(&want_b).enumerate() {
                        assert!(
                            (g - r).abs() <= 1e-4 * (1.0 + r.abs()),
                            "bf16 x {format} {m}x{n}x{k} [{i}]: {g} vs {r}"
                        );
                    }
                }
                // A strided output (the gate half of a [m, 2n] buffer) leaves the rest alone.
                let mut y = vec![7f32; m * 2 * n];
                matmul(&x, m, &out_in, &mut y, 2 * n);
                let gate: Vec<f32> = (0..m)
                    .flat_map(|i| y[i * 2 * n..i * 2 * n + n].to_vec())
                    .collect();
                check(&gate, "strided");
                for i in 0..m {
                    assert!(y[i * 2 * n + n..(i + 1) * 2 * n].iter().all(|&v| v == 7.0));
                }
            }
        }
    }
}

/// Throughput probe (not a timed test: it asserts nothing): `cargo test --release --lib
/// gemm_throughput -- --ignored --nocapture`.
#[cfg(test)]
mod throughput {
    use super::super::matrix::{Bytes, Format, HostMatrix};
    use super::*;

    #[test]
    #[ignore]
    fn gemm_throughput() {
        for &(m, n, k) in &[
            (512, 2048, 2048),
            (64, 1024, 2048),
            (64, 2048, 1024),
            (8, 1024, 2048),
        ] {
            let x: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
            // Normal values (denormal products would time the CPU's microcode assists).
            let values = (0..n * k).map(|i| ((i % 251) as f32 - 125.0) / 125.0);
            let f32_bytes: Vec<u8> = values.clone().flat_map(f32::to_le_bytes).collect();
            let bf16_bytes: Vec<u8> = values
                .flat_map(|v| half::bf16::from_f32(v).to_le_bytes())
                .collect();
            for (label, format, bytes) in [
                ("f32", Format::F32, f32_bytes),
                ("bf16", Format::Bf16, bf16_bytes),
            ] {
                let bytes = if std::env::var("MAPPED").is_ok() {
                    let path = std::env::temp_dir().join("moescope-gemm-probe.bin");
                    std::fs::write(&path, &bytes).unwrap();
                    let file = std::fs::File::open(&path).unwrap();
                    // SAFETY: a private read-only mapping of a file this test wrote.
                    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
                    let len = map.len();
                    Bytes::Mapped {
                        map: std::sync::Arc::new(map),
                        start: 0,
                        len,
                    }
                } else {
                    Bytes::Owned(bytes.into())
                };
                for layout in [Layout::OutIn, Layout::InOut] {
                    let (rows, cols) = if layout == Layout::OutIn {
                        (n, k)
                    } else {
                        (k, n)
                    };
                    let p = Projection {
                        matrix: HostMatrix {
                            bytes: bytes.clone(),
                            format: format.clone(),
                            rows,
                            cols,
                        },
                        layout,
                    };
                    let mut y = vec![0f32; m * n];
                    matmul(&x, m, &p, &mut y, n);
                    let reps = 5;
                    let t = std::time::Instant::now();
                    for _ in 0..reps {
                        matmul(&x, m, &p, &mut y, n);
                    }
                    let s = t.elapsed().as_secs_f64() / reps as f64;
                    let xb: Vec<u16> = x
                        .iter()
                        .map(|&v| half::bf16::from_f32(v).to_bits())
                        .collect();
                    matmul_bf16(&xb, m, &p, &mut y, n);
                    let t = std::time::Instant::now();
                    for _ in 0..reps {
                        matmul_bf16(&xb, m, &p, &mut y, n);
                    }
                    let sb = t.elapsed().as_secs_f64() / reps as f64;
                    let rate = |s: f64| 2.0 * (m * n * k) as f64 / s / 1e9;
                    println!(
                        "{m}x{n}x{k} {label} {layout:?}: {:.1} ms, {:.1} GFLOP/s; bf16 activations {:.1} GFLOP/s",
                        s * 1e3,
                        rate(s),
                        rate(sb)
                    );
                }
            }
        }
    }
}
