//! Metrics on real routing: `hf_aux_loss` against transformers' `aux_loss` on every fixture that
//! has one (tests/fixtures, written by make_fixtures.py), and `moescope stats` from the command line.

mod common;

use common::{fixture_dirs, fixtures_dir, reference};
use moescope::analysis::{analyze, AnalysisOptions};
use moescope::engine::{Engine, EngineOptions};
use serde_json::Value;
use std::process::Command;

#[test]
fn hf_aux_loss_matches_transformers() {
    let mut compared = 0;
    for dir in fixture_dirs() {
        let r = reference(&dir);
        let mut engine = Engine::load(&dir, EngineOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", r.name));
        let trace = engine
            .run(&r.input_ids)
            .unwrap_or_else(|e| panic!("{}: {e}", r.name));
        let metrics = analyze(trace, &AnalysisOptions::default()).unwrap();
        let one_k = trace
            .moe_layers
            .iter()
            .all(|l| l.topk_ids.cols() == trace.model.top_k);
        match trace.model.router.scoring.as_str() {
            "sigmoid" => assert_eq!(metrics.hf_aux_loss, None, "{}: sigmoid router", r.name),
            // HunYuan's k differs by layer: transformers' loss (one k) is not defined.
            "softmax" if !one_k => assert_eq!(metrics.hf_aux_loss, None, "{}: k per layer", r.name),
            "softmax" => {
                let got = metrics
                    .hf_aux_loss
                    .unwrap_or_else(|| panic!("{}: no hf_aux_loss", r.name));
                // DeepSeek-V2 has no transformers aux_loss to compare with (reference null).
                if let Some(want) = r.aux_loss {
                    let relative = ((got - want) / want).abs();
                    assert!(
                        relative <= 1e-5,
                        "{}: hf_aux_loss {got}, transformers {want} (relative {relative:e})",
                        r.name
                    );
                    compared += 1;
                }
            }
            other => panic!("{}: scoring {other:?}", r.name),
        }
    }
    // mixtral ×3, qwen2-moe ×2, qwen3-moe ×2, olmoe ×2, granitemoe-shared ×2, …
    assert!(compared >= 11, "compared {compared} fixtures");
}

fn stats_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_moescope"))
        .arg("stats")
        .args(args)
        .arg("--json")
        .output()
        .expect("run moescope");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stats {args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout).expect("stats prints JSON")
}

const LAYER_NAMES: &[&str] = &[
    "layer",
    "expert_counts",
    "load_fraction",
    "cv",
    "max_vio",
    "gini",
    "jain",
    "load_entropy",
    "dead_experts",
    "router_entropy_mean",
    "topk_mass_mean",
    "margin_mean",
    "switch_loss",
    "z_loss",
    "seq_aux_loss",
    "usage_std",
    "prob_var",
    "usage_kl",
    "capacity",
    "dropped_fraction",
    "dropped_tokens_position",
    "dropped_tokens_probs",
    "repeat_top1",
    "repeat_top12",
    "coactivation",
    "jaccard_next_layer",
    "utilization_balance",
    "utilization_band",
    "expert_time_spread",
    "expert_time_band",
];

#[test]
fn stats_cli_on_a_model_and_on_trace_files() {
    let model = fixtures_dir().join("mixtral");
    let model = model.to_str().unwrap();
    let ids = "1,2,3,4,5,6,7,8,9,10,11,12";
    let from_model = stats_json(&[model, "--token-ids", ids]);
    let layers = from_model["moe_layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for layer in layers {
        for name in LAYER_NAMES {
            assert!(layer.get(name).is_some(), "layer lacks {name}: {layer}");
        }
    }
    assert!(layers[0]["switch_loss"].is_f64());
    assert!(layers[1]["jaccard_next_layer"].is_null(), "last MoE layer");
    assert!(from_model["hf_aux_loss"].is_f64());
    assert!(from_model["layer_mean"]["cv"].is_f64());
    assert_eq!(from_model["num_tokens"], 12);
    assert_eq!(layers[0]["capacity"], 4, "ceil(12·2/8·1.25)");

    // The same run through a trace file gives the same metrics.
    let dir = std::env::temp_dir().join(format!("moescope-analysis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.json");
    let b = dir.join("b.json");
    for (path, ids) in [(&a, ids), (&b, "5,6,7")] {
        let ok = Command::new(env!("CARGO_BIN_EXE_moescope"))
            .args(["trace", model, "--token-ids", ids, "--out"])
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "trace {ids}");
    }
    let a = a.to_str().unwrap();
    let b = b.to_str().unwrap();
    // Equal but for the per-expert time spread, which comes from wall-clock timings of each run.
    assert_eq!(
        without_timings(stats_json(&[a])),
        without_timings(from_model.clone())
    );

    // Two traces pool as one batch; --skip-first drops each trace's first token.
    let pooled = stats_json(&[a, b, "--skip-first", "1", "--capacity-factor", "2"]);
    assert_eq!(pooled["num_traces"], 2);
    assert_eq!(pooled["num_tokens"], 11 + 2);
    assert_eq!(pooled["capacity_factor"], 2.0);
    let counts: u64 = pooled["moe_layers"][0]["expert_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(counts, 13 * 2, "T·k assignments");
    std::fs::remove_dir_all(&dir).ok();
}

/// Stats JSON without its timing-derived fields (`expert_time_*`), which differ run to run.
fn without_timings(mut v: serde_json::Value) -> serde_json::Value {
    let strip = |o: &mut serde_json::Value| {
        if let Some(o) = o.as_object_mut() {
            o.retain(|k, _| !k.starts_with("expert_time"));
        }
    };
    strip(&mut v["layer_mean"]);
    if let Some(layers) = v["moe_layers"].as_array_mut() {
        layers.iter_mut().for_each(strip);
    }
    v
}
