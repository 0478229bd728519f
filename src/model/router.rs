//! The one router. Every family's routing rule is a [`RouterSpec`]; [`route`] turns raw gate logits
//! into the experts and weights the MoE block applies. It is also the single capture point: what it
//! returns is exactly what goes into the trace.
//!
//! Routing runs on the host over the `[tokens, experts]` logits (small next to any expert matmul),
//! so the rule is plain, testable Rust whatever the compute device.

use rayon::prelude::*;
use serde::Serialize;

/// How logits become per-expert scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    /// Softmax over all experts (Mixtral, Qwen, OLMoE, DeepSeek-V2).
    Softmax,
    /// Independent sigmoid per expert (DeepSeek-V3).
    Sigmoid,
}

/// How a group's score is derived from its experts' selection scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupScore {
    /// DeepSeek-V2 `group_limited_greedy`: the group's best expert.
    Max,
    /// DeepSeek-V3: the sum of the group's two best experts.
    TopTwoSum,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Selection {
    /// Top-k over all experts.
    TopK,
    /// Keep the `topk_groups` best of `num_groups` equal groups, then top-k inside them.
    GroupLimited {
        num_groups: usize,
        topk_groups: usize,
        group_score: GroupScore,
    },
}

/// A family's routing rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouterSpec {
    pub num_experts: usize,
    pub top_k: usize,
    pub scoring: Scoring,
    pub selection: Selection,
    /// Divide the chosen scores by their sum (`norm_topk_prob`).
    pub renormalize: bool,
    /// Multiplies the weights after renormalization (DeepSeek `routed_scaling_factor`; 1 otherwise).
    pub routed_scaling_factor: f32,
    /// Whether the gate carries a selection-only bias (DeepSeek-V3 `e_score_correction_bias`).
    pub selection_bias: bool,
}

/// The outcome for a batch of tokens: `top_k` experts per token in descending weight order (ties by
/// lower expert id) and the weights multiplied into their outputs.
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
        Scoring::Sigmoid => out.extend(logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp()))),
    }
}

/// Indices of the `k` largest values (ties: lower index first), in descending value order.
fn top_k_indices(values: &[f32], k: usize, out: &mut Vec<usize>) {
    out.clear();
    out.extend(0..values.len());
    // A total order (ties by index), so partial selection then sorting the k winners gives exactly
    // what a full sort would, in O(E + k log k) instead of O(E log E) per token.
    let descending = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    if k < out.len() {
        out.select_nth_unstable_by(k, descending);
        out.truncate(k);
    }
    out.sort_by(descending);
}

/// Routes `logits` (`[tokens, spec.num_experts]`, row-major) under `spec`.
/// `bias` is the selection-only bias when `spec.selection_bias` is set.
pub fn route(logits: &[f32], bias: Option<&[f32]>, spec: &RouterSpec) -> Routing {
    let e = spec.num_experts;
    let k = spec.top_k;
    // Tokens are independent: blocks of them are routed on rayon's threads and concatenated in
    // order, so the result is the same as one sequential pass.
    let parts: Vec<Routing> = logits
        .par_chunks(e * TOKENS_PER_TASK)
        .map(|block| route_block(block, bias, spec))
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

fn route_block(logits: &[f32], bias: Option<&[f32]>, spec: &RouterSpec) -> Routing {
    let e = spec.num_experts;
    let k = spec.top_k;
    let tokens = logits.len() / e;
    let mut routing = Routing {
        top_k: k,
        ids: Vec::with_capacity(tokens * k),
        weights: Vec::with_capacity(tokens * k),
    };
    let (mut score, mut choice, mut order, mut group_scores, mut group_order) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut pairs: Vec<(u32, f32)> = Vec::with_capacity(k);
    for row in logits.chunks_exact(e) {
        scores(row, spec.scoring, &mut score);
        // Selection may be biased; weights never are (DeepSeek-V3: bias "for selection only").
        choice.clear();
        choice.extend_from_slice(&score);
        if let Some(b) = bias.filter(|_| spec.selection_bias) {
            choice.iter_mut().zip(b).for_each(|(c, b)| *c += b);
        }
        if let Selection::GroupLimited {
            num_groups,
            topk_groups,
            group_score,
        } = spec.selection
        {
            let size = e / num_groups;
            group_scores.clear();
            for g in choice.chunks_exact(size) {
                group_scores.push(match group_score {
                    GroupScore::Max => g.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                    GroupScore::TopTwoSum => {
                        top_k_indices(g, 2, &mut order);
                        order.iter().map(|&i| g[i]).sum()
                    }
                });
            }
            top_k_indices(&group_scores, topk_groups, &mut group_order);
            for (g, chunk) in choice.chunks_exact_mut(size).enumerate() {
                if !group_order.contains(&g) {
                    chunk.fill(f32::NEG_INFINITY);
                }
            }
        }
        top_k_indices(&choice, k, &mut order);
        pairs.clear();
        pairs.extend(order.iter().map(|&i| (i as u32, score[i])));
        if spec.renormalize {
            let sum: f32 = pairs.iter().map(|p| p.1).sum();
            pairs.iter_mut().for_each(|p| p.1 /= sum);
        }
        pairs
            .iter_mut()
            .for_each(|p| p.1 *= spec.routed_scaling_factor);
        // Descending weight order (selection order can differ from weight order when biased).
        pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for &(id, weight) in &pairs {
            routing.ids.push(id);
            routing.weights.push(weight);
        }
    }
    routing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scoring: Scoring, selection: Selection, k: usize, e: usize) -> RouterSpec {
        RouterSpec {
            num_experts: e,
            top_k: k,
            scoring,
            selection,
            renormalize: false,
            routed_scaling_factor: 1.0,
            selection_bias: false,
        }
    }

    #[test]
    fn softmax_top2_renormalized() {
        let mut s = spec(Scoring::Softmax, Selection::TopK, 2, 4);
        s.renormalize = true;
        let r = route(&[0.0, 2.0, 1.0, -1.0], None, &s);
        assert_eq!(r.ids, vec![1, 2]);
        let e = std::f32::consts::E;
        assert!((r.weights[0] - e / (e + 1.0)).abs() < 1e-6);
        assert!((r.weights.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn bias_changes_selection_not_weights() {
        let mut s = spec(Scoring::Sigmoid, Selection::TopK, 1, 3);
        s.selection_bias = true;
        let r = route(&[1.0, 0.0, -1.0], Some(&[0.0, 2.0, 0.0]), &s);
        assert_eq!(r.ids, vec![1]);
        assert!(
            (r.weights[0] - 0.5).abs() < 1e-6,
            "weight is the unbiased sigmoid"
        );
    }

    #[test]
    fn group_limited_excludes_losing_groups() {
        // Groups {0,1} and {2,3}; group 1 wins by top-2 sum although expert 0 is the single best.
        let s = spec(
            Scoring::Sigmoid,
            Selection::GroupLimited {
                num_groups: 2,
                topk_groups: 1,
                group_score: GroupScore::TopTwoSum,
            },
            2,
            4,
        );
        let r = route(&[3.0, -3.0, 2.0, 2.0], None, &s);
        assert_eq!(
            r.ids
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>(),
            [2, 3].into()
        );
        let mut max = s.clone();
        max.selection = Selection::GroupLimited {
            num_groups: 2,
            topk_groups: 1,
            group_score: GroupScore::Max,
        };
        assert_eq!(route(&[3.0, -3.0, 2.0, 2.0], None, &max).ids, vec![0, 1]);
    }

    #[test]
    fn scaling_applies_after_renormalization() {
        let mut s = spec(Scoring::Softmax, Selection::TopK, 2, 2);
        s.renormalize = true;
        s.routed_scaling_factor = 2.5;
        let r = route(&[0.3, 0.1], None, &s);
        assert!((r.weights.iter().sum::<f32>() - 2.5).abs() < 1e-6);
    }

    /// Partial selection must pick and order exactly what a full sort does, ties included, and
    /// routing in parallel blocks must equal routing token by token.
    #[test]
    fn partial_top_k_and_blocks_match_the_plain_definition() {
        let values: Vec<f32> = (0..40).map(|i| ((i * 7919) % 13) as f32 * 0.5).collect();
        for k in [1, 3, 8, 13, 40] {
            let mut full: Vec<usize> = (0..values.len()).collect();
            full.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
            full.truncate(k);
            let mut got = Vec::new();
            top_k_indices(&values, k, &mut got);
            assert_eq!(got, full, "k = {k}");
        }
        let s = spec(Scoring::Softmax, Selection::TopK, 3, 8);
        let logits: Vec<f32> = (0..8 * 150).map(|i| ((i * 31) % 17) as f32 * 0.1).collect();
        let whole = route(&logits, None, &s);
        let mut one_by_one = Routing::default();
        for row in logits.chunks_exact(8) {
            let r = route_block(row, None, &s);
            one_by_one.ids.extend(r.ids);
            one_by_one.weights.extend(r.weights);
        }
        assert_eq!(
            (whole.ids, whole.weights),
            (one_by_one.ids, one_by_one.weights)
        );
    }
}
