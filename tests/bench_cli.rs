//! `moescope bench`, `devices` and the CPU fallback, run as a user runs them. Figures are not
//! judged here (benchmarks are not timed tests); the report's shape and internal consistency are.

mod common;

use common::moescope;

#[test]
fn bench_reports_speed_phases_overhead_and_memory() {
    let model = common::fixtures_dir().join("olmoe");
    let (ok, out, err) = moescope(&[
        "bench",
        model.to_str().unwrap(),
        "--tokens",
        "16",
        "--repeat",
        "2",
        "--json",
    ]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["engine"], "moescope");
    assert_eq!(r["tokens"], 16);
    assert_eq!(r["repeat"], 2);
    let prefill = r["prefill_ms"]["median"].as_f64().unwrap();
    assert!(prefill > 0.0);
    let tps = r["tokens_per_s"].as_f64().unwrap();
    assert!((tps - 16.0 / (prefill / 1e3)).abs() < 1e-6 * tps);
    assert!(r["capture_overhead"].is_f64() && r["prefill_no_capture_ms"].is_f64());
    assert!(r["moe_flop_efficiency"].as_f64().unwrap() > 0.0);
    assert!(r["weights_mb"].as_f64().unwrap() > 0.0);
    for phase in ["attention", "router", "experts"] {
        assert!(r["phases_ms"][phase].as_f64().unwrap() > 0.0, "{phase}");
    }

    // --no-capture drops the overhead runs; a prompt needs the tokenizer.
    let (ok, out, _) = moescope(&[
        "bench",
        model.to_str().unwrap(),
        "--tokens",
        "4",
        "--repeat",
        "1",
        "--no-capture",
        "--json",
    ]);
    assert!(ok);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["capture"], "off");
    assert!(r["capture_overhead"].is_null());
    let (ok, _, err) = moescope(&["bench", model.to_str().unwrap(), "--prompt", "hi"]);
    assert!(!ok && err.contains("tokenizer"), "{err}");
}

#[test]
fn devices_lists_the_cpu_and_cuda_falls_back_to_it() {
    let (ok, out, _) = moescope(&["devices", "--json"]);
    assert!(ok);
    let devices: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(devices[0]["name"], "cpu");
    if devices.as_array().unwrap().len() > 1 {
        return; // a machine with a usable GPU: nothing to fall back from
    }
    let model = common::fixtures_dir().join("mixtral");
    let trace = std::env::temp_dir().join(format!("moescope-fallback-{}.json", std::process::id()));
    let (ok, _, err) = moescope(&[
        "trace",
        model.to_str().unwrap(),
        "--token-ids",
        "1,2,3",
        "--device",
        "cuda",
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("running on the CPU instead"), "{err}");
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    assert_eq!(
        t["model"]["device"], "cpu",
        "the trace says where it really ran"
    );
    // Unknown device names are still errors, not a silent CPU run.
    let (ok, _, err) = moescope(&[
        "trace",
        model.to_str().unwrap(),
        "--token-ids",
        "1",
        "--device",
        "tpu",
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("unknown device 'tpu'"), "{err}");
}

#[test]
fn stats_compare_dtype_reports_routing_flips() {
    let model = common::fixtures_dir().join("mixtral");
    let (ok, out, err) = moescope(&[
        "stats",
        model.to_str().unwrap(),
        "--token-ids",
        "1,2,3,4,5,6,7,8",
        "--dtype",
        "bf16",
        "--compare-dtype",
        "f32",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let flips = &v["routing_flips"];
    assert_eq!(flips["run"], "bf16");
    assert_eq!(flips["reference"], "f32");
    assert_eq!(flips["num_tokens"], 8);
    assert_eq!(flips["moe_layers"].as_array().unwrap().len(), 2);
    // Against itself nothing flips.
    let (ok, out, _) = moescope(&[
        "stats",
        model.to_str().unwrap(),
        "--token-ids",
        "1,2,3,4",
        "--compare-dtype",
        "f32",
        "--json",
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["routing_flips"]["tokens_with_any_flip"], 0);
}

/// Two checkpoints on the same tokens: identical weights (per-expert and packed layouts of the
/// same model) flip nothing and drift nothing; two different models flip and drift, with the
/// weight change on agreeing experts reported; models whose MoE layers differ are refused.
#[test]
fn stats_compare_model_reports_flips_weights_and_kl() {
    let fixture = |n: &str| common::fixtures_dir().join(n).display().to_string();
    let run = |a: &str, b: &str| {
        moescope(&[
            "stats",
            &fixture(a),
            "--token-ids",
            "5,17,3,99,42,7,8,1",
            "--compare-model",
            &fixture(b),
            "--json",
        ])
    };
    let (ok, out, err) = run("mixtral", "mixtral-packed");
    assert!(ok, "{err}");
    let f = &serde_json::from_str::<serde_json::Value>(&out).unwrap()["routing_flips"];
    assert_eq!(f["tokens_with_any_flip"], 0);
    assert!(f["last_logits_kl"].as_f64().unwrap() < 1e-9, "{f}");
    assert!(f["reference"].as_str().unwrap().ends_with("mixtral-packed"));
    let (ok, out, err) = run("deepseek-v3", "deepseek-v3-bf16-sharded");
    assert!(ok, "{err}");
    let f = &serde_json::from_str::<serde_json::Value>(&out).unwrap()["routing_flips"];
    assert!(f["tokens_with_any_flip"].as_u64().unwrap() > 0, "{f}");
    assert!(f["last_logits_kl"].as_f64().unwrap() > 0.0);
    assert!(f["moe_layers"][0]["agreeing_weight_diff_max"].is_f64());
    let (ok, _, err) = run("mixtral", "qwen3-moe");
    assert!(!ok && err.contains("MoE layers"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
