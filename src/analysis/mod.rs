//! Routing metrics: pure functions from [`Trace`]s to [`Metrics`] (DESIGN.md "Metrics"; every JSON
//! name, definition, normalization and source is in docs/metrics.md, kept in sync by a test).
//!
//! No egui and no candle: probabilities come from [`crate::routing::scores`], the router's
//! own plain-Rust scoring function, so there is one implementation of softmax/sigmoid scoring.
//!
//! Pooling: [`aggregate`] treats several traces as one batch. Load, loss and capacity metrics pool
//! the tokens of all traces; sequence-level figures (`seq_aux_loss`, `repeat_top1`, `repeat_top12`,
//! `jaccard_next_layer`) are computed per trace and averaged, so no pair spans two prompts.

pub mod capacity;
pub mod compare;
pub mod corpus;
pub mod effect;
pub mod flips;
pub mod grid;
pub mod health;
pub mod load;
pub mod structure;
pub mod token;

#[cfg(test)]
mod tests;

pub use capacity::capacity;
pub use compare::{compare_runs, RunComparison};
pub use effect::{intervention_effect, Continuations, InterventionEffect};
pub use flips::{routing_flips, LayerFlips, RoutingFlips};
pub use health::Band;
pub use token::{token_metrics, TokenMetrics};

use crate::routing::Scoring;
use crate::trace::{MoeLayerTrace, Trace};
use capacity::Assignment;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::Range;

/// Capacity factor used when none is given (the Switch Transformer's training value).
pub const DEFAULT_CAPACITY_FACTOR: f64 = 1.25;

/// What to analyse and with which capacity.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisOptions {
    /// CF in C = ceil(T·k/E·CF).
    pub capacity_factor: f64,
    /// Tokens of each trace to analyse, clamped to its length (`1..usize::MAX` skips a BOS);
    /// `None` for all.
    pub token_range: Option<Range<usize>>,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self {
            capacity_factor: DEFAULT_CAPACITY_FACTOR,
            token_range: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AnalysisError {
    #[error("no trace to analyse")]
    NoTraces,
    #[error("the capacity factor must be a positive number, not {0}")]
    CapacityFactor(f64),
    #[error("trace {trace}: token range {range} selects none of its {tokens} tokens")]
    EmptyTokenRange {
        trace: usize,
        /// As given: `A..B`, or `A..` for an open end.
        range: String,
        tokens: usize,
    },
    #[error("trace {trace} cannot be pooled with trace 0: {problem}")]
    Mismatch { trace: usize, problem: String },
    #[error("trace {trace}, layer {layer}: {problem}")]
    Malformed {
        trace: usize,
        layer: usize,
        problem: String,
    },
    #[error("trace {trace}: {problem}")]
    Invalid { trace: usize, problem: String },
}

/// Everything `moescope stats --json` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metrics {
    pub moe_layers: Vec<LayerMetrics>,
    /// transformers' `load_balancing_loss_func` over all MoE layers (k at perfect balance);
    /// `None` for sigmoid routers or without router logits.
    pub hf_aux_loss: Option<f64>,
    /// Each per-layer scalar metric averaged over the MoE layers where it is defined, by its
    /// per-layer name (`None` where no layer defines it).
    pub layer_mean: BTreeMap<&'static str, Option<f64>>,
    pub num_traces: usize,
    /// Tokens analysed, over all traces (after the token range).
    pub num_tokens: usize,
    pub num_experts: usize,
    /// The largest k of any MoE layer (all of them but HunYuan's route with one k); each
    /// layer's own is [`LayerMetrics::top_k`].
    pub top_k: usize,
    /// The scoring the probabilities use: `softmax`, `sigmoid`, or empty when the trace has none.
    pub scoring: String,
    /// The trace's routing rule (`softmax_topk`, `topk_softmax`, …; empty for older traces).
    pub routing_rule: String,
    /// What P_e (and every probability-based metric) means under this rule, in words.
    pub probability_meaning: String,
    pub capacity_factor: f64,
}

/// Metrics of one MoE layer (names as in DESIGN.md "Metrics"; `None` serializes as null).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerMetrics {
    /// Transformer block index.
    pub layer: usize,
    /// Experts each token chose in this layer.
    pub top_k: usize,
    // Load.
    pub expert_counts: Vec<u64>,
    pub load_fraction: Vec<f64>,
    pub cv: f64,
    pub max_vio: f64,
    pub gini: f64,
    pub jain: f64,
    pub load_entropy: f64,
    pub dead_experts: usize,
    // Per token, averaged (need router logits).
    pub router_entropy_mean: Option<f64>,
    pub topk_mass_mean: Option<f64>,
    pub margin_mean: Option<f64>,
    // Losses.
    pub switch_loss: Option<f64>,
    pub z_loss: Option<f64>,
    pub seq_aux_loss: Option<f64>,
    pub usage_std: f64,
    pub prob_var: Option<f64>,
    pub usage_kl: f64,
    // Capacity.
    pub capacity: usize,
    pub dropped_fraction: f64,
    /// `[token, expert]` pairs dropped when each expert keeps its first C assignments.
    pub dropped_tokens_position: Vec<[usize; 2]>,
    /// `[token, expert]` pairs dropped when each expert keeps its C most probable assignments.
    pub dropped_tokens_probs: Option<Vec<[usize; 2]>>,
    // Structure.
    pub repeat_top1: Option<f64>,
    pub repeat_top12: Option<f64>,
    /// E×E, row a: P(b | a).
    pub coactivation: Vec<Vec<f64>>,
    pub jaccard_next_layer: Option<f64>,
    // Health.
    pub utilization_balance: f64,
    pub utilization_band: Band,
    pub expert_time_spread: Option<f64>,
    pub expert_time_band: Option<Band>,
}

impl LayerMetrics {
    /// Every scalar metric by its JSON name: what `layer_mean` averages and tables show.
    pub fn scalars(&self) -> Vec<(&'static str, Option<f64>)> {
        vec![
            ("cv", Some(self.cv)),
            ("max_vio", Some(self.max_vio)),
            ("gini", Some(self.gini)),
            ("jain", Some(self.jain)),
            ("load_entropy", Some(self.load_entropy)),
            ("dead_experts", Some(self.dead_experts as f64)),
            ("router_entropy_mean", self.router_entropy_mean),
            ("topk_mass_mean", self.topk_mass_mean),
            ("margin_mean", self.margin_mean),
            ("switch_loss", self.switch_loss),
            ("z_loss", self.z_loss),
            ("seq_aux_loss", self.seq_aux_loss),
            ("usage_std", Some(self.usage_std)),
            ("prob_var", self.prob_var),
            ("usage_kl", Some(self.usage_kl)),
            ("capacity", Some(self.capacity as f64)),
            ("dropped_fraction", Some(self.dropped_fraction)),
            ("repeat_top1", self.repeat_top1),
            ("repeat_top12", self.repeat_top12),
            ("jaccard_next_layer", self.jaccard_next_layer),
            ("utilization_balance", Some(self.utilization_balance)),
            ("expert_time_spread", self.expert_time_spread),
        ]
    }
}

/// Metrics of one trace.
pub fn analyze(trace: &Trace, options: &AnalysisOptions) -> Result<Metrics, AnalysisError> {
    aggregate(&[trace], options)
}

/// Metrics of several traces of one model pooled as a batch (see the module docs for what is
/// pooled and what is averaged). Token indices in `dropped_tokens_*` count through the traces'
/// full token lists one after another, so for one trace they are its own token indices.
pub fn aggregate(traces: &[&Trace], options: &AnalysisOptions) -> Result<Metrics, AnalysisError> {
    let first = *traces.first().ok_or(AnalysisError::NoTraces)?;
    let cf = options.capacity_factor;
    if !(cf.is_finite() && cf > 0.0) {
        return Err(AnalysisError::CapacityFactor(cf));
    }
    for (i, trace) in traces.iter().enumerate() {
        validate(trace, i)?;
        compatible(first, trace, i)?;
    }
    let mut parts = Vec::with_capacity(traces.len());
    let mut offset = 0;
    for (i, trace) in traces.iter().enumerate() {
        let tokens = trace_len(trace);
        let range = match &options.token_range {
            Some(r) => r.start.min(tokens)..r.end.min(tokens),
            None => 0..tokens,
        };
        if range.is_empty() {
            let range = match &options.token_range {
                Some(r) if r.end == usize::MAX => format!("{}..", r.start),
                Some(r) => format!("{}..{}", r.start, r.end),
                None => format!("0..{tokens}"),
            };
            return Err(AnalysisError::EmptyTokenRange {
                trace: i,
                range,
                tokens,
            });
        }
        parts.push((*trace, range, offset));
        offset += tokens;
    }

    let scoring = token::scoring(&first.model.router);
    let num_experts = first.model.num_experts;
    let num_layers = first.moe_layers.len();
    let layer_k: Vec<usize> = first.moe_layers.iter().map(|l| l.topk_ids.cols()).collect();
    let top_k = layer_k.iter().copied().max().unwrap_or(first.model.top_k);
    // transformers' loss pools all layers under one k; layers routing with different k
    // (HunYuan) have no such loss.
    let one_k = layer_k.iter().all(|&k| k == top_k);
    let seqs_of = |li: usize| -> Vec<Seq> {
        parts
            .iter()
            .map(|(trace, range, offset)| Seq {
                layer: &trace.moe_layers[li],
                range: range.clone(),
                offset: *offset,
            })
            .collect()
    };
    let mut hf = (scoring == Some(Scoring::Softmax) && num_layers > 0 && one_k)
        .then(|| HfAuxLoss::new(num_experts, top_k));
    let mut layers = Vec::with_capacity(num_layers);
    for li in 0..num_layers {
        let next = (li + 1 < num_layers).then(|| seqs_of(li + 1));
        layers.push(layer_metrics(
            &seqs_of(li),
            next.as_deref(),
            num_experts,
            scoring,
            cf,
            &mut hf,
        ));
    }
    Ok(Metrics {
        hf_aux_loss: hf.and_then(|h| h.value()),
        layer_mean: layer_mean(&layers),
        moe_layers: layers,
        num_traces: traces.len(),
        num_tokens: parts.iter().map(|(_, r, _)| r.len()).sum(),
        num_experts,
        top_k,
        scoring: first.model.router.scoring.clone(),
        routing_rule: first.model.router.rule.clone(),
        probability_meaning: token::probability_meaning(&first.model.router),
        capacity_factor: cf,
    })
}

/// One trace's tokens at one MoE layer: rows `range` of `layer`, whose token 0 has pooled index
/// `offset`.
struct Seq<'a> {
    layer: &'a MoeLayerTrace,
    range: Range<usize>,
    offset: usize,
}

impl<'a> Seq<'a> {
    fn ids(&self) -> Vec<&'a [u32]> {
        let layer = self.layer;
        self.range.clone().map(|t| layer.topk_ids.row(t)).collect()
    }

    fn has_logits(&self) -> bool {
        !self.layer.router_logits.is_empty()
    }

    fn probabilities(&self, scoring: Scoring) -> Vec<Vec<f64>> {
        self.range
            .clone()
            .map(|t| token::probabilities(self.layer.router_logits.row(t), scoring))
            .collect()
    }
}

fn layer_metrics(
    seqs: &[Seq],
    next: Option<&[Seq]>,
    num_experts: usize,
    scoring: Option<Scoring>,
    capacity_factor: f64,
    hf: &mut Option<HfAuxLoss>,
) -> LayerMetrics {
    let e = num_experts;
    let k = seqs[0].layer.topk_ids.cols();
    let seq_ids: Vec<Vec<&[u32]>> = seqs.iter().map(Seq::ids).collect();
    let pooled: Vec<Assignment> = seqs
        .iter()
        .zip(&seq_ids)
        .flat_map(|(s, ids)| {
            ids.iter().zip(s.range.clone()).map(|(&ids, t)| Assignment {
                token: s.offset + t,
                ids,
            })
        })
        .collect();
    let tokens = pooled.len();
    let assignments = tokens * k;

    // Load.
    let expert_counts = count(pooled.iter().map(|a| a.ids), e);
    let counts: Vec<f64> = expert_counts.iter().map(|&c| c as f64).collect();
    let load_fraction: Vec<f64> = counts.iter().map(|c| c / assignments as f64).collect();
    let load_entropy = load::load_entropy(&load_fraction);

    // Everything that needs p_{t,e}; `None` when any trace lacks logits or the scoring is unknown.
    let all_logits = seqs.iter().all(Seq::has_logits);
    let probs: Option<Vec<Vec<Vec<f64>>>> = scoring
        .filter(|_| all_logits)
        .map(|s| seqs.iter().map(|seq| seq.probabilities(s)).collect());
    let pooled_probs: Option<Vec<Vec<f64>>> = probs.as_ref().map(|p| p.concat());
    let mean_probs = pooled_probs.as_ref().map(|p| column_means(p, e));
    let per_token: Option<Vec<TokenMetrics>> = pooled_probs.as_ref().map(|p| {
        p.iter()
            .zip(&pooled)
            .map(|(p, a)| token::metrics_of(p, a.ids))
            .collect()
    });
    let z_loss = all_logits.then(|| {
        let squares: Vec<f64> = seqs
            .iter()
            .flat_map(|s| {
                s.range
                    .clone()
                    .map(|t| token::logsumexp(s.layer.router_logits.row(t)).powi(2))
            })
            .collect();
        load::mean(&squares)
    });
    let seq_aux_loss = probs.as_ref().map(|p| {
        let per_seq: Vec<f64> = seq_ids
            .iter()
            .zip(p)
            .map(|(ids, p)| seq_aux_loss(ids, p, e, k))
            .collect();
        load::mean(&per_seq)
    });
    match (hf.as_mut(), &pooled_probs) {
        (Some(acc), Some(p)) => acc.add(p),
        (Some(_), None) => *hf = None,
        _ => {}
    }

    // Capacity.
    let capacity = capacity::capacity(tokens, k, e, capacity_factor);

    // Structure.
    let next_ids: Option<Vec<Vec<&[u32]>>> = next.map(|n| n.iter().map(Seq::ids).collect());
    let jaccard_next_layer = next_ids.and_then(|next| {
        mean_defined(
            seq_ids
                .iter()
                .zip(&next)
                .map(|(a, b)| structure::mean_jaccard(a, b)),
        )
    });
    let all_ids: Vec<&[u32]> = pooled.iter().map(|a| a.ids).collect();

    // Health: per-expert time spread, when the engine timed experts.
    let expert_time_spread = per_expert_time_ms(seqs).and_then(|t| health::expert_time_spread(&t));

    LayerMetrics {
        layer: seqs[0].layer.layer,
        top_k: k,
        cv: load::cv(&counts),
        max_vio: load::max_vio(&counts),
        gini: load::gini(&counts),
        jain: load::jain(&counts),
        load_entropy,
        dead_experts: expert_counts.iter().filter(|&&c| c == 0).count(),
        router_entropy_mean: per_token
            .as_ref()
            .map(|m| load::mean(&m.iter().map(|m| m.entropy_nats).collect::<Vec<_>>())),
        topk_mass_mean: per_token
            .as_ref()
            .map(|m| load::mean(&m.iter().map(|m| m.topk_mass).collect::<Vec<_>>())),
        margin_mean: per_token
            .as_ref()
            .and_then(|m| mean_defined(m.iter().map(|m| m.margin))),
        switch_loss: mean_probs
            .as_ref()
            .map(|p| e as f64 * load_fraction.iter().zip(p).map(|(f, p)| f * p).sum::<f64>()),
        z_loss,
        seq_aux_loss,
        usage_std: load::population_std(&load_fraction),
        prob_var: mean_probs.as_deref().map(load::population_variance),
        usage_kl: load::usage_kl(&load_fraction),
        capacity,
        dropped_fraction: capacity::dropped_fraction(&expert_counts, capacity, assignments),
        dropped_tokens_position: capacity::dropped_by_position(&pooled, e, capacity),
        dropped_tokens_probs: pooled_probs
            .as_ref()
            .map(|p| capacity::dropped_by_probs(&pooled, p, e, capacity)),
        repeat_top1: mean_defined(seq_ids.iter().map(|ids| structure::repeat_top1(ids))),
        repeat_top12: mean_defined(seq_ids.iter().map(|ids| structure::repeat_top12(ids))),
        coactivation: structure::coactivation(&structure::coactivation_counts(&all_ids, e)),
        jaccard_next_layer,
        utilization_balance: load_entropy,
        utilization_band: health::utilization_band(load_entropy),
        expert_time_spread,
        expert_time_band: expert_time_spread.map(health::expert_time_band),
        expert_counts,
        load_fraction,
    }
}

/// Per-expert compute time summed over the pooled traces (whole traces: timings are not kept per
/// token, so a token range does not narrow them); `None` when no trace recorded expert times.
fn per_expert_time_ms(seqs: &[Seq]) -> Option<Vec<f64>> {
    let mut total: Option<Vec<f64>> = None;
    for seq in seqs {
        let times = &seq.layer.expert_timings_ms;
        if times.is_empty() {
            continue;
        }
        let sum = total.get_or_insert_with(|| vec![0.0; times.len()]);
        sum.iter_mut().zip(times).for_each(|(s, t)| *s += t);
    }
    total
}

/// DeepSeek's sequence-wise balance loss without α: Σ_e f_e·P_e with f_e = E/(k·T)·c_e and P_e
/// the mean normalized score (DeepSeek-V3 eq. 17–20); 1 at perfect balance.
fn seq_aux_loss(ids: &[&[u32]], probs: &[Vec<f64>], e: usize, k: usize) -> f64 {
    let t = ids.len() as f64;
    let counts = count(ids.iter().copied(), e);
    let p = column_means(probs, e);
    counts
        .iter()
        .zip(&p)
        .map(|(&c, p)| e as f64 / (k as f64 * t) * c as f64 * p)
        .sum()
}

/// transformers' `load_balancing_loss_func` (Mixtral, Qwen2/3-MoE, OLMoE), accumulated layer by
/// layer: top-k of the softmax per row, then E·Σ_e (count_e/rows)·(prob_sum_e/rows) with rows
/// summed over all layers. It re-selects top-k from the probabilities as transformers does.
struct HfAuxLoss {
    top_k: usize,
    counts: Vec<f64>,
    prob_sums: Vec<f64>,
    rows: usize,
}

impl HfAuxLoss {
    fn new(num_experts: usize, top_k: usize) -> Self {
        Self {
            top_k,
            counts: vec![0.0; num_experts],
            prob_sums: vec![0.0; num_experts],
            rows: 0,
        }
    }

    fn add(&mut self, probs: &[Vec<f64>]) {
        let mut order = Vec::new();
        for p in probs {
            order.clear();
            order.extend(0..p.len());
            // torch.topk; ties to the lower index like the router.
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            for &e in order.iter().take(self.top_k) {
                self.counts[e] += 1.0;
            }
            self.prob_sums.iter_mut().zip(p).for_each(|(s, p)| *s += p);
            self.rows += 1;
        }
    }

    fn value(&self) -> Option<f64> {
        if self.rows == 0 {
            return None;
        }
        let rows = self.rows as f64;
        let sum: f64 = self
            .counts
            .iter()
            .zip(&self.prob_sums)
            .map(|(c, p)| (c / rows) * (p / rows))
            .sum();
        Some(sum * self.counts.len() as f64)
    }
}

fn count<'a>(rows: impl Iterator<Item = &'a [u32]>, num_experts: usize) -> Vec<u64> {
    let mut counts = vec![0u64; num_experts];
    for row in rows {
        for &e in row {
            counts[e as usize] += 1;
        }
    }
    counts
}

/// Mean of each column of `rows` (each `cols` long).
fn column_means(rows: &[Vec<f64>], cols: usize) -> Vec<f64> {
    let mut sums = vec![0.0; cols];
    for row in rows {
        sums.iter_mut().zip(row).for_each(|(s, x)| *s += x);
    }
    let n = rows.len().max(1) as f64;
    sums.into_iter().map(|s| s / n).collect()
}

/// Mean of the defined values, `None` when none is.
fn mean_defined(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let defined: Vec<f64> = values.flatten().collect();
    (!defined.is_empty()).then(|| load::mean(&defined))
}

fn layer_mean(layers: &[LayerMetrics]) -> BTreeMap<&'static str, Option<f64>> {
    let mut columns: BTreeMap<&'static str, Vec<Option<f64>>> = BTreeMap::new();
    for layer in layers {
        for (name, value) in layer.scalars() {
            columns.entry(name).or_default().push(value);
        }
    }
    columns
        .into_iter()
        .map(|(name, values)| (name, mean_defined(values.into_iter())))
        .collect()
}

/// Tokens of a trace: the rows of its MoE layers (all equal after [`validate`]).
fn trace_len(trace: &Trace) -> usize {
    trace
        .moe_layers
        .first()
        .map_or(trace.tokens.len(), |l| l.topk_ids.rows())
}

/// Checks what the metrics rely on, so the arithmetic below cannot index out of bounds or divide
/// by zero: the trace's own consistency ([`Trace::validate`], which `read_json` has usually run
/// already; traces built in memory arrive here unchecked). Layers may route with different k
/// (HunYuan); each layer's metrics use its own.
fn validate(trace: &Trace, index: usize) -> Result<(), AnalysisError> {
    trace.validate().map_err(|problem| AnalysisError::Invalid {
        trace: index,
        problem,
    })
}

/// Whether `trace` can be pooled with `first`: same experts, MoE layers, top-k and scoring.
fn compatible(first: &Trace, trace: &Trace, index: usize) -> Result<(), AnalysisError> {
    let fail = |problem: String| {
        Err(AnalysisError::Mismatch {
            trace: index,
            problem,
        })
    };
    if trace.model.num_experts != first.model.num_experts {
        return fail(format!(
            "{} experts, not {}",
            trace.model.num_experts, first.model.num_experts
        ));
    }
    let layers = |t: &Trace| t.moe_layers.iter().map(|l| l.layer).collect::<Vec<_>>();
    if layers(trace) != layers(first) {
        return fail(format!(
            "MoE layers {:?}, not {:?}",
            layers(trace),
            layers(first)
        ));
    }
    let k = |t: &Trace| {
        t.moe_layers
            .iter()
            .map(|l| l.topk_ids.cols())
            .collect::<Vec<_>>()
    };
    if k(trace) != k(first) {
        return fail(format!("top-k {:?}, not {:?}", k(trace), k(first)));
    }
    if trace.model.router.scoring != first.model.router.scoring {
        return fail(format!(
            "scoring {:?}, not {:?}",
            trace.model.router.scoring, first.model.router.scoring
        ));
    }
    Ok(())
}
