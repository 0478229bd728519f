//! Load-balance statistics of one layer, from its expert counts c_e (DESIGN.md "Metrics").
//! Each function takes the counts (or fractions) as `f64` so views can call them on any pooling.

/// Arithmetic mean (0 for an empty slice).
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Population variance (divides by n, not n − 1: the experts are the whole population).
pub fn population_variance(xs: &[f64]) -> f64 {
    let m = mean(xs);
    mean(&xs.iter().map(|x| (x - m) * (x - m)).collect::<Vec<_>>())
}

/// Population standard deviation.
pub fn population_std(xs: &[f64]) -> f64 {
    population_variance(xs).sqrt()
}

/// Coefficient of variation std/mean of the counts: 0 at balance, √(E−1) when one expert takes all.
pub fn cv(counts: &[f64]) -> f64 {
    ratio(population_std(counts), mean(counts))
}

/// (max − mean)/mean of the counts: 0 at balance, E−1 when one expert takes all.
pub fn max_vio(counts: &[f64]) -> f64 {
    let m = mean(counts);
    let max = counts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    ratio(max - m, m)
}

/// Gini coefficient Σ_i Σ_j |c_i − c_j| / (2·E²·mean c): 0 at balance, (E−1)/E at collapse.
pub fn gini(counts: &[f64]) -> f64 {
    let e = counts.len() as f64;
    let pairs: f64 = counts
        .iter()
        .map(|a| counts.iter().map(|b| (a - b).abs()).sum::<f64>())
        .sum();
    ratio(pairs, 2.0 * e * e * mean(counts))
}

/// Jain's fairness index (Σc)²/(E·Σc²): 1 at balance, 1/E at collapse.
pub fn jain(counts: &[f64]) -> f64 {
    let sum: f64 = counts.iter().sum();
    let squares: f64 = counts.iter().map(|c| c * c).sum();
    ratio(sum * sum, counts.len() as f64 * squares)
}

/// −Σ f log f / log E over load fractions f (0·log 0 = 0): 1 at balance, 0 at collapse.
/// With a single expert there is nothing to balance, so it is 1.
pub fn load_entropy(fractions: &[f64]) -> f64 {
    let e = fractions.len();
    if e <= 1 {
        return 1.0;
    }
    let h: f64 = fractions.iter().map(|&f| -x_ln_x(f)).sum();
    h / (e as f64).ln()
}

/// KL divergence Σ f log(f/f̄) from the uniform usage f̄ = 1/E (0·log 0 = 0): 0 at balance,
/// log E when one expert takes all.
pub fn usage_kl(fractions: &[f64]) -> f64 {
    let e = fractions.len() as f64;
    fractions
        .iter()
        .filter(|&&f| f > 0.0)
        .map(|&f| f * (f * e).ln())
        .sum()
}

/// x·ln x with the limit 0 at x = 0.
pub(crate) fn x_ln_x(x: f64) -> f64 {
    if x > 0.0 {
        x * x.ln()
    } else {
        0.0
    }
}

/// a/b, 0 when b is 0 (an all-zero load has no imbalance to report).
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-6, "{a} != {b}");
    }

    #[test]
    fn counts_3_1() {
        // c = [3, 1]: mean 2, std 1 → cv 0.5, max_vio (3−2)/2 = 0.5,
        // gini (|3−1| + |1−3|)/(2·2²·2) = 4/16 = 0.25, jain 4²/(2·(9+1)) = 0.8.
        let c = [3.0, 1.0];
        close(cv(&c), 0.5);
        close(max_vio(&c), 0.5);
        close(gini(&c), 0.25);
        close(jain(&c), 0.8);
        // f = [0.75, 0.25]: entropy (0.75·ln(4/3) + 0.25·ln 4)/ln 2, KL 0.75·ln 1.5 + 0.25·ln 0.5.
        let f = [0.75, 0.25];
        close(
            load_entropy(&f),
            (0.75 * (4.0f64 / 3.0).ln() + 0.25 * 4.0f64.ln()) / 2.0f64.ln(),
        );
        close(load_entropy(&f), 0.811_278_124_459_132_8);
        close(usage_kl(&f), 0.130_812_035_941_137_7);
        close(population_std(&f), 0.25);
    }

    #[test]
    fn single_expert_and_zero_load() {
        close(load_entropy(&[1.0]), 1.0);
        close(cv(&[0.0, 0.0]), 0.0);
        close(jain(&[0.0, 0.0]), 0.0);
        close(mean(&[]), 0.0);
    }
}
