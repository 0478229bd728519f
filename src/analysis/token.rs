//! Router probabilities p_{t,e} and per-token metrics (entropy, top-k mass, margin).
//!
//! p_{t,e} is the family's scoring of the raw logits — softmax over all experts, or sigmoid scores
//! normalized to sum 1 (DeepSeek-V3's s') — so softmax and sigmoid routers are compared on the same
//! scale. The scoring itself is [`crate::routing::scores`], the router's own function.

use super::load::x_ln_x;
use crate::routing::Scoring;
use crate::trace::{MoeLayerTrace, RouterInfo};
use serde::Serialize;

/// The trace's scoring rule, or `None` for a trace that does not name one (older files).
pub fn scoring(router: &RouterInfo) -> Option<Scoring> {
    match router.scoring.as_str() {
        "softmax" => Some(Scoring::Softmax),
        "sigmoid" => Some(Scoring::Sigmoid),
        _ => None,
    }
}

/// What p_{t,e} means for `router`'s rule, and where transformers' aux loss applies, in words:
/// for rules that do not score all experts with one softmax, P_e is not the weight the router
/// applies, and a user reading `switch_loss` or entropies must know that.
pub fn probability_meaning(router: &RouterInfo) -> String {
    let aux = match scoring(router) {
        Some(Scoring::Softmax) => {
            "; hf_aux_loss re-selects the top-k of this softmax, as transformers does"
        }
        Some(Scoring::Sigmoid) => {
            "; hf_aux_loss does not apply (transformers computes no such loss for sigmoid routers)"
        }
        None => "",
    };
    let p = match router.rule.as_str() {
        "topk_softmax" => "P_e = softmax of the raw logits over all experts; the router itself softmaxes only its top-k logits, so the applied weights are P_e renormalized over the chosen experts",
        "topk_sigmoid" => "P_e = sigmoid of each raw logit, normalized to sum 1 over all experts; the router applies the chosen experts' unnormalized sigmoid to the expert input",
        "sparsemixer" => "P_e = softmax of the raw logits over all experts; sparsemixer's weights come from a separate masked softmax per slot",
        "sigmoid_topk" => "P_e = sigmoid scores normalized to sum 1 (before any selection bias)",
        _ => match scoring(router) {
            Some(Scoring::Softmax) => "P_e = softmax of the raw logits over all experts (the router's own scores, before any selection bias)",
            Some(Scoring::Sigmoid) => "P_e = sigmoid scores normalized to sum 1 (before any selection bias)",
            None => return "the trace names no scoring: probability metrics are null".into(),
        },
    };
    format!("{p}{aux}")
}

pub use crate::routing::probabilities;

/// log Σ_e exp(logit_e) of raw logits, in f64 (the quantity ST-MoE's z-loss squares).
pub fn logsumexp(logits: &[f32]) -> f64 {
    let max = logits
        .iter()
        .map(|&l| f64::from(l))
        .fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + logits
        .iter()
        .map(|&l| (f64::from(l) - max).exp())
        .sum::<f64>()
        .ln()
}

/// How one token was routed, from its probabilities p_{t,·}.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TokenMetrics {
    /// −Σ_e p log p over all experts, in nats: log E for a uniform router, 0 for a one-hot one.
    pub entropy_nats: f64,
    /// Σ of the chosen experts' p (before any renormalization): k/E uniform, up to 1.
    pub topk_mass: f64,
    /// k-th minus (k+1)-th largest p: small means a nearly tied, fragile choice.
    /// `None` when k = E (every expert is chosen; there is no (k+1)-th).
    pub margin: Option<f64>,
}

/// Metrics of one token from its probabilities and its chosen experts.
pub fn metrics_of(probs: &[f64], chosen: &[u32]) -> TokenMetrics {
    let entropy_nats = -probs.iter().map(|&p| x_ln_x(p)).sum::<f64>();
    let topk_mass = chosen
        .iter()
        .filter_map(|&e| probs.get(e as usize))
        .sum::<f64>();
    let k = chosen.len();
    let margin = if k == 0 || k >= probs.len() {
        None
    } else {
        let mut sorted = probs.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        Some(sorted[k - 1] - sorted[k])
    };
    TokenMetrics {
        entropy_nats,
        topk_mass,
        margin,
    }
}

/// Per-token metrics of every token of `layer` (for the views), or `None` when the trace was
/// captured without router logits or does not name its scoring.
pub fn token_metrics(layer: &MoeLayerTrace, router: &RouterInfo) -> Option<Vec<TokenMetrics>> {
    let scoring = scoring(router)?;
    if layer.router_logits.is_empty() || layer.router_logits.rows() != layer.topk_ids.rows() {
        return None;
    }
    Some(
        layer
            .router_logits
            .iter_rows()
            .zip(layer.topk_ids.iter_rows())
            .map(|(logits, ids)| metrics_of(&probabilities(logits, scoring), ids))
            .collect(),
    )
}

/// KL(P ‖ Q) of softmax(p_logits) and softmax(q_logits), in nats, computed in f64.
pub fn kl_of_logits(p_logits: &[f32], q_logits: &[f32]) -> Option<f64> {
    if p_logits.is_empty() || p_logits.len() != q_logits.len() {
        return None;
    }
    let log_softmax = |l: &[f32]| -> Vec<f64> {
        let lse = logsumexp(l);
        l.iter().map(|&x| f64::from(x) - lse).collect()
    };
    let (lp, lq) = (log_softmax(p_logits), log_softmax(q_logits));
    Some(
        lp.iter()
            .zip(&lq)
            .map(|(a, b)| a.exp() * (a - b))
            .sum::<f64>()
            .max(0.0),
    )
}

/// Index of the largest logit; the lowest index among equal ones (torch's `argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}
