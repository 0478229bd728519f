//! The routing rules: how one MoE layer's raw gate logits become the experts each token uses and
//! the weights applied to them. Plain Rust over host `f32` slices, no tensors: the model's MoE
//! block calls [`route`] (the single capture point: what it returns is exactly what the trace
//! records), and analysis uses [`scores`] to turn recorded logits into probabilities without
//! depending on the model.
//!
//! A family's rule is data, a [`RouterSpec`]: which [`RoutingRule`] runs (each a function below),
//! how experts are selected (plain or group-limited top-k, with an optional selection-only bias),
//! how the chosen weights are normalized, and a final scaling factor.

pub mod capacity;
pub mod intervention;
mod rules;
#[cfg(test)]
mod tests;

pub use intervention::{Interventions, LayerIntervention, RouterNoise};

use rayon::prelude::*;
use serde::Serialize;

/// How logits become per-expert scores (also what "router probability" means in analysis).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    /// Softmax over all experts.
    Softmax,
    /// Independent sigmoid per expert.
    Sigmoid,
}

impl Scoring {
    pub fn label(self) -> &'static str {
        match self {
            Scoring::Softmax => "softmax",
            Scoring::Sigmoid => "sigmoid",
        }
    }
}

/// The order of scoring and selection, one function per rule in `rules.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RoutingRule {
    /// Softmax over all experts, then top-k of the (biased) scores; weights are the unbiased
    /// scores (Mixtral, Qwen, OLMoE, DeepSeek-V2, DBRX, ERNIE-4.5).
    SoftmaxTopK,
    /// Sigmoid per expert, then top-k of the (biased) scores (DeepSeek-V3, GLM-4-MoE).
    SigmoidTopK,
    /// Top-k of the raw logits, then softmax over the k chosen logits (GPT-OSS, Granite-MoE).
    TopKSoftmax,
    /// Top-k of the raw logits, then each weight is the sigmoid of its own logit (Llama-4).
    TopKSigmoid,
    /// Phi-3.5-MoE's sparsemixer as transformers evaluates it: top-2, each slot's weight the
    /// chosen expert's share of a softmax over the experts within `2·jitter_eps` (relative) of it.
    SparseMixer { jitter_eps: f32 },
}

impl RoutingRule {
    /// The scoring under which analysis reads the recorded logits as probabilities P_e: the rule's
    /// own scores, or, for rules that select on raw logits, the softmax/sigmoid over all experts
    /// (a monotone map of the logits, so its top-k is the rule's selection).
    pub fn probability_scoring(self) -> Scoring {
        match self {
            RoutingRule::SigmoidTopK | RoutingRule::TopKSigmoid => Scoring::Sigmoid,
            RoutingRule::SoftmaxTopK
            | RoutingRule::TopKSoftmax
            | RoutingRule::SparseMixer { .. } => Scoring::Softmax,
        }
    }

    /// Stable name written into traces (`model.router.rule`).
    pub fn label(self) -> &'static str {
        match self {
            RoutingRule::SoftmaxTopK => "softmax_topk",
            RoutingRule::SigmoidTopK => "sigmoid_topk",
            RoutingRule::TopKSoftmax => "topk_softmax",
            RoutingRule::TopKSigmoid => "topk_sigmoid",
            RoutingRule::SparseMixer { .. } => "sparsemixer",
        }
    }

    /// Whether the rule scores all experts first (and so can use groups, a selection bias and a
    /// normalization); the other rules select on raw logits and define their weights themselves.
    pub fn scores_first(self) -> bool {
        matches!(self, RoutingRule::SoftmaxTopK | RoutingRule::SigmoidTopK)
    }
}

/// How a group's score is derived from its experts' selection scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupScore {
    /// DeepSeek-V2 `group_limited_greedy`: the group's best expert.
    Max,
    /// DeepSeek-V3 / GLM-4-MoE: the sum of the group's two best experts.
    TopTwoSum,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Selection {
    /// Top-k over all experts.
    TopK,
    /// Keep the `topk_groups` best of `num_groups` equal groups (the others masked with −∞), then
    /// top-k inside them.
    GroupLimited {
        num_groups: usize,
        topk_groups: usize,
        group_score: GroupScore,
    },
}

/// What the chosen (unbiased) scores are divided by before the routed scaling factor.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Normalization {
    /// Weights are the scores themselves.
    None,
    /// Divided by their sum (`norm_topk_prob`).
    Sum,
    /// Divided by `max(sum, min)` (ERNIE-4.5's `moe_norm_min`).
    SumClamped { min: f32 },
    /// Divided by their p-norm (DBRX `moe_normalize_expert_weights`).
    PNorm { p: f32 },
}

/// A family's routing rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouterSpec {
    pub num_experts: usize,
    pub top_k: usize,
    pub rule: RoutingRule,
    /// Plain or group-limited top-k (score-first rules only).
    pub selection: Selection,
    pub normalization: Normalization,
    /// Multiplies the weights after normalization (`routed_scaling_factor`; 1 otherwise).
    pub routed_scaling_factor: f32,
    /// Whether a selection-only bias is added to the scores before selecting
    /// (`e_score_correction_bias` of DeepSeek-V3, GLM-4-MoE and ERNIE-4.5).
    pub selection_bias: bool,
}

impl RouterSpec {
    /// A plain top-k router under `rule`, no groups, bias, normalization or scaling.
    pub fn plain(num_experts: usize, top_k: usize, rule: RoutingRule) -> Self {
        Self {
            num_experts,
            top_k,
            rule,
            selection: Selection::TopK,
            normalization: Normalization::None,
            routed_scaling_factor: 1.0,
            selection_bias: false,
        }
    }

    /// Why this spec cannot be routed, if it cannot: the router runs only specs that pass.
    pub fn problem(&self) -> Option<String> {
        let (e, k) = (self.num_experts, self.top_k);
        if e == 0 {
            return Some("the number of experts must be positive".into());
        }
        if k == 0 || k > e {
            return Some(format!(
                "top-k {k} is not in 1..={e} (the number of experts)"
            ));
        }
        if let RoutingRule::SparseMixer { .. } = self.rule {
            if k != 2 {
                return Some(format!(
                    "sparsemixer routing is defined for top-2 only, not top-{k}"
                ));
            }
        }
        if !self.rule.scores_first()
            && (self.selection != Selection::TopK
                || self.selection_bias
                || self.normalization != Normalization::None)
        {
            return Some(format!(
                "{} routing takes no groups, selection bias or normalization",
                self.rule.label()
            ));
        }
        if let Selection::GroupLimited {
            num_groups,
            topk_groups,
            ..
        } = self.selection
        {
            if num_groups == 0 || !e.is_multiple_of(num_groups) {
                return Some(format!(
                    "{num_groups} expert groups do not divide the {e} experts"
                ));
            }
            if topk_groups == 0 || topk_groups > num_groups {
                return Some(format!(
                    "topk_group {topk_groups} is not in 1..={num_groups}"
                ));
            }
            if topk_groups * (e / num_groups) < k {
                return Some(format!(
                    "{topk_groups} groups of {} experts cannot hold top-{k}",
                    e / num_groups
                ));
            }
            let two_sum = matches!(
                self.selection,
                Selection::GroupLimited {
                    group_score: GroupScore::TopTwoSum,
                    ..
                }
            );
            if two_sum && e / num_groups < 2 {
                return Some("groups of one expert have no top-2 sum".into());
            }
        }
        match self.normalization {
            Normalization::PNorm { p } if p.is_nan() || p <= 0.0 => {
                Some(format!("the weight p-norm must be positive, not {p}"))
            }
            _ => None,
        }
    }

    /// The rule in words, for `info` and figure captions.
    pub fn describe(&self) -> String {
        self.describe_with_k(&self.top_k.to_string())
    }

    /// [`RouterSpec::describe`] with k written as `k` (a model whose layers route with different
    /// k: HunYuan).
    pub fn describe_with_k(&self, k: &str) -> String {
        let bias = if self.selection_bias {
            " + selection-only bias"
        } else {
            ""
        };
        let selection = match self.selection {
            Selection::TopK => format!("top-{k}"),
            Selection::GroupLimited {
                num_groups,
                topk_groups,
                group_score,
            } => format!(
                "best {topk_groups} of {num_groups} groups by {}, then top-{k}",
                match group_score {
                    GroupScore::Max => "their best expert",
                    GroupScore::TopTwoSum => "the sum of their two best experts",
                }
            ),
        };
        let normalization = match self.normalization {
            Normalization::None => String::new(),
            Normalization::Sum => ", weights renormalized to sum 1".into(),
            Normalization::SumClamped { min } => {
                format!(", weights divided by max(their sum, {min:e})")
            }
            Normalization::PNorm { p } => format!(", weights divided by their {p}-norm"),
        };
        let scaling = if self.routed_scaling_factor == 1.0 {
            String::new()
        } else {
            format!(", × {}", self.routed_scaling_factor)
        };
        let core = match self.rule {
            RoutingRule::SoftmaxTopK => format!("softmax over {} experts{bias} → {selection}", self.num_experts),
            RoutingRule::SigmoidTopK => format!("sigmoid per expert{bias} → {selection}"),
            RoutingRule::TopKSoftmax => format!("top-{k} of the raw logits → softmax over the {k}"),
            RoutingRule::TopKSigmoid => format!("top-{k} of the raw logits → sigmoid of each chosen logit"),
            RoutingRule::SparseMixer { jitter_eps } => format!(
                "sparsemixer top-2 (each slot: softmax over experts within 2·{jitter_eps} relative of its best)"
            ),
        };
        format!("{core}{normalization}{scaling}")
    }
}

/// The outcome for a batch of tokens: `top_k` experts per token in descending weight order (ties by
/// lower expert id) and the weights applied to them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Routing {
    pub top_k: usize,
    /// `[tokens * top_k]`, row-major.
    pub ids: Vec<u32>,
    /// `[tokens * top_k]`, row-major.
    pub weights: Vec<f32>,
}

impl Routing {
    pub fn num_tokens(&self) -> usize {
        self.ids.len().checked_div(self.top_k).unwrap_or(0)
    }
}

/// Scores of one token under `scoring` (softmax over the row, or element-wise sigmoid), in f32.
pub fn scores(logits: &[f32], scoring: Scoring, out: &mut Vec<f32>) {
    out.clear();
    match scoring {
        Scoring::Softmax => {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            out.extend(logits.iter().map(|&l| (l - max).exp()));
            let sum: f32 = out.iter().sum();
            out.iter_mut().for_each(|p| *p /= sum);
        }
        Scoring::Sigmoid => out.extend(logits.iter().map(|&l| sigmoid(l))),
    }
}

/// p_{t,·} for one token's raw logits, in f64, summing to 1.
pub fn probabilities(logits: &[f32], scoring: Scoring) -> Vec<f64> {
    let mut raw = Vec::with_capacity(logits.len());
    scores(logits, scoring, &mut raw);
    let mut p: Vec<f64> = raw.iter().map(|&x| f64::from(x)).collect();
    // Softmax already sums to 1 up to f32 rounding; sigmoid scores are normalized here (s').
    let sum: f64 = p.iter().sum();
    if sum > 0.0 {
        p.iter_mut().for_each(|x| *x /= sum);
    }
    p
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Routes `logits` (`[tokens, spec.num_experts]`, row-major) under `spec`, which must have passed
/// [`RouterSpec::problem`]. `bias` is the selection-only bias when `spec.selection_bias` is set.
pub fn route(logits: &[f32], bias: Option<&[f32]>, spec: &RouterSpec) -> Routing {
    route_rows(logits, bias, spec, &Adjustments::default())
}

/// Routes like [`route`] with one layer's interventions applied to tokens at positions
/// `first_position..`: the intervened k, ablated experts (logit −∞ and never selected), Gumbel
/// noise on the logits, pinned tokens. The interventions have passed [`Interventions::problem`].
pub fn route_adjusted(
    logits: &[f32],
    bias: Option<&[f32]>,
    spec: &RouterSpec,
    change: &LayerIntervention,
    first_position: usize,
) -> Routing {
    let spec = change.spec.as_ref().unwrap_or(spec);
    let e = spec.num_experts;
    let gumbel = match change.noise {
        Some(RouterNoise::Gumbel { scale, seed }) if scale > 0.0 => Some((scale, seed)),
        _ => None,
    };
    let adjusted: Option<Vec<f32>> = (gumbel.is_some() || !change.ablated.is_empty()).then(|| {
        let mut out = logits.to_vec();
        for (row, values) in out.chunks_exact_mut(e).enumerate() {
            if let Some((scale, seed)) = gumbel {
                let position = first_position + row;
                for (i, v) in values.iter_mut().enumerate() {
                    *v += scale * intervention::keyed_gumbel(seed, change.layer, position, i);
                }
            }
            for &x in &change.ablated {
                values[x as usize] = f32::NEG_INFINITY;
            }
        }
        out
    });
    let tokens = logits.len() / e;
    let forced: Vec<(usize, &[u32])> = change
        .forced
        .iter()
        .filter(|(position, _)| (first_position..first_position + tokens).contains(position))
        .map(|(position, experts)| (position - first_position, experts.as_slice()))
        .collect();
    let adjustments = Adjustments {
        excluded: &change.ablated,
        forced: &forced,
    };
    route_rows(
        adjusted.as_deref().unwrap_or(logits),
        bias,
        spec,
        &adjustments,
    )
}

/// Per-token changes to the rule: experts never selected, and rows whose experts are pinned.
#[derive(Default)]
struct Adjustments<'a> {
    excluded: &'a [u32],
    /// `(row, experts)`.
    forced: &'a [(usize, &'a [u32])],
}

fn route_rows(
    logits: &[f32],
    bias: Option<&[f32]>,
    spec: &RouterSpec,
    adjustments: &Adjustments,
) -> Routing {
    let e = spec.num_experts;
    let k = spec.top_k;
    debug_assert!(spec.problem().is_none(), "{:?}", spec.problem());
    // Tokens are independent: blocks of them are routed on rayon's threads and concatenated in
    // order, so the result is the same as one sequential pass.
    let parts: Vec<Routing> = logits
        .par_chunks(e * TOKENS_PER_TASK)
        .enumerate()
        .map(|(i, block)| route_block(block, i * TOKENS_PER_TASK, bias, spec, adjustments))
        .collect();
    let mut routing = Routing {
        top_k: k,
        ids: Vec::with_capacity(logits.len() / e * k),
        weights: Vec::with_capacity(logits.len() / e * k),
    };
    for part in parts {
        routing.ids.extend(part.ids);
        routing.weights.extend(part.weights);
    }
    routing
}

/// Tokens per parallel routing task: enough work per task to outweigh scheduling.
const TOKENS_PER_TASK: usize = 64;

fn route_block(
    logits: &[f32],
    first_row: usize,
    bias: Option<&[f32]>,
    spec: &RouterSpec,
    adjustments: &Adjustments,
) -> Routing {
    let e = spec.num_experts;
    let k = spec.top_k;
    let tokens = logits.len() / e;
    let mut routing = Routing {
        top_k: k,
        ids: Vec::with_capacity(tokens * k),
        weights: Vec::with_capacity(tokens * k),
    };
    let bias = bias.filter(|_| spec.selection_bias);
    let mut scratch = rules::Scratch::default();
    for (row, values) in logits.chunks_exact(e).enumerate() {
        let forced = adjustments
            .forced
            .iter()
            .find(|(r, _)| *r == first_row + row)
            .map(|(_, experts)| *experts);
        let pairs = rules::route_token(
            values,
            bias,
            spec,
            adjustments.excluded,
            forced,
            &mut scratch,
        );
        // Descending weight order (selection order can differ from weight order when biased).
        pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for &(id, weight) in pairs.iter() {
            routing.ids.push(id);
            routing.weights.push(weight);
        }
    }
    routing
}
