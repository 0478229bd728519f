//! What an intervention did: an intervened run scored against the unmodified run of the same
//! tokens — per position the next-token KL divergence and whether the most likely next token
//! changed, the log-probability (perplexity) each run gives the sequence, and per MoE layer how
//! many tokens were routed to a different set of experts (the intervened layer itself, and the
//! later layers whose input it changed).

use super::token::{argmax, kl_of_logits, logsumexp};
use super::AnalysisError;
use crate::trace::Trace;
use serde::Serialize;

/// One position's next-token distribution under both runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PositionEffect {
    pub position: usize,
    /// The token at this position (its text).
    pub token: String,
    /// KL(baseline ‖ intervened) of the next-token distributions, in nats.
    pub kl_nats: f64,
    /// The most likely next token of each run (lowest id on a tie, as greedy decoding picks).
    pub top1_baseline: u32,
    pub top1_intervened: u32,
    /// ln P(the actual next token) under each run; absent at the last position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_logprob_baseline: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_logprob_intervened: Option<f64>,
}

/// How one MoE layer's routing moved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerRoutingChange {
    pub layer: usize,
    /// Tokens whose set of experts differs (order ignored; every token when k changed).
    pub tokens_rerouted: usize,
    /// Tokens whose first expert differs.
    pub top1_changed: usize,
    /// Assignments the intervened run dropped over capacity (`--drop-over-capacity`).
    pub assignments_dropped: usize,
}

/// `--report`'s content: the intervened run against the unmodified one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InterventionEffect {
    /// The interventions in words.
    pub interventions: String,
    pub num_tokens: usize,
    pub mean_kl_nats: f64,
    pub max_kl_nats: f64,
    /// Positions whose most likely next token changed.
    pub top1_changed_positions: usize,
    /// Σ ln P(token t+1 | ≤ t) over the sequence, and exp(−mean) of it; absent for one token.
    pub log_prob_baseline: Option<f64>,
    pub log_prob_intervened: Option<f64>,
    pub perplexity_baseline: Option<f64>,
    pub perplexity_intervened: Option<f64>,
    pub moe_layers: Vec<LayerRoutingChange>,
    /// Tokens rerouted in at least one layer.
    pub tokens_rerouted_any_layer: usize,
    pub positions: Vec<PositionEffect>,
    /// For a generated run: what each run generated on its own from the same prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continuation: Option<Continuations>,
}

/// The tokens the unmodified and the intervened run generated after the same prompt (the
/// positions above score both runs on the intervened run's tokens).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Continuations {
    pub baseline_ids: Vec<u32>,
    pub intervened_ids: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervened_text: Option<String>,
    /// The first generated index where the two differ (`None` when one is a prefix of the
    /// other: identical, or one stopped earlier).
    pub first_difference: Option<usize>,
}

impl Continuations {
    pub fn new(baseline_ids: Vec<u32>, intervened_ids: Vec<u32>) -> Self {
        let first_difference = baseline_ids
            .iter()
            .zip(&intervened_ids)
            .position(|(a, b)| a != b);
        Self {
            baseline_ids,
            intervened_ids,
            baseline_text: None,
            intervened_text: None,
            first_difference,
        }
    }
}

/// Scores `intervened` against `baseline`: the same tokens and MoE layers, routing captured for
/// every token, and each run's LM-head logits for every position (`[tokens, vocab]`).
pub fn intervention_effect(
    baseline: &Trace,
    baseline_logits: &[f32],
    intervened: &Trace,
    intervened_logits: &[f32],
) -> Result<InterventionEffect, AnalysisError> {
    let mismatch = |problem: String| AnalysisError::Mismatch { trace: 1, problem };
    let ids: Vec<u32> = baseline.tokens.iter().map(|t| t.id).collect();
    if intervened
        .tokens
        .iter()
        .map(|t| t.id)
        .ne(ids.iter().copied())
    {
        return Err(mismatch("the runs read different tokens".into()));
    }
    let t = ids.len();
    if t == 0 {
        return Err(AnalysisError::NoTraces);
    }
    let vocab = baseline_logits.len() / t;
    if vocab == 0 || baseline_logits.len() != t * vocab || intervened_logits.len() != t * vocab {
        return Err(mismatch(format!(
            "{} and {} logits for {t} positions",
            baseline_logits.len(),
            intervened_logits.len()
        )));
    }
    let layer_ids = |tr: &Trace| tr.moe_layers.iter().map(|l| l.layer).collect::<Vec<_>>();
    if layer_ids(baseline) != layer_ids(intervened) {
        return Err(mismatch("the runs have different MoE layers".into()));
    }

    let mut positions = Vec::with_capacity(t);
    let (mut log_prob_baseline, mut log_prob_intervened) = (0f64, 0f64);
    for (position, (p, q)) in baseline_logits
        .chunks_exact(vocab)
        .zip(intervened_logits.chunks_exact(vocab))
        .enumerate()
    {
        let next = ids.get(position + 1).map(|&id| id as usize);
        let logprob = |l: &[f32]| next.map(|n| f64::from(l[n]) - logsumexp(l));
        let (lb, li) = (logprob(p), logprob(q));
        log_prob_baseline += lb.unwrap_or(0.0);
        log_prob_intervened += li.unwrap_or(0.0);
        positions.push(PositionEffect {
            position,
            token: baseline.tokens[position].text.clone(),
            kl_nats: kl_of_logits(p, q).unwrap_or(0.0),
            top1_baseline: argmax(p),
            top1_intervened: argmax(q),
            next_logprob_baseline: lb,
            next_logprob_intervened: li,
        });
    }

    let mut rerouted_any = vec![false; t];
    let mut moe_layers = Vec::with_capacity(baseline.moe_layers.len());
    for (a, b) in baseline.moe_layers.iter().zip(&intervened.moe_layers) {
        if a.topk_ids.rows() != t || b.topk_ids.rows() != t {
            return Err(AnalysisError::Malformed {
                trace: 0,
                layer: a.layer,
                problem: "routing was not captured for every token".into(),
            });
        }
        let (mut tokens_rerouted, mut top1_changed) = (0, 0);
        for (token, any) in rerouted_any.iter_mut().enumerate() {
            let (ra, rb) = (a.topk_ids.row(token), b.topk_ids.row(token));
            if ra.len() != rb.len() || ra.iter().any(|e| !rb.contains(e)) {
                tokens_rerouted += 1;
                *any = true;
            }
            if ra.first() != rb.first() {
                top1_changed += 1;
            }
        }
        moe_layers.push(LayerRoutingChange {
            layer: a.layer,
            tokens_rerouted,
            top1_changed,
            assignments_dropped: b.capacity_dropped.len(),
        });
    }

    let kls = positions.iter().map(|p| p.kl_nats);
    let predicted = t - 1;
    let perplexity = |sum: f64| (predicted > 0).then(|| (-sum / predicted as f64).exp());
    Ok(InterventionEffect {
        interventions: intervened
            .interventions
            .as_ref()
            .map_or_else(|| "none".into(), |i| i.describe()),
        num_tokens: t,
        mean_kl_nats: kls.clone().sum::<f64>() / t as f64,
        max_kl_nats: kls.fold(0.0, f64::max),
        top1_changed_positions: positions
            .iter()
            .filter(|p| p.top1_baseline != p.top1_intervened)
            .count(),
        log_prob_baseline: (predicted > 0).then_some(log_prob_baseline),
        log_prob_intervened: (predicted > 0).then_some(log_prob_intervened),
        perplexity_baseline: perplexity(log_prob_baseline),
        perplexity_intervened: perplexity(log_prob_intervened),
        moe_layers,
        tokens_rerouted_any_layer: rerouted_any.iter().filter(|&&r| r).count(),
        positions,
        continuation: None,
    })
}
