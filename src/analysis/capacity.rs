//! Expert capacity: which assignments an expert with room for C tokens would drop (the selection
//! itself lives in [`crate::routing::capacity`], which `--drop-over-capacity` also uses).

pub use crate::routing::capacity::{capacity, dropped_by_position, dropped_by_probs, Assignment};

/// Σ_e max(0, c_e − C)/(T·k): the share of assignments over capacity (the same for every policy).
pub fn dropped_fraction(counts: &[u64], capacity: usize, assignments: usize) -> f64 {
    if assignments == 0 {
        return 0.0;
    }
    let over: u64 = counts
        .iter()
        .map(|&c| c.saturating_sub(capacity as u64))
        .sum();
    over as f64 / assignments as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_over_capacity() {
        // c = [3, 1], C = 2: (3−2)/4 = 0.25.
        assert!((dropped_fraction(&[3, 1], 2, 4) - 0.25).abs() < 1e-12);
        assert_eq!(dropped_fraction(&[3, 1], 3, 4), 0.0);
    }
}
