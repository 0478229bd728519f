//! Metrics of small hand-built traces, each value worked out by hand in the comments.

use super::*;
use crate::trace::{LayerTimings, Matrix, ModelInfo, RouterInfo, Token};

const TOL: f64 = 1e-6;

fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() < TOL, "{what}: got {got}, want {want}");
}

fn some(got: Option<f64>, want: f64, what: &str) {
    close(got.unwrap_or_else(|| panic!("{what} is None")), want, what);
}

/// One MoE layer: chosen experts per token, and raw logits per token when captured.
struct L {
    ids: Vec<Vec<u32>>,
    logits: Option<Vec<Vec<f32>>>,
}

fn layer(ids: Vec<Vec<u32>>, logits: Option<Vec<Vec<f32>>>) -> L {
    L { ids, logits }
}

fn trace(e: usize, scoring: &str, layers: Vec<L>) -> Trace {
    let t = layers[0].ids.len();
    let k = layers[0].ids[0].len();
    let moe_layers = layers
        .into_iter()
        .enumerate()
        .map(|(i, l)| (i, l.ids[0].len(), l))
        .map(|(i, k, l)| MoeLayerTrace {
            layer: i + 1,
            router_logits: l
                .logits
                .map_or(Matrix::empty(), |lg| Matrix::from_vec(t, e, lg.concat())),
            topk_weights: Matrix::from_vec(t, k, vec![1.0 / k as f32; t * k]),
            topk_ids: Matrix::from_vec(t, k, l.ids.concat()),
            selection_bias: None,
            timings_ms: LayerTimings::default(),
            expert_timings_ms: Vec::new(),
            capacity_dropped: Vec::new(),
        })
        .collect();
    Trace {
        format_version: crate::trace::FORMAT_VERSION,
        model: ModelInfo {
            path: "hand-built".into(),
            architecture: "Test".into(),
            num_layers: 4,
            num_experts: e,
            top_k: k,
            device: "cpu".into(),
            dtype: "f32".into(),
            router: RouterInfo {
                scoring: scoring.into(),
                renormalize: false,
                routed_scaling_factor: 1.0,
                num_groups: 1,
                topk_groups: 1,
                ..Default::default()
            },
        },
        tokens: (0..t)
            .map(|i| Token::given(i as u32, format!("t{i}")))
            .collect(),
        moe_layers,
        last_logits: Vec::new(),
        forward_ms: 0.0,
        prompt_tokens: None,
        interventions: None,
    }
}

fn ln(x: f64) -> f32 {
    x.ln() as f32
}

/// The two-expert case worked on paper. E = 2, k = 1, T = 4, softmax:
///   t0: logits [ln 3, 0] → p = [3/4, 1/4], chooses 0, logsumexp = ln 4
///   t1: logits [ln 3, 0] → p = [3/4, 1/4], chooses 0, logsumexp = ln 4
///   t2: logits [0, ln 3] → p = [1/4, 3/4], chooses 1, logsumexp = ln 4
///   t3: logits [ln 7, 0] → p = [7/8, 1/8], chooses 0, logsumexp = ln 8
fn two_experts() -> Trace {
    let a = vec![ln(3.0), 0.0];
    let b = vec![0.0, ln(3.0)];
    let c = vec![ln(7.0), 0.0];
    trace(
        2,
        "softmax",
        vec![layer(
            vec![vec![0], vec![0], vec![1], vec![0]],
            Some(vec![a.clone(), a, b, c]),
        )],
    )
}

fn options(cf: f64) -> AnalysisOptions {
    AnalysisOptions {
        capacity_factor: cf,
        token_range: None,
    }
}

#[test]
fn two_experts_by_hand() {
    let m = analyze(&two_experts(), &options(1.0)).unwrap();
    let l = &m.moe_layers[0];
    assert_eq!(l.layer, 1);
    // c = [3, 1], T·k = 4 → f = [0.75, 0.25]; mean c = 2, std c = 1.
    assert_eq!(l.expert_counts, vec![3, 1]);
    close(l.load_fraction[0], 0.75, "f0");
    close(l.load_fraction[1], 0.25, "f1");
    close(l.cv, 0.5, "cv = 1/2");
    close(l.max_vio, 0.5, "max_vio = (3−2)/2");
    close(l.gini, 0.25, "gini = (2+2)/(2·4·2)");
    close(l.jain, 0.8, "jain = 16/(2·10)");
    // −(0.75 ln 0.75 + 0.25 ln 0.25)/ln 2 = (0.2157616 + 0.3465736)/0.6931472.
    close(l.load_entropy, 0.811_278_124_459_132_8, "load_entropy");
    assert_eq!(l.dead_experts, 0);
    // Entropy per token: H(3/4,1/4) = 0.5623351 (×3), H(7/8,1/8) = 0.1168400 + 0.2599302
    // = 0.3767702 → mean (3·0.5623351 + 0.3767702)/4.
    let h1 = -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
    let h2 = -(0.875f64 * 0.875f64.ln() + 0.125 * 0.125f64.ln());
    some(l.router_entropy_mean, (3.0 * h1 + h2) / 4.0, "entropy");
    some(l.router_entropy_mean, 0.515_943_9, "entropy (number)");
    // Chosen p: 0.75, 0.75, 0.75, 0.875 → 3.125/4.
    some(l.topk_mass_mean, 0.78125, "topk_mass");
    // Margins p(1st) − p(2nd): 0.5, 0.5, 0.5, 0.75 → 2.25/4.
    some(l.margin_mean, 0.5625, "margin");
    // P = [(0.75+0.75+0.25+0.875)/4, …] = [0.65625, 0.34375];
    // switch = 2·(0.75·0.65625 + 0.25·0.34375) = 2·0.578125.
    some(l.switch_loss, 1.15625, "switch_loss");
    // Softmax scores are already normalized, one sequence: seq_aux = Σ (c_e/(T·k/E))·P_e
    // = (3/2)·0.65625 + (1/2)·0.34375 = 0.984375 + 0.171875.
    some(l.seq_aux_loss, 1.15625, "seq_aux_loss");
    // z = (3·(ln 4)² + (ln 8)²)/4 = (3·1.9218121 + 4.3240771)/4.
    some(
        l.z_loss,
        (3.0 * 4f64.ln().powi(2) + 8f64.ln().powi(2)) / 4.0,
        "z_loss",
    );
    some(l.z_loss, 2.522_378_4, "z_loss (number)");
    close(l.usage_std, 0.25, "usage_std = std[0.75, 0.25]");
    // Var[0.65625, 0.34375] = 0.15625².
    some(l.prob_var, 0.024_414_062_5, "prob_var");
    // 0.75 ln 1.5 + 0.25 ln 0.5 = 0.3040988 − 0.1732868.
    close(l.usage_kl, 0.130_812_035_9, "usage_kl");
    // CF = 1: C = ceil(4·1/2·1) = 2; (3 − 2)/4 dropped. Expert 0 has tokens 0, 1, 3:
    // by position token 3 goes; by probability (0.75, 0.75, 0.875) the later tie, token 1, goes.
    assert_eq!(l.capacity, 2);
    close(l.dropped_fraction, 0.25, "dropped_fraction");
    assert_eq!(l.dropped_tokens_position, vec![[3, 0]]);
    assert_eq!(l.dropped_tokens_probs, Some(vec![[1, 0]]));
    // top-1 sequence 0, 0, 1, 0: pairs (0,0) (0,1) (1,0) → 1/3; k = 1 has no top-2.
    some(l.repeat_top1, 1.0 / 3.0, "repeat_top1");
    assert_eq!(l.repeat_top12, None);
    assert_eq!(l.coactivation, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    assert_eq!(l.jaccard_next_layer, None, "last MoE layer");
    close(l.utilization_balance, l.load_entropy, "utilization_balance");
    assert_eq!(l.utilization_band, Band::Normal);
    assert_eq!(l.expert_time_spread, None);
    assert_eq!(l.expert_time_band, None);
    // One layer, top-1 of the softmax = the choices: 2·Σ (c_e/T)·P_e = k·switch = 1.15625.
    some(m.hf_aux_loss, 1.15625, "hf_aux_loss");
    some(m.layer_mean["switch_loss"], 1.15625, "layer_mean");
    assert_eq!(m.num_tokens, 4);
    assert_eq!(m.top_k, 1);
}

/// E = 4, k = 2, T = 4, all logits 0 (p = 1/4 everywhere), every expert chosen twice.
/// Rows: [0,1] [1,0] [2,3] [3,2]; a second layer: [0,1] [0,2] [2,3] [0,1].
fn uniform() -> Trace {
    let zeros = Some(vec![vec![0.0f32; 4]; 4]);
    trace(
        4,
        "softmax",
        vec![
            layer(
                vec![vec![0, 1], vec![1, 0], vec![2, 3], vec![3, 2]],
                zeros.clone(),
            ),
            layer(vec![vec![0, 1], vec![0, 2], vec![2, 3], vec![0, 1]], zeros),
        ],
    )
}

#[test]
fn uniform_routing_is_balanced() {
    let m = analyze(&uniform(), &AnalysisOptions::default()).unwrap();
    let l = &m.moe_layers[0];
    assert_eq!(l.expert_counts, vec![2, 2, 2, 2]);
    close(l.cv, 0.0, "cv");
    close(l.max_vio, 0.0, "max_vio");
    close(l.gini, 0.0, "gini");
    close(l.jain, 1.0, "jain");
    close(l.load_entropy, 1.0, "load_entropy");
    close(l.usage_std, 0.0, "usage_std");
    close(l.usage_kl, 0.0, "usage_kl");
    some(l.prob_var, 0.0, "prob_var");
    // Entropy log 4, mass 2·1/4, all ties → margin 0.
    some(l.router_entropy_mean, 4f64.ln(), "entropy");
    some(l.topk_mass_mean, 0.5, "topk_mass");
    some(l.margin_mean, 0.0, "margin");
    // 4·Σ (1/4)(1/4) = 1; seq_aux Σ (2/(4·2/4))·1/4 = 1; z = (ln 4)².
    some(l.switch_loss, 1.0, "switch_loss");
    some(l.seq_aux_loss, 1.0, "seq_aux_loss");
    some(l.z_loss, 4f64.ln().powi(2), "z_loss");
    // C = ceil(4·2/4·1.25) = ceil(2.5) = 3 ≥ 2: nothing dropped.
    assert_eq!(l.capacity, 3);
    close(l.dropped_fraction, 0.0, "dropped");
    assert!(l.dropped_tokens_position.is_empty());
    assert_eq!(l.dropped_tokens_probs, Some(vec![]));
    // top-1: 0, 1, 2, 3 → no repeat. top-1(t+1) in {top-1, top-2}(t): 1∈{0,1} yes, 2∈{1,0} no,
    // 3∈{2,3} yes → 2/3.
    some(l.repeat_top1, 0.0, "repeat_top1");
    some(l.repeat_top12, 2.0 / 3.0, "repeat_top12");
    // Tokens choosing 0 (t0, t1) both also choose 1, never 2 or 3.
    assert_eq!(
        l.coactivation,
        vec![
            vec![1.0, 1.0, 0.0, 0.0],
            vec![1.0, 1.0, 0.0, 0.0],
            vec![0.0, 0.0, 1.0, 1.0],
            vec![0.0, 0.0, 1.0, 1.0],
        ]
    );
    // Jaccard with layer 2: {0,1}/{0,1} = 1, {1,0}/{0,2} = 1/3, {2,3}/{2,3} = 1, {3,2}/{0,1} = 0
    // → (1 + 1/3 + 1 + 0)/4 = 7/12.
    some(l.jaccard_next_layer, 7.0 / 12.0, "jaccard");
    assert_eq!(m.moe_layers[1].jaccard_next_layer, None);
    // Layer 2: c = [3, 2, 2, 1], mean 2, std √(2/4) = 0.7071068 → cv 0.3535534; the layer mean
    // of cv is (0 + 0.3535534)/2.
    close(m.moe_layers[1].cv, 0.5f64.sqrt() / 2.0, "layer 2 cv");
    some(m.layer_mean["cv"], 0.5f64.sqrt() / 4.0, "layer_mean cv");
    some(
        m.layer_mean["jaccard_next_layer"],
        7.0 / 12.0,
        "defined layers only",
    );
    // transformers re-selects top-2 of uniform p: ties → experts {0, 1} for all 8 rows of both
    // layers: counts/rows = [1, 1, 0, 0], P = 1/4 → 4·(1/4 + 1/4) = 2 = k at balanced P.
    some(m.hf_aux_loss, 2.0, "hf_aux_loss");
}

/// E = 4, k = 1, T = 3, every token to expert 2, no logits captured.
#[test]
fn collapse_to_one_expert() {
    let t = trace(
        4,
        "softmax",
        vec![layer(vec![vec![2], vec![2], vec![2]], None)],
    );
    let m = analyze(&t, &AnalysisOptions::default()).unwrap();
    let l = &m.moe_layers[0];
    assert_eq!(l.expert_counts, vec![0, 0, 3, 0]);
    // mean 0.75; std √((3·0.75² + 2.25²)/4) = √1.6875 = 1.2990381 → cv √3.
    close(l.cv, 3f64.sqrt(), "cv = √(E−1)");
    close(l.max_vio, 3.0, "max_vio = E−1");
    // Σ|c_i − c_j| = 2·3·3 = 18; 2·16·0.75 = 24 → (E−1)/E.
    close(l.gini, 0.75, "gini");
    close(l.jain, 0.25, "jain = 1/E");
    close(l.load_entropy, 0.0, "load_entropy");
    assert_eq!(l.dead_experts, 3);
    // f = [0, 0, 1, 0]: std √(3/16) = √3/4, KL = 1·ln 4.
    close(l.usage_std, 3f64.sqrt() / 4.0, "usage_std");
    close(l.usage_kl, 4f64.ln(), "usage_kl");
    // C = ceil(3·1/4·1.25) = ceil(0.9375) = 1: tokens 1 and 2 are over.
    assert_eq!(l.capacity, 1);
    close(l.dropped_fraction, 2.0 / 3.0, "dropped_fraction");
    assert_eq!(l.dropped_tokens_position, vec![[1, 2], [2, 2]]);
    some(l.repeat_top1, 1.0, "repeat_top1");
    assert_eq!(l.coactivation[2], vec![0.0, 0.0, 1.0, 0.0]);
    assert_eq!(l.coactivation[0], vec![0.0; 4], "never chosen: all 0");
    assert_eq!(l.utilization_band, Band::Alarm);
    // Without logits every probability-based metric is null.
    for value in [
        l.router_entropy_mean,
        l.topk_mass_mean,
        l.margin_mean,
        l.switch_loss,
        l.z_loss,
        l.seq_aux_loss,
        l.prob_var,
        m.hf_aux_loss,
    ] {
        assert_eq!(value, None);
    }
    assert_eq!(l.dropped_tokens_probs, None);
}

/// T = 1, E = 3, k = 1: no consecutive pairs; an expert never chosen.
#[test]
fn single_token() {
    let t = trace(
        3,
        "softmax",
        vec![layer(vec![vec![0]], Some(vec![vec![0.0; 3]]))],
    );
    let l = &analyze(&t, &AnalysisOptions::default()).unwrap().moe_layers[0];
    // c = [1, 0, 0]: mean 1/3, std √((4/9 + 1/9 + 1/9)/3) = √2/3 → cv √2; max_vio 2.
    close(l.cv, 2f64.sqrt(), "cv");
    close(l.max_vio, 2.0, "max_vio");
    assert_eq!(l.dead_experts, 2);
    assert_eq!(l.repeat_top1, None);
    assert_eq!(l.repeat_top12, None);
    // p = 1/3 each: 3·(1·1/3) = 1; z = (ln 3)²; margin 1/3 − 1/3 = 0.
    some(l.switch_loss, 1.0, "switch_loss");
    some(l.z_loss, 3f64.ln().powi(2), "z_loss");
    some(l.margin_mean, 0.0, "margin");
    // C = ceil(1/3·1.25) = 1.
    assert_eq!(l.capacity, 1);
    close(l.dropped_fraction, 0.0, "dropped");
}

/// k = E = 2, T = 2, both tokens logits [ln 3, 0] (p = [3/4, 1/4]), rows [0,1] [0,1].
#[test]
fn k_equals_e() {
    let lg = vec![ln(3.0), 0.0];
    let t = trace(
        2,
        "softmax",
        vec![layer(
            vec![vec![0, 1], vec![0, 1]],
            Some(vec![lg.clone(), lg]),
        )],
    );
    let m = analyze(&t, &AnalysisOptions::default()).unwrap();
    let l = &m.moe_layers[0];
    close(l.jain, 1.0, "every expert always chosen");
    some(l.topk_mass_mean, 1.0, "all mass chosen");
    assert_eq!(l.margin_mean, None, "no (k+1)-th expert");
    // f = [1/2, 1/2], P = [3/4, 1/4] → 2·(3/8 + 1/8) = 1.
    some(l.switch_loss, 1.0, "switch_loss");
    some(l.repeat_top12, 1.0, "top-1 0 ∈ {0, 1}");
    assert_eq!(l.coactivation, vec![vec![1.0, 1.0], vec![1.0, 1.0]]);
    // 2·((2/2)·3/4 + (2/2)·1/4) = 2 = k.
    some(m.hf_aux_loss, 2.0, "hf_aux_loss");
}

/// Sigmoid router (E = 2, k = 1, T = 2), scores normalized to sum 1:
///   t0: logits [ln 3, −ln 3] → σ = [3/4, 1/4] → s' = [3/4, 1/4], chooses 0
///   t1: logits [ln 3,  ln 3] → σ = [3/4, 3/4] → s' = [1/2, 1/2], chooses 0
#[test]
fn sigmoid_scores_are_normalized() {
    let t = trace(
        2,
        "sigmoid",
        vec![layer(
            vec![vec![0], vec![0]],
            Some(vec![vec![ln(3.0), -ln(3.0)], vec![ln(3.0), ln(3.0)]]),
        )],
    );
    let m = analyze(&t, &AnalysisOptions::default()).unwrap();
    let l = &m.moe_layers[0];
    // c = [2, 0]; P' = [(3/4 + 1/2)/2, (1/4 + 1/2)/2] = [0.625, 0.375].
    // seq_aux = Σ (c_e/(T·k/E))·P'_e = (2/1)·0.625 = 1.25; switch = 2·(1·0.625) = 1.25.
    some(l.seq_aux_loss, 1.25, "seq_aux_loss");
    some(l.switch_loss, 1.25, "switch_loss");
    some(l.prob_var, 0.015_625, "Var[0.625, 0.375] = 0.125²");
    // Entropy of s': H(3/4,1/4) = 0.5623351, ln 2 = 0.6931472 → mean 0.6277411.
    some(l.router_entropy_mean, 0.627_741_1, "entropy");
    some(l.topk_mass_mean, 0.625, "(0.75 + 0.5)/2");
    some(l.margin_mean, 0.25, "(0.5 + 0)/2");
    // z-loss uses the raw logits: ln(3 + 1/3) and ln 6.
    some(
        l.z_loss,
        ((10.0f64 / 3.0).ln().powi(2) + 6f64.ln().powi(2)) / 2.0,
        "z_loss",
    );
    assert_eq!(m.hf_aux_loss, None, "transformers' loss is softmax-only");
}

/// The two-expert case split into two traces [t0, t1] and [t2, t3].
#[test]
fn aggregate_pools_load_and_averages_sequences() {
    let whole = two_experts();
    let mut a = whole.clone();
    let mut b = whole.clone();
    for (part, rows) in [(&mut a, 0..2), (&mut b, 2..4)] {
        let l = &mut part.moe_layers[0];
        let pick = |m: &Matrix<f32>| {
            Matrix::from_vec(
                2,
                m.cols(),
                rows.clone().flat_map(|t| m.row(t).to_vec()).collect(),
            )
        };
        l.router_logits = pick(&l.router_logits);
        l.topk_weights = pick(&l.topk_weights);
        l.topk_ids = Matrix::from_vec(2, 1, rows.clone().map(|t| l.topk_ids.get(t, 0)).collect());
        part.tokens = part.tokens[rows].to_vec();
    }
    let m = aggregate(&[&a, &b], &options(1.0)).unwrap();
    let l = &m.moe_layers[0];
    // Pooled: exactly the single-trace load, switch and capacity figures (token indices run on).
    assert_eq!(l.expert_counts, vec![3, 1]);
    some(l.switch_loss, 1.15625, "switch_loss");
    assert_eq!(l.dropped_tokens_position, vec![[3, 0]]);
    assert_eq!(l.dropped_tokens_probs, Some(vec![[1, 0]]));
    // Per sequence: A c = [2, 0], P = [3/4, 1/4] → (2/1)·3/4 = 1.5; B c = [1, 1],
    // P = [(1/4 + 7/8)/2, (3/4 + 1/8)/2] = [0.5625, 0.4375] → 1 → mean 1.25.
    some(l.seq_aux_loss, 1.25, "seq_aux_loss");
    // A: top-1 0, 0 → 1; B: 1, 0 → 0 → mean 0.5 (no pair across the two prompts).
    some(l.repeat_top1, 0.5, "repeat_top1");
    assert_eq!(m.num_traces, 2);
    assert_eq!(m.num_tokens, 4);
    let mismatch = trace(3, "softmax", vec![layer(vec![vec![0]], None)]);
    assert!(matches!(
        aggregate(&[&a, &mismatch], &options(1.0)),
        Err(AnalysisError::Mismatch { trace: 1, .. })
    ));
}

#[test]
fn token_range_skips_and_clamps() {
    let t = two_experts();
    let skip = AnalysisOptions {
        capacity_factor: 1.0,
        token_range: Some(1..usize::MAX),
    };
    let l = &analyze(&t, &skip).unwrap().moe_layers[0];
    // t1..t3: c = [2, 1], T = 3 → C = ceil(3/2) = 2, nothing dropped; P = [(0.75 + 0.25 +
    // 0.875)/3, …] = [0.625, 0.375] → switch 2·(2/3·0.625 + 1/3·0.375) = 1.0833333.
    assert_eq!(l.expert_counts, vec![2, 1]);
    assert_eq!(l.capacity, 2);
    assert!(l.dropped_tokens_position.is_empty());
    some(
        l.switch_loss,
        2.0 * (2.0 / 3.0 * 0.625 + 0.375 / 3.0),
        "switch",
    );
    let empty = AnalysisOptions {
        capacity_factor: 1.0,
        token_range: Some(4..10),
    };
    assert!(matches!(
        analyze(&t, &empty),
        Err(AnalysisError::EmptyTokenRange { tokens: 4, .. })
    ));
    assert!(matches!(
        analyze(&t, &options(0.0)),
        Err(AnalysisError::CapacityFactor(_))
    ));
}

#[test]
fn malformed_traces_are_errors() {
    let bad = trace(2, "softmax", vec![layer(vec![vec![0, 0]], None)]);
    assert!(matches!(
        analyze(&bad, &AnalysisOptions::default()),
        Err(AnalysisError::Invalid { ref problem, .. }) if problem.contains("twice")
    ));
    let out_of_range = trace(2, "softmax", vec![layer(vec![vec![5]], None)]);
    assert!(analyze(&out_of_range, &AnalysisOptions::default()).is_err());
}

/// HunYuan routes with a different k per layer: each layer's metrics use its own, and the
/// transformers loss (one k pooled over layers) is not defined. E = 4, T = 2:
///   layer 1, k = 1: t0 → 0, t1 → 1   → load [1/2, 1/2, 0, 0]
///   layer 2, k = 2: t0 → 0, 2; t1 → 2, 3 → load [1/4, 0, 1/2, 1/4]
#[test]
fn layers_with_their_own_k() {
    let logits = Some(vec![vec![0.0; 4]; 2]);
    let t = trace(
        4,
        "softmax",
        vec![
            layer(vec![vec![0], vec![1]], logits.clone()),
            layer(vec![vec![0, 2], vec![2, 3]], logits),
        ],
    );
    let m = analyze(&t, &AnalysisOptions::default()).unwrap();
    assert_eq!(m.top_k, 2);
    assert_eq!(
        m.moe_layers.iter().map(|l| l.top_k).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(m.moe_layers[0].load_fraction, [0.5, 0.5, 0.0, 0.0]);
    assert_eq!(m.moe_layers[1].load_fraction, [0.25, 0.0, 0.5, 0.25]);
    assert_eq!(m.moe_layers[1].dead_experts, 1);
    assert!(m.hf_aux_loss.is_none());
}

#[test]
fn per_token_metrics_for_views() {
    let t = two_experts();
    let per = token_metrics(&t.moe_layers[0], &t.model.router).unwrap();
    assert_eq!(per.len(), 4);
    close(per[3].topk_mass, 0.875, "t3 mass");
    close(per[3].margin.unwrap(), 0.75, "t3 margin");
    close(
        per[0].entropy_nats,
        -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln()),
        "t0 entropy",
    );
    let no_logits = trace(2, "softmax", vec![layer(vec![vec![0]], None)]);
    assert!(token_metrics(&no_logits.moe_layers[0], &no_logits.model.router).is_none());
}

/// `switch_loss` = 1 and `hf_aux_loss` = k at balance: hf = k · mean over layers of switch when
/// the choices are the softmax top-k.
#[test]
fn hf_aux_is_k_times_mean_switch() {
    let m = analyze(&two_experts(), &AnalysisOptions::default()).unwrap();
    let mean_switch = m.layer_mean["switch_loss"].unwrap();
    close(
        m.hf_aux_loss.unwrap(),
        m.top_k as f64 * mean_switch,
        "hf = k·switch",
    );
}

#[test]
fn scalars_match_serialization() {
    let m = analyze(&uniform(), &AnalysisOptions::default()).unwrap();
    let value = serde_json::to_value(&m.moe_layers[0]).unwrap();
    let object = value.as_object().unwrap();
    let scalars = m.moe_layers[0].scalars();
    for (name, v) in &scalars {
        let json = &object[*name];
        match v {
            Some(v) => close(json.as_f64().unwrap(), *v, name),
            None => assert!(json.is_null(), "{name}"),
        }
    }
    for (name, json) in object {
        if json.is_number() && name != "layer" && name != "top_k" {
            assert!(
                scalars.iter().any(|(n, _)| n == name),
                "{name} missing from scalars()"
            );
        }
    }
}

/// Every JSON name `stats --json` prints (per layer and model level) is documented.
#[test]
fn every_metric_name_is_documented() {
    let docs = include_str!("../../docs/metrics.md");
    let m = analyze(&uniform(), &AnalysisOptions::default()).unwrap();
    let value = serde_json::to_value(&m).unwrap();
    let mut names: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    names.extend(value["moe_layers"][0].as_object().unwrap().keys().cloned());
    assert!(names.len() > 35, "{names:?}");
    for name in names {
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/metrics.md does not document `{name}`"
        );
    }
}

#[test]
fn expert_time_spread_pools_recorded_times() {
    let mut a = two_experts();
    a.moe_layers[0].expert_timings_ms = vec![3.0, 1.0];
    let mut b = two_experts();
    b.moe_layers[0].expert_timings_ms = vec![1.0, 1.0];
    // Pooled [4, 2]: mean 3, max 4 → spread 1/3, above 25 % → alarm.
    let m = aggregate(&[&a, &b], &options(1.0)).unwrap();
    some(
        m.moe_layers[0].expert_time_spread,
        1.0 / 3.0,
        "expert_time_spread",
    );
    assert_eq!(m.moe_layers[0].expert_time_band, Some(Band::Alarm));
    // A trace without timings adds nothing; none at all gives no spread.
    let m = aggregate(&[&a, &two_experts()], &options(1.0)).unwrap();
    some(m.moe_layers[0].expert_time_spread, 0.5, "one timed trace");
    let m = analyze(&two_experts(), &options(1.0)).unwrap();
    assert_eq!(m.moe_layers[0].expert_time_spread, None);
}

#[test]
fn routing_flips_count_sets_and_top1() {
    let a = trace(
        4,
        "softmax",
        vec![layer(vec![vec![0, 1], vec![2, 3], vec![1, 2]], None)],
    );
    // Token 0: same set, other order (top-1 flip only); token 1: one expert swapped; token 2 same.
    let b = trace(
        4,
        "softmax",
        vec![layer(vec![vec![1, 0], vec![2, 0], vec![1, 2]], None)],
    );
    let f = routing_flips(&b, &a).unwrap();
    let l = &f.moe_layers[0];
    assert_eq!(l.set_flips, vec![1]);
    assert_eq!(l.top1_flips, vec![0]);
    close(
        l.changed_choice_fraction,
        1.0 / 6.0,
        "changed_choice_fraction",
    );
    assert_eq!(f.tokens_with_any_flip, 1);
    assert_eq!(routing_flips(&a, &a).unwrap().tokens_with_any_flip, 0);
    let shorter = trace(4, "softmax", vec![layer(vec![vec![0, 1]], None)]);
    assert!(routing_flips(&shorter, &a).is_err());
}

/// Weight differences count only experts both runs chose; KL of the last logits by hand.
#[test]
fn routing_flips_weigh_agreeing_experts_and_the_next_token_drift() {
    let a = trace(
        4,
        "softmax",
        vec![layer(vec![vec![0, 1], vec![2, 3]], None)],
    );
    let mut b = trace(
        4,
        "softmax",
        vec![layer(vec![vec![1, 0], vec![2, 1]], None)],
    );
    // a's weights are 0.5 everywhere. b: token 0 (1: 0.7, 0: 0.3), token 1 (2: 0.6, 1: 0.4).
    b.moe_layers[0].topk_weights = Matrix::from_vec(2, 2, vec![0.7, 0.3, 0.6, 0.4]);
    let (mut a, mut b) = (a, b);
    a.last_logits = vec![0.0, 0.0];
    b.last_logits = vec![(3f32).ln(), 0.0]; // probabilities 3/4, 1/4
    let f = routing_flips(&b, &a).unwrap();
    let l = &f.moe_layers[0];
    // Agreeing pairs: (t0, 0) |0.3-0.5|, (t0, 1) |0.7-0.5|, (t1, 2) |0.6-0.5|.
    close(l.agreeing_weight_diff_mean, (0.2 + 0.2 + 0.1) / 3.0, "mean");
    close(l.agreeing_weight_diff_max, 0.2, "max");
    // KL(a ‖ b) = ½ ln(½ / ¾) + ½ ln(½ / ¼).
    let kl = 0.5 * (0.5f64 / 0.75).ln() + 0.5 * (0.5f64 / 0.25).ln();
    close(f.last_logits_kl.unwrap(), kl, "kl");
}

/// The intervention effect on hand-worked numbers: two positions over a vocabulary of 2.
#[test]
fn intervention_effect_is_kl_top1_and_perplexity_of_the_two_runs() {
    use crate::analysis::effect::intervention_effect;
    let mut base = trace(2, "softmax", vec![layer(vec![vec![0], vec![1]], None)]);
    base.tokens = vec![Token::given(0, "a".into()), Token::given(1, "b".into())];
    let mut changed = base.clone();
    // Token 1 moves from expert 1 to expert 0 in the intervened run.
    changed.moe_layers[0].topk_ids = Matrix::from_vec(2, 1, vec![0, 0]);
    // Position 0: baseline P = (1/2, 1/2), intervened P = (e/(1+e), 1/(1+e)); position 1: equal.
    let base_logits = [0.0, 0.0, 3.0, 1.0];
    let changed_logits = [1.0, 0.0, 3.0, 1.0];
    let effect = intervention_effect(&base, &base_logits, &changed, &changed_logits).unwrap();
    let q0 = 1f64.exp() / (1.0 + 1f64.exp());
    let kl0 = 0.5 * (0.5 / q0).ln() + 0.5 * (0.5 / (1.0 - q0)).ln();
    assert!((effect.positions[0].kl_nats - kl0).abs() < 1e-12);
    assert!(effect.positions[1].kl_nats.abs() < 1e-12);
    assert!((effect.mean_kl_nats - kl0 / 2.0).abs() < 1e-12);
    // Ties pick the lowest id: both runs' most likely token after "a" is token 0.
    assert_eq!(effect.top1_changed_positions, 0);
    // The only predicted token is "b" (id 1) after "a": ln 1/2 against ln (1 − q0).
    assert!((effect.log_prob_baseline.unwrap() - 0.5f64.ln()).abs() < 1e-12);
    assert!((effect.log_prob_intervened.unwrap() - (1.0 - q0).ln()).abs() < 1e-12);
    assert!((effect.perplexity_baseline.unwrap() - 2.0).abs() < 1e-12);
    assert_eq!(effect.positions[1].next_logprob_baseline, None);
    assert_eq!(effect.moe_layers[0].tokens_rerouted, 1);
    assert_eq!(effect.moe_layers[0].top1_changed, 1);
    assert_eq!(effect.tokens_rerouted_any_layer, 1);
    // Different tokens cannot be compared.
    changed.tokens[1].id = 0;
    assert!(intervention_effect(&base, &base_logits, &changed, &changed_logits).is_err());
}

/// Two runs compared on hand-worked numbers: load JSD, Jaccard and top-1 agreement.
#[test]
fn two_runs_compare_by_load_jsd_and_per_token_agreement() {
    use crate::analysis::compare::{compare_runs, jsd_bits};
    // Disjoint loads are 1 bit apart, equal ones 0.
    assert!((jsd_bits(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
    assert!(jsd_bits(&[0.5, 0.5], &[0.5, 0.5]).abs() < 1e-12);
    // Top-2 of 4 experts, two tokens. A: {0,1},{0,2}; B: {0,1},{3,2}.
    let a = trace(
        4,
        "softmax",
        vec![layer(vec![vec![0, 1], vec![0, 2]], None)],
    );
    let b = trace(
        4,
        "softmax",
        vec![layer(vec![vec![0, 1], vec![3, 2]], None)],
    );
    let c = compare_runs(&a, &b).unwrap();
    assert!(c.same_tokens);
    let l = &c.moe_layers[0];
    // Jaccard 1 and 1/3; first experts agree on token 0 only.
    close(
        l.mean_jaccard.unwrap(),
        (1.0 + 1.0 / 3.0) / 2.0,
        "mean jaccard",
    );
    close(l.top1_agreement.unwrap(), 0.5, "top-1 agreement");
    // B's experts that A chose too: 2 of 2, then 1 of 2.
    close(l.saturation.unwrap(), 0.75, "router saturation");
    // Loads (2,1,1,0)/4 and (1,1,1,1)/4.
    let (p, q) = ([0.5, 0.25, 0.25, 0.0], [0.25; 4]);
    close(l.load_jsd_bits, jsd_bits(&p, &q), "load jsd");
    let m: [f64; 4] = [0.375, 0.25, 0.25, 0.125];
    let kl = |x: &[f64]| -> f64 {
        x.iter()
            .zip(&m)
            .filter(|(&xi, _)| xi > 0.0)
            .map(|(xi, mi)| xi * (xi / mi).log2())
            .sum()
    };
    close(
        l.load_jsd_bits,
        0.5 * kl(&p) + 0.5 * kl(&q),
        "load jsd by hand",
    );
    // Different tokens: load only.
    let mut other = b.clone();
    other.tokens[0].id = 9;
    let c = compare_runs(&a, &other).unwrap();
    assert!(!c.same_tokens && c.moe_layers[0].mean_jaccard.is_none());
    assert!(c.moe_layers[0].saturation.is_none());
    // Different experts cannot be compared.
    let wide = trace(
        8,
        "softmax",
        vec![layer(vec![vec![0, 1], vec![0, 2]], None)],
    );
    assert!(compare_runs(&a, &wide).is_err());
}

/// The figure grids the views and exports share, on hand-worked numbers.
#[test]
fn figure_grids_hold_top1_cells_heatmap_values_and_relative_load() {
    use crate::analysis::grid::{layer_heatmap, relative_load, top1_cells};
    // Top-2 of 3 experts, two tokens, weights 1/2 each; logits for the softmax heatmap.
    let t = trace(
        3,
        "softmax",
        vec![layer(
            vec![vec![2, 0], vec![1, 2]],
            Some(vec![vec![0.0, 0.0, 0.0], vec![0.0, 2f32.ln(), 0.0]]),
        )],
    );
    assert_eq!(top1_cells(&t, 0..2), vec![Some((2, 0.5)), Some((1, 0.5))]);
    assert_eq!(top1_cells(&t, 1..2), vec![Some((1, 0.5))]);
    let weights = layer_heatmap(&t, 0, false).unwrap();
    assert!(!weights.probabilities);
    // values[expert * tokens + token]
    assert_eq!(weights.values, vec![0.5, 0.0, 0.0, 0.5, 0.5, 0.5]);
    assert_eq!(weights.chosen, vec![(2, 0), (0, 0), (1, 1), (2, 1)]);
    let probs = layer_heatmap(&t, 0, true).unwrap();
    assert!(probs.probabilities);
    // Token 0: uniform thirds; token 1: softmax(0, ln 2, 0) = (1/4, 1/2, 1/4).
    let want = [1.0 / 3.0, 0.25, 1.0 / 3.0, 0.5, 1.0 / 3.0, 0.25];
    for (got, want) in probs.values.iter().zip(want) {
        close(*got as f64, want, "probability");
    }
    close(probs.max() as f64, 0.5, "max");
    assert!(layer_heatmap(&t, 1, false).is_none());
    // Loads (1, 1, 2)/4 against the uniform 1/3: ×0.75, ×0.75, ×1.5, halved for the scale.
    let metrics =
        crate::analysis::analyze(&t, &crate::analysis::AnalysisOptions::default()).unwrap();
    let load = relative_load(&metrics);
    for (got, want) in load.iter().zip([0.375, 0.375, 0.75]) {
        close(*got as f64, want, "relative load");
    }
}

/// Corpus counts on hand-worked numbers: domain shares and their JSD, co-activation, agreement
/// with the next layer, top-1 repeats and the vocabulary share.
#[test]
fn corpus_counts_and_report_by_hand() {
    use crate::analysis::corpus::{CorpusCounts, VocabularyOptions};
    // Top-2 of 4 experts, two MoE layers. Domain "a": two tokens; domain "b": two tokens.
    let a = trace(
        4,
        "softmax",
        vec![
            layer(vec![vec![0, 1], vec![0, 2]], None),
            layer(vec![vec![0, 1], vec![3, 2]], None),
        ],
    );
    let mut b = trace(
        4,
        "softmax",
        vec![
            layer(vec![vec![2, 3], vec![3, 2]], None),
            layer(vec![vec![2, 3], vec![3, 2]], None),
        ],
    );
    b.tokens[1].id = 0; // the same token id as a's first, so token 0 occurs three times
    let mut counts = CorpusCounts::new(&a);
    counts.add("a", &a, true).unwrap();
    counts.add("b", &b, true).unwrap();
    let report = counts.report(VocabularyOptions {
        top_tokens: 5,
        min_occurrences: 1,
    });
    assert_eq!((report.documents, report.tokens), (2, 4));
    assert_eq!(
        report.domains[0].moe_layers[0].expert_counts,
        vec![2, 1, 1, 0]
    );
    assert_eq!(
        report.domains[1].moe_layers[0].expert_counts,
        vec![0, 0, 2, 2]
    );
    let l0 = &report.moe_layers[0];
    assert_eq!(l0.domain_distribution[0], vec![0.5, 0.25, 0.25, 0.0]);
    // JSD((.5,.25,.25,0), (0,0,.5,.5)): mid (.25,.125,.375,.25).
    let m: [f64; 4] = [0.25, 0.125, 0.375, 0.25];
    let kl = |x: &[f64]| -> f64 {
        x.iter()
            .zip(&m)
            .filter(|(&xi, _)| xi > 0.0)
            .map(|(xi, mi)| xi * (xi / mi).log2())
            .sum()
    };
    let want = 0.5 * kl(&[0.5, 0.25, 0.25, 0.0]) + 0.5 * kl(&[0.0, 0.0, 0.5, 0.5]);
    close(l0.domain_jsd_bits[0].jsd_bits, want, "domain jsd");
    close(l0.mean_pairwise_jsd_bits.unwrap(), want, "mean jsd");
    // Expert 2 was chosen by 3 tokens, with 0 once, with 3 twice: P(0|2) = 1/3, P(3|2) = 2/3.
    close(l0.coactivation[2][0], 1.0 / 3.0, "P(0|2)");
    close(l0.coactivation[2][3], 2.0 / 3.0, "P(3|2)");
    close(l0.coactivation[2][2], 1.0, "P(2|2)");
    assert!(l0.coactivation[1]
        .iter()
        .zip([1.0, 1.0, 0.0, 0.0])
        .all(|(g, w)| *g == w));
    // Next layer: Jaccard 1, 1/3, 1, 1 → 5/6 over 4 tokens; same top-1 for 3 of 4 tokens.
    close(
        l0.jaccard_with_next.unwrap(),
        (3.0 + 1.0 / 3.0) / 4.0,
        "jaccard",
    );
    close(l0.top1_same_as_next.unwrap(), 0.75, "top-1 same");
    assert!(report.moe_layers[1].jaccard_with_next.is_none());
    // Neighbours: a's (0, 0) repeat, b's (2, 3) do not: 1 of 2 pairs.
    close(l0.top1_repeat_rate.unwrap(), 0.5, "repeat");
    // Token id 0 occurs three times (a's first token, b's second); it went to expert 0 twice?
    // No: a's token 0 chose {0, 1}; b's token 1 chose {3, 2}. So expert 0 got 1 of 3.
    let expert0 = &l0.experts[0];
    let entry = expert0.top_tokens.iter().find(|t| t.id == 0).unwrap();
    assert_eq!((entry.routed, entry.occurrences), (1, 3));
    close(entry.share, 1.0 / 3.0, "vocabulary share");
    assert_eq!(expert0.top_domain.as_deref(), Some("a"));
    close(expert0.share_of_assignments, 2.0 / 8.0, "expert share");
    // A token seen fewer times than asked for is not ranked.
    let strict = counts.report(VocabularyOptions {
        top_tokens: 5,
        min_occurrences: 2,
    });
    assert!(strict.moe_layers[0].experts[1]
        .top_tokens
        .iter()
        .all(|t| t.id == 0));
    // A trace of another shape is refused.
    let wide = trace(8, "softmax", vec![layer(vec![vec![0, 1]], None)]);
    assert!(counts.add("a", &wide, true).is_err());
}

/// Two corpus reports compared: load and per-domain JSD, shared domains only, unlike models refused.
#[test]
fn corpus_files_compare_by_load_and_domain_divergence() {
    use crate::analysis::compare::jsd_bits;
    use crate::analysis::corpus::{compare_corpora, CorpusCounts, VocabularyOptions};
    let x = trace(
        4,
        "softmax",
        vec![layer(vec![vec![0, 1], vec![0, 2]], None)],
    );
    let y = trace(
        4,
        "softmax",
        vec![layer(vec![vec![2, 3], vec![3, 2]], None)],
    );
    let report = |pairs: &[(&str, &Trace)]| {
        let mut counts = CorpusCounts::new(pairs[0].1);
        for (domain, t) in pairs {
            counts.add(domain, t, true).unwrap();
        }
        counts.report(VocabularyOptions::default())
    };
    let a = report(&[("en", &x), ("zh", &y)]);
    let same = compare_corpora(&a, &a).unwrap();
    assert_eq!(same.domains, ["en", "zh"]);
    assert!(same.moe_layers[0].load_jsd_bits.abs() < 1e-12);
    assert_eq!(same.moe_layers[0].mean_domain_jsd_bits, Some(0.0));
    // B routes "en" as A routes "zh", and has no "zh": one shared domain.
    let b = report(&[("en", &y), ("code", &x)]);
    let c = compare_corpora(&a, &b).unwrap();
    assert_eq!(c.domains, ["en"]);
    let (en_a, en_b) = ([0.5, 0.25, 0.25, 0.0], [0.0, 0.0, 0.5, 0.5]);
    close(
        c.moe_layers[0].domain_jsd_bits[0],
        jsd_bits(&en_a, &en_b),
        "en jsd",
    );
    // Whole loads: A and B both hold x and y once: the same load.
    close(c.moe_layers[0].load_jsd_bits, 0.0, "load jsd");
    let wide = trace(8, "softmax", vec![layer(vec![vec![0, 1]], None)]);
    let w = report(&[("en", &wide)]);
    assert!(compare_corpora(&a, &w).is_err());
}
