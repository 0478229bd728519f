//! Hand-worked routing cases, one or more per rule.

use super::rules::top_k_indices;
use super::*;

fn spec(rule: RoutingRule, selection: Selection, k: usize, e: usize) -> RouterSpec {
    RouterSpec {
        selection,
        ..RouterSpec::plain(e, k, rule)
    }
}

#[test]
fn softmax_top2_renormalized() {
    let mut s = spec(RoutingRule::SoftmaxTopK, Selection::TopK, 2, 4);
    s.normalization = Normalization::Sum;
    let r = route(&[0.0, 2.0, 1.0, -1.0], None, &s);
    assert_eq!(r.ids, vec![1, 2]);
    let e = std::f32::consts::E;
    assert!((r.weights[0] - e / (e + 1.0)).abs() < 1e-6);
    assert!((r.weights.iter().sum::<f32>() - 1.0).abs() < 1e-6);
}

#[test]
fn bias_changes_selection_not_weights() {
    let mut s = spec(RoutingRule::SigmoidTopK, Selection::TopK, 1, 3);
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
        RoutingRule::SigmoidTopK,
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
    let mut s = spec(RoutingRule::SoftmaxTopK, Selection::TopK, 2, 2);
    s.normalization = Normalization::Sum;
    s.routed_scaling_factor = 2.5;
    let r = route(&[0.3, 0.1], None, &s);
    assert!((r.weights.iter().sum::<f32>() - 2.5).abs() < 1e-6);
}

/// GPT-OSS / Granite: softmax over the two chosen logits only.
#[test]
fn topk_then_softmax_normalizes_over_the_chosen() {
    let s = spec(RoutingRule::TopKSoftmax, Selection::TopK, 2, 4);
    let r = route(&[0.5, 3.0, 2.0, -1.0], None, &s);
    assert_eq!(r.ids, vec![1, 2]);
    let w1 = 1.0 / (1.0 + (-1.0f32).exp());
    assert!((r.weights[0] - w1).abs() < 1e-6, "{:?}", r.weights);
    assert!((r.weights[1] - (1.0 - w1)).abs() < 1e-6);
}

/// Llama-4: each chosen weight is the sigmoid of its own logit; nothing sums to one.
#[test]
fn topk_then_sigmoid_scores_each_logit() {
    let s = spec(RoutingRule::TopKSigmoid, Selection::TopK, 2, 3);
    let r = route(&[-2.0, 1.0, 0.0], None, &s);
    assert_eq!(r.ids, vec![1, 2]);
    assert!((r.weights[0] - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-6);
    assert!((r.weights[1] - 0.5).abs() < 1e-6);
}

/// Sparsemixer by hand: logits [2, 1.9, 0, −1], eps 0.05 (threshold 0.1 relative).
/// Slot 1: max 2 at expert 0; gaps (2−s)/max(|s|,2) = 0, 0.05, 1, 1.5 → experts 0 and 1 kept;
/// weight = e^2 / (e^2 + e^1.9). Slot 2: expert 0 removed, max 1.9 at expert 1; gaps against the
/// original logits (1.9−s)/max(|s|,1.9) = −0.05, 0, 1, 1.53 → experts 0 (already −∞) and 1
/// kept: weight 1.
#[test]
fn sparsemixer_matches_the_hand_computation() {
    let s = spec(
        RoutingRule::SparseMixer { jitter_eps: 0.05 },
        Selection::TopK,
        2,
        4,
    );
    let r = route(&[2.0, 1.9, 0.0, -1.0], None, &s);
    assert_eq!(r.ids, vec![1, 0], "descending weight order");
    let w0 = 2.0f32.exp() / (2.0f32.exp() + 1.9f32.exp());
    assert!((r.weights[1] - w0).abs() < 1e-6, "{:?}", r.weights);
    assert!((r.weights[0] - 1.0).abs() < 1e-6);
    // A wide threshold keeps every expert: slot 1 is then the plain softmax probability.
    let wide = spec(
        RoutingRule::SparseMixer { jitter_eps: 10.0 },
        Selection::TopK,
        2,
        4,
    );
    let r = route(&[2.0, 1.9, 0.0, -1.0], None, &wide);
    let mut p = Vec::new();
    scores(&[2.0, 1.9, 0.0, -1.0], Scoring::Softmax, &mut p);
    let slot1 = r.ids.iter().position(|&id| id == 0).unwrap();
    assert!(
        (r.weights[slot1] - p[0]).abs() < 1e-6,
        "{:?} {p:?}",
        r.weights
    );
}

/// ERNIE's clamp only acts on tiny sums; DBRX's p-norm with p = 2.
#[test]
fn clamped_and_p_norm_normalizations() {
    let mut s = spec(RoutingRule::SoftmaxTopK, Selection::TopK, 2, 2);
    s.normalization = Normalization::SumClamped { min: 2.0 };
    let r = route(&[0.0, 0.0], None, &s);
    assert!((r.weights[0] - 0.25).abs() < 1e-6, "0.5 / max(1, 2)");
    s.normalization = Normalization::PNorm { p: 2.0 };
    let r = route(&[0.0, 0.0], None, &s);
    assert!((r.weights[0] - 0.5f32 / 0.5f32.hypot(0.5)).abs() < 1e-6);
}

#[test]
fn invalid_specs_are_named() {
    let e8 = |k| RouterSpec::plain(8, k, RoutingRule::SoftmaxTopK);
    assert!(e8(99).problem().unwrap().contains("1..=8"));
    assert!(e8(0).problem().is_some());
    assert!(e8(8).problem().is_none());
    let mut g = e8(2);
    g.selection = Selection::GroupLimited {
        num_groups: 3,
        topk_groups: 1,
        group_score: GroupScore::Max,
    };
    assert!(g.problem().unwrap().contains("divide"));
    let mut sm = RouterSpec::plain(8, 3, RoutingRule::SparseMixer { jitter_eps: 0.01 });
    assert!(sm.problem().unwrap().contains("top-2"));
    sm.top_k = 2;
    assert!(sm.problem().is_none());
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
    let s = spec(RoutingRule::SoftmaxTopK, Selection::TopK, 3, 8);
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
