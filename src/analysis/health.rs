//! Health bands: thresholds that turn a balance figure into "normal", "warning" or "alarm".

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    Normal,
    Warning,
    Alarm,
}

/// Band of `utilization_balance` (the normalized load entropy): normal ≥ 0.8, warning ≥ 0.7,
/// alarm below 0.7.
pub fn utilization_band(balance: f64) -> Band {
    if balance >= 0.8 {
        Band::Normal
    } else if balance >= 0.7 {
        Band::Warning
    } else {
        Band::Alarm
    }
}

/// Spread of per-expert compute time, (max − mean)/mean over the experts' times: how much the
/// slowest expert holds the layer back compared with an evenly spread one (0 when even).
/// `None` without timings or when no time was recorded.
pub fn expert_time_spread(per_expert_ms: &[f64]) -> Option<f64> {
    if per_expert_ms.is_empty() {
        return None;
    }
    let mean = per_expert_ms.iter().sum::<f64>() / per_expert_ms.len() as f64;
    let max = per_expert_ms
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    (mean > 0.0).then(|| (max - mean) / mean)
}

/// Band of `expert_time_spread`: normal below 15 %, alarm above 25 %, warning in between.
pub fn expert_time_band(spread: f64) -> Band {
    if spread < 0.15 {
        Band::Normal
    } else if spread <= 0.25 {
        Band::Warning
    } else {
        Band::Alarm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilization_thresholds() {
        assert_eq!(utilization_band(1.0), Band::Normal);
        assert_eq!(utilization_band(0.8), Band::Normal);
        assert_eq!(utilization_band(0.799), Band::Warning);
        assert_eq!(utilization_band(0.7), Band::Warning);
        assert_eq!(utilization_band(0.699), Band::Alarm);
    }

    #[test]
    fn time_spread_and_band() {
        // times [1, 1, 1, 2]: mean 1.25, (2 − 1.25)/1.25 = 0.6 → alarm.
        let s = expert_time_spread(&[1.0, 1.0, 1.0, 2.0]).unwrap();
        assert!((s - 0.6).abs() < 1e-12);
        assert_eq!(expert_time_band(s), Band::Alarm);
        // [1, 1.2]: mean 1.1, 0.1/1.1 ≈ 0.0909 → normal; [1, 1.5]: 0.25/1.25 = 0.2 → warning.
        assert_eq!(
            expert_time_band(expert_time_spread(&[1.0, 1.2]).unwrap()),
            Band::Normal
        );
        assert_eq!(
            expert_time_band(expert_time_spread(&[1.0, 1.5]).unwrap()),
            Band::Warning
        );
        assert_eq!(expert_time_spread(&[]), None);
        assert_eq!(expert_time_spread(&[0.0, 0.0]), None);
    }
}
