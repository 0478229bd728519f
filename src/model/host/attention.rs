//! The attention core on the CPU: for each head, scores `Q Kᵀ`, the causal (and sliding or
//! chunked) mask, a softmax with an optional sink logit, and `P V`, in f32 over host slices.
//! Heads run in parallel; a grouped-query head reads its kv head directly (no repeated copy of
//! the cache). candle's CPU matmuls ran these at a fraction of the rate, and in bf16 far slower.

use super::gemm::matmul_f32_rows;
use super::math::exp;
use crate::model::spec::AttentionWindow;
use rayon::prelude::*;

/// Shapes of one attention call: `heads` query heads over `kv_heads` key/value heads, `len`
/// queries at positions `start..start + len` against `seen` keys.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub heads: usize,
    pub kv_heads: usize,
    pub len: usize,
    pub seen: usize,
    pub dq: usize,
    pub dv: usize,
}

/// Which keys the queries see and how scores scale.
#[derive(Clone, Copy, Debug)]
pub struct Masking {
    /// Softmax scale.
    pub scale: f32,
    /// Absolute position of the first query.
    pub start: usize,
    pub window: AttentionWindow,
}

/// Whether query position `p` may attend key `j`.
fn visible(p: usize, j: usize, window: AttentionWindow) -> bool {
    j <= p
        && match window {
            AttentionWindow::Full => true,
            AttentionWindow::Sliding(w) => p - j < w,
            AttentionWindow::Chunked(c) => j / c == p / c,
        }
}

/// `q` `[heads, len, dq]`, `k` `[kv_heads, seen, dq]`, `v` `[kv_heads, seen, dv]` (row-major f32)
/// → `[len, heads · dv]`. `sinks` (`[heads]`) join each head's softmax as one more logit.
pub fn attend(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    s: Shape,
    masking: Masking,
    sinks: Option<&[f32]>,
) -> Vec<f32> {
    let Masking {
        scale,
        start,
        window,
    } = masking;
    let Shape {
        heads,
        kv_heads,
        len,
        seen,
        dq,
        dv,
    } = s;
    assert_eq!(q.len(), heads * len * dq, "q is not [heads, len, dq]");
    assert_eq!(
        k.len(),
        kv_heads * seen * dq,
        "k is not [kv_heads, seen, dq]"
    );
    assert_eq!(
        v.len(),
        kv_heads * seen * dv,
        "v is not [kv_heads, seen, dv]"
    );
    let group = heads / kv_heads.max(1);
    // Per kv head, Vᵀ `[dv, seen]` so P·V is a dot product per row like Q·Kᵀ.
    let vt: Vec<Vec<f32>> = (0..kv_heads)
        .into_par_iter()
        .map(|g| {
            let vg = &v[g * seen * dv..(g + 1) * seen * dv];
            let mut t = vec![0f32; dv * seen];
            for (j, row) in vg.chunks_exact(dv).enumerate() {
                for (c, &x) in row.iter().enumerate() {
                    t[c * seen + j] = x;
                }
            }
            t
        })
        .collect();
    let per_head: Vec<Vec<f32>> = (0..heads)
        .into_par_iter()
        .map(|h| {
            let g = h / group;
            let qh = &q[h * len * dq..(h + 1) * len * dq];
            let kg = &k[g * seen * dq..(g + 1) * seen * dq];
            let mut scores = vec![0f32; len * seen];
            matmul_f32_rows(qh, len, dq, kg, seen, &mut scores, seen);
            for (i, row) in scores.chunks_exact_mut(seen).enumerate() {
                let p = start + i;
                let mut max = sinks.map_or(f32::NEG_INFINITY, |s| s[h]);
                for (j, x) in row.iter_mut().enumerate() {
                    if visible(p, j, window) {
                        *x *= scale;
                        max = max.max(*x);
                    } else {
                        *x = f32::NEG_INFINITY;
                    }
                }
                let mut sum = sinks.map_or(0.0, |s| exp(s[h] - max));
                for x in row.iter_mut() {
                    // exp(−∞ − max) is 0: masked keys take no mass.
                    *x = if *x == f32::NEG_INFINITY {
                        0.0
                    } else {
                        exp(*x - max)
                    };
                    sum += *x;
                }
                let inv = 1.0 / sum;
                row.iter_mut().for_each(|x| *x *= inv);
            }
            let mut out = vec![0f32; len * dv];
            matmul_f32_rows(&scores, len, seen, &vt[g], dv, &mut out, dv);
            out
        })
        .collect();
    let mut y = vec![0f32; len * heads * dv];
    for (h, out) in per_head.iter().enumerate() {
        for (i, row) in out.chunks_exact(dv).enumerate() {
            y[i * heads * dv + h * dv..i * heads * dv + (h + 1) * dv].copy_from_slice(row);
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one query and head at a time, in f64.
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        s: Shape,
        m: Masking,
        sinks: Option<&[f32]>,
    ) -> Vec<f32> {
        let Masking {
            scale,
            start,
            window,
        } = m;
        let mut y = vec![0f32; s.len * s.heads * s.dv];
        for h in 0..s.heads {
            let g = h / (s.heads / s.kv_heads);
            for i in 0..s.len {
                let p = start + i;
                let logits: Vec<Option<f64>> = (0..s.seen)
                    .map(|j| {
                        visible(p, j, window).then(|| {
                            (0..s.dq)
                                .map(|c| {
                                    f64::from(q[(h * s.len + i) * s.dq + c])
                                        * f64::from(k[(g * s.seen + j) * s.dq + c])
                                })
                                .sum::<f64>()
                                * f64::from(scale)
                        })
                    })
                    .collect();
                let sink = sinks.map(|s| f64::from(s[h]));
                let max = logits
                    .iter()
                    .flatten()
                    .copied()
                    .chain(sink)
                    .fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = logits
                    .iter()
                    .flatten()
                    .map(|l| (l - max).exp())
                    .sum::<f64>()
                    + sink.map_or(0.0, |s| (s - max).exp());
                for c in 0..s.dv {
                    let o: f64 = logits
                        .iter()
                        .enumerate()
                        .filter_map(|(j, l)| {
                            l.map(|l| {
                                (l - max).exp() / sum * f64::from(v[(g * s.seen + j) * s.dv + c])
                            })
                        })
                        .sum();
                    y[i * s.heads * s.dv + h * s.dv + c] = o as f32;
                }
            }
        }
        y
    }

    /// GQA with a later chunk of queries, every window kind, with and without sinks.
    #[test]
    fn attend_matches_the_definition() {
        let s = Shape {
            heads: 4,
            kv_heads: 2,
            len: 5,
            seen: 11,
            dq: 20,
            dv: 12,
        };
        let start = s.seen - s.len;
        let fill = |n: usize, m: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * m % 97) as f32 - 48.0) / 40.0)
                .collect()
        };
        let q = fill(s.heads * s.len * s.dq, 31);
        let k = fill(s.kv_heads * s.seen * s.dq, 17);
        let v = fill(s.kv_heads * s.seen * s.dv, 13);
        let sinks = [0.3f32, -1.0, 2.0, 0.0];
        for window in [
            AttentionWindow::Full,
            AttentionWindow::Sliding(3),
            AttentionWindow::Chunked(4),
        ] {
            for sink in [None, Some(&sinks[..])] {
                let m = Masking {
                    scale: 0.2,
                    start,
                    window,
                };
                let got = attend(&q, &k, &v, s, m, sink);
                let want = reference(&q, &k, &v, s, m, sink);
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() < 1e-5,
                        "{window:?} {sink:?} [{i}]: {a} vs {b}"
                    );
                }
            }
        }
    }
}
