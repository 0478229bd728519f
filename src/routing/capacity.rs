//! Expert capacity: which assignments an expert with room for C tokens drops. Shared by the
//! analysis (which counts what a capacity would drop) and `--drop-over-capacity` (which drops
//! them in the forward pass), so a trace's recorded drops are exactly what `stats` reports.

/// One routed token: its index in the pooled token order and its chosen experts.
#[derive(Clone, Copy, Debug)]
pub struct Assignment<'a> {
    pub token: usize,
    pub ids: &'a [u32],
}

/// Capacity C = ceil(T·k/E·CF) assignments per expert.
pub fn capacity(tokens: usize, top_k: usize, num_experts: usize, capacity_factor: f64) -> usize {
    if num_experts == 0 {
        return 0;
    }
    let ideal = tokens as f64 * top_k as f64 / num_experts as f64 * capacity_factor;
    // f64 rounding makes 2.5·1.2 = 3.0000000000000004; a capacity of 3 is meant, not 4.
    (ideal - 1e-9).ceil().max(0.0) as usize
}

/// "position" policy: each expert keeps its first C assignments in token order.
/// Returns the dropped `[token, expert]` pairs, sorted.
pub fn dropped_by_position(
    rows: &[Assignment],
    num_experts: usize,
    capacity: usize,
) -> Vec<[usize; 2]> {
    let mut kept = vec![0usize; num_experts];
    let mut dropped = Vec::new();
    for row in rows {
        for &e in row.ids {
            let e = e as usize;
            if kept[e] < capacity {
                kept[e] += 1;
            } else {
                dropped.push([row.token, e]);
            }
        }
    }
    dropped.sort_unstable();
    dropped
}

/// "probs" policy: each expert keeps the C assignments with the highest router probability
/// (ties: the earlier token). `probs[i]` are the probabilities of `rows[i]`.
pub fn dropped_by_probs(
    rows: &[Assignment],
    probs: &[Vec<f64>],
    num_experts: usize,
    capacity: usize,
) -> Vec<[usize; 2]> {
    let mut per_expert: Vec<Vec<(f64, usize)>> = vec![Vec::new(); num_experts];
    for (row, p) in rows.iter().zip(probs) {
        for &e in row.ids {
            per_expert[e as usize].push((p[e as usize], row.token));
        }
    }
    let mut dropped = Vec::new();
    for (e, list) in per_expert.iter_mut().enumerate() {
        list.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        dropped.extend(list.iter().skip(capacity).map(|&(_, token)| [token, e]));
    }
    dropped.sort_unstable();
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_rounds_up_with_tolerance() {
        // 12·2/8·1.25 = 3.75 → 4; 10·1/4·1.2 = 3 (not 4 from 3.0000000000000004); 3·1/4·1.25 → 1.
        assert_eq!(capacity(12, 2, 8, 1.25), 4);
        assert_eq!(capacity(10, 1, 4, 1.2), 3);
        assert_eq!(capacity(3, 1, 4, 1.25), 1);
        assert_eq!(capacity(4, 2, 4, 1.0), 2);
    }
}
