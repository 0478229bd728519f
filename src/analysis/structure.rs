//! Routing structure: how choices repeat between neighbouring tokens, which experts fire together,
//! and how much consecutive MoE layers agree. Rows are each token's chosen experts (top-k ids in
//! descending weight order, so `row[0]` is the top-1).

/// Share of consecutive token pairs (t, t+1) whose top-1 expert is the same; `None` for T < 2.
pub fn repeat_top1(rows: &[&[u32]]) -> Option<f64> {
    pair_rate(rows, |a, b| a[0] == b[0])
}

/// Share of consecutive pairs where top-1(t+1) ∈ {top-1(t), top-2(t)}; `None` for k < 2 or T < 2.
pub fn repeat_top12(rows: &[&[u32]]) -> Option<f64> {
    if rows.first().is_some_and(|r| r.len() < 2) {
        return None;
    }
    pair_rate(rows, |a, b| a[..2].contains(&b[0]))
}

fn pair_rate(rows: &[&[u32]], same: impl Fn(&[u32], &[u32]) -> bool) -> Option<f64> {
    if rows.len() < 2 {
        return None;
    }
    let hits = rows.windows(2).filter(|w| same(w[0], w[1])).count();
    Some(hits as f64 / (rows.len() - 1) as f64)
}

/// |A ∩ B| / |A ∪ B| of two expert sets (each without repeats); 1 when both are empty.
pub fn jaccard(a: &[u32], b: &[u32]) -> f64 {
    let inter = a.iter().filter(|x| b.contains(x)).count();
    let union = a.len() + b.len() - inter;
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// Mean Jaccard over tokens between the same tokens' sets at two layers; `None` without tokens.
pub fn mean_jaccard(here: &[&[u32]], next: &[&[u32]]) -> Option<f64> {
    if here.is_empty() || here.len() != next.len() {
        return None;
    }
    let sum: f64 = here.iter().zip(next).map(|(a, b)| jaccard(a, b)).sum();
    Some(sum / here.len() as f64)
}

/// Co-activation counts n[a][b] = #tokens choosing both a and b (n[a][a] = c_a for top-k sets).
pub fn coactivation_counts(rows: &[&[u32]], num_experts: usize) -> Vec<Vec<u64>> {
    let mut n = vec![vec![0u64; num_experts]; num_experts];
    for row in rows {
        for &a in row.iter() {
            for &b in row.iter() {
                n[a as usize][b as usize] += 1;
            }
        }
    }
    n
}

/// P(b | a): row a divided by n[a][a]; rows of never-chosen experts stay all 0.
pub fn coactivation(counts: &[Vec<u64>]) -> Vec<Vec<f64>> {
    counts
        .iter()
        .enumerate()
        .map(|(a, row)| {
            let chosen = row[a];
            row.iter()
                .map(|&n| {
                    if chosen == 0 {
                        0.0
                    } else {
                        n as f64 / chosen as f64
                    }
                })
                .collect()
        })
        .collect()
}
