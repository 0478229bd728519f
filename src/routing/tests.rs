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
        let r = route_block(row, 0, None, &s, &Adjustments::default());
        one_by_one.ids.extend(r.ids);
        one_by_one.weights.extend(r.weights);
    }
    assert_eq!(
        (whole.ids, whole.weights),
        (one_by_one.ids, one_by_one.weights)
    );
}

fn pinned(layer: usize, token: usize, experts: &[u32]) -> intervention::ForcedRoute {
    intervention::ForcedRoute {
        layer,
        token,
        experts: experts.to_vec(),
    }
}

fn expert(layer: usize, expert: u32) -> intervention::ExpertRef {
    intervention::ExpertRef { layer, expert }
}

/// No intervention routes exactly as `route`; ablating an expert removes it from every token's
/// choice while the others keep their order.
#[test]
fn ablation_removes_the_expert_and_nothing_else() {
    let mut s = spec(RoutingRule::SoftmaxTopK, Selection::TopK, 2, 4);
    s.normalization = Normalization::Sum;
    let logits = [0.0, 2.0, 1.0, -1.0, 3.0, 0.5, 0.2, 0.1];
    let plain = route(&logits, None, &s);
    let none = Interventions::default().layer(0, &s);
    assert!(none.routes_as_configured());
    assert_eq!(route_adjusted(&logits, None, &s, &none, 0), plain);
    let ablate = Interventions {
        ablate: vec![expert(0, 1)],
        ..Default::default()
    };
    let r = route_adjusted(&logits, None, &s, &ablate.layer(0, &s), 0);
    assert_eq!(r.ids, vec![2, 0, 0, 2]);
    assert!((r.weights[0] + r.weights[1] - 1.0).abs() < 1e-6);
    // Another layer's ablation leaves this one alone.
    assert_eq!(
        route_adjusted(&logits, None, &s, &ablate.layer(1, &s), 0),
        plain
    );
}

/// DeepSeek-V3's selection bias must not bring an ablated expert back.
#[test]
fn selection_bias_cannot_reselect_an_ablated_expert() {
    let mut s = spec(RoutingRule::SigmoidTopK, Selection::TopK, 1, 3);
    s.selection_bias = true;
    let bias = [0.0, 5.0, 0.0];
    let ablate = Interventions {
        ablate: vec![expert(3, 1)],
        ..Default::default()
    };
    let r = route_adjusted(&[1.0, 0.0, -1.0], Some(&bias), &s, &ablate.layer(3, &s), 0);
    assert_eq!(r.ids, vec![0]);
    assert!((r.weights[0] - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-6);
}

/// Pinning a token to the experts it chose anyway changes nothing; pinning others gives them the
/// rule's weights for those experts, only at that position.
#[test]
fn forcing_pins_one_position() {
    for rule in [
        RoutingRule::SoftmaxTopK,
        RoutingRule::SigmoidTopK,
        RoutingRule::TopKSoftmax,
        RoutingRule::TopKSigmoid,
    ] {
        let mut s = spec(rule, Selection::TopK, 2, 4);
        if matches!(rule, RoutingRule::SoftmaxTopK | RoutingRule::SigmoidTopK) {
            s.normalization = Normalization::Sum;
        }
        let logits = [0.0, 2.0, 1.0, -1.0, 3.0, 0.5, 0.2, 0.1];
        let plain = route(&logits, None, &s);
        let same = Interventions {
            force: vec![pinned(0, 6, &[1, 2])],
            ..Default::default()
        };
        // Position 6 is row 1 of a chunk starting at position 5.
        let r = route_adjusted(&logits, None, &s, &same.layer(0, &s), 5);
        assert_eq!(r.ids[..2], plain.ids[..2], "{rule:?}");
        let other = Interventions {
            force: vec![pinned(0, 6, &[3, 2])],
            ..Default::default()
        };
        let r = route_adjusted(&logits, None, &s, &other.layer(0, &s), 5);
        assert_eq!(r.ids[..2], plain.ids[..2], "row 0 is position 5: untouched");
        let mut chosen = r.ids[2..].to_vec();
        chosen.sort_unstable();
        assert_eq!(chosen, vec![2, 3], "{rule:?}");
        if rule != RoutingRule::TopKSigmoid {
            assert!((r.weights[2] + r.weights[3] - 1.0).abs() < 1e-5, "{rule:?}");
        }
        // Outside the chunk nothing is pinned.
        assert_eq!(
            route_adjusted(&logits, None, &s, &other.layer(0, &s), 0).ids[2..],
            plain.ids[2..]
        );
    }
}

/// Gumbel noise is keyed by position: routing in chunks equals routing in one pass, the seed
/// changes the draw, and scale 0 is no noise.
#[test]
fn gumbel_noise_is_reproducible_across_chunks() {
    let s = spec(RoutingRule::SoftmaxTopK, Selection::TopK, 2, 8);
    let logits: Vec<f32> = (0..8 * 20).map(|i| ((i * 31) % 17) as f32 * 0.05).collect();
    let noisy = |seed, scale| Interventions {
        noise: Some(RouterNoise::Gumbel { scale, seed }),
        ..Default::default()
    };
    let change = noisy(7, 1.0).layer(2, &s);
    let whole = route_adjusted(&logits, None, &s, &change, 0);
    let mut chunked = Routing::default();
    for (i, chunk) in logits.chunks(8 * 6).enumerate() {
        let r = route_adjusted(chunk, None, &s, &change, i * 6);
        chunked.ids.extend(r.ids);
        chunked.weights.extend(r.weights);
    }
    assert_eq!(
        (&whole.ids, &whole.weights),
        (&chunked.ids, &chunked.weights)
    );
    assert_ne!(
        whole.ids,
        route(&logits, None, &s).ids,
        "noise of scale 1 moves some choice"
    );
    assert_ne!(
        whole.ids,
        route_adjusted(&logits, None, &s, &noisy(8, 1.0).layer(2, &s), 0).ids
    );
    assert_eq!(
        route_adjusted(&logits, None, &s, &noisy(7, 0.0).layer(2, &s), 0),
        route(&logits, None, &s)
    );
}

#[test]
fn intervened_top_k_routes_with_the_new_k() {
    let s = spec(RoutingRule::SoftmaxTopK, Selection::TopK, 2, 4);
    let wider = Interventions {
        top_k: Some(3),
        ..Default::default()
    };
    let r = route_adjusted(&[0.0, 2.0, 1.0, -1.0], None, &s, &wider.layer(0, &s), 0);
    assert_eq!((r.top_k, r.ids), (3, vec![1, 2, 0]));
}

#[test]
fn impossible_interventions_are_named() {
    let s = RouterSpec::plain(4, 2, RoutingRule::SoftmaxTopK);
    let moe = [1, 2];
    let problem = |i: Interventions| i.problem(&s, &moe).unwrap_or_default();
    let ok = Interventions {
        ablate: vec![expert(1, 0), expert(1, 3)],
        force: vec![pinned(2, 4, &[0, 1])],
        ..Default::default()
    };
    assert_eq!(ok.problem(&s, &moe), None);
    // An expert named twice is removed once: two of the four stay for top-2.
    let twice = Interventions {
        ablate: vec![expert(1, 0), expert(1, 0), expert(1, 3)],
        ..Default::default()
    };
    assert_eq!(twice.problem(&s, &moe), None);
    assert!(problem(Interventions {
        capacity: Some(super::intervention::CapacityDrops {
            capacity_factor: 0.0,
            policy: Default::default(),
        }),
        ..Default::default()
    })
    .contains("capacity factor must be a positive number"));
    assert!(problem(Interventions {
        top_k: Some(5),
        ..Default::default()
    })
    .contains("1..=4"));
    assert!(problem(Interventions {
        ablate: vec![expert(0, 1)],
        ..Default::default()
    })
    .contains("not an MoE layer"));
    assert!(problem(Interventions {
        zero: vec![expert(1, 4)],
        ..Default::default()
    })
    .contains("experts 0..3"));
    assert!(problem(Interventions {
        ablate: vec![expert(1, 0), expert(1, 1), expert(1, 2)],
        ..Default::default()
    })
    .contains("top-2 needs 2"));
    assert!(problem(Interventions {
        force: vec![pinned(1, 0, &[1])],
        ..Default::default()
    })
    .contains("1 experts given"));
    assert!(problem(Interventions {
        force: vec![pinned(1, 0, &[1, 1])],
        ..Default::default()
    })
    .contains("twice"));
    assert!(problem(Interventions {
        ablate: vec![expert(1, 2)],
        force: vec![pinned(1, 0, &[1, 2])],
        ..Default::default()
    })
    .contains("ablated"));
    assert!(problem(Interventions {
        noise: Some(RouterNoise::Jitter { eps: 1.5, seed: 0 }),
        ..Default::default()
    })
    .contains("[0, 1)"));
}

#[test]
fn intervention_arguments_parse_or_say_why() {
    use intervention::*;
    assert_eq!(
        parse_expert_refs("3:7, 4:0").unwrap(),
        vec![expert(3, 7), expert(4, 0)]
    );
    assert!(parse_expert_refs("3-7")
        .unwrap_err()
        .contains("LAYER:EXPERT"));
    assert!(parse_expert_refs("3:x").unwrap_err().contains("'x'"));
    assert_eq!(
        parse_forced_route("2:5:1+6").unwrap(),
        pinned(2, 5, &[1, 6])
    );
    assert!(parse_forced_route("2:5").is_err());
    assert_eq!(
        parse_router_noise("gumbel:0.5", 9).unwrap(),
        RouterNoise::Gumbel {
            scale: 0.5,
            seed: 9
        }
    );
    assert!(parse_router_noise("gauss:1", 0)
        .unwrap_err()
        .contains("gauss"));
    let all = Interventions {
        top_k: Some(1),
        ablate: vec![expert(1, 2)],
        force: vec![pinned(1, 0, &[3])],
        ..Default::default()
    };
    assert_eq!(all.describe(), "top-1; ablate 1:2; force 1:0:3");
    assert_eq!(Interventions::default().describe(), "none");
}
