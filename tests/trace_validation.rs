//! A trace file is validated once, when it is read, so `stats`, `export` and the app reject the
//! same bad files with the same one-line message naming the file — and never index past a row.

mod common;

use common::moescope;
use moescope::engine::{Engine, EngineOptions};
use serde_json::{json, Value};

/// A real trace of the mixtral fixture, as JSON.
fn good_trace() -> Value {
    let dir = common::fixtures_dir().join("mixtral");
    let mut engine = Engine::load(&dir, EngineOptions::default()).unwrap();
    let trace = engine.run(&[1, 5, 9, 3]).unwrap();
    serde_json::from_str(&trace.to_json()).unwrap()
}

/// Writes `edit(good_trace())` and checks `stats` and `export` both fail with `needle`.
fn rejected(case: &str, edit: impl FnOnce(&mut Value), needle: &str) {
    let mut v = good_trace();
    edit(&mut v);
    let dir = std::env::temp_dir().join(format!("moescope-trace-{}-{case}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let png = dir.join("out.png");
    for args in [
        vec!["stats", path.to_str().unwrap()],
        vec![
            "export",
            path.to_str().unwrap(),
            "--png",
            png.to_str().unwrap(),
        ],
    ] {
        let (ok, _, stderr) = moescope(&args);
        assert!(!ok, "{case}: {args:?} accepted the file");
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{case}: {stderr}");
        assert!(
            stderr.contains(needle) && stderr.contains("bad.json"),
            "{case}: expected '{needle}' naming bad.json, got {stderr}"
        );
        assert!(!png.exists(), "{case}: an image was written");
    }
}

#[test]
fn every_inconsistency_is_refused_by_name() {
    rejected(
        "version",
        |v| v["format_version"] = json!(9),
        "format_version 9",
    );
    rejected(
        "expert-id",
        |v| v["moe_layers"][0]["topk_ids"][1][0] = json!(9),
        "token 1 uses expert 9 of 8",
    );
    rejected(
        "repeat",
        |v| {
            let first = v["moe_layers"][0]["topk_ids"][2][0].clone();
            v["moe_layers"][0]["topk_ids"][2][1] = first;
        },
        "token 2 lists expert",
    );
    rejected(
        "rows",
        |v| {
            v["moe_layers"][1]["topk_ids"].as_array_mut().unwrap().pop();
        },
        "topk_ids has 3 rows for 4 tokens",
    );
    rejected(
        "weights-finite",
        // f32 overflow: serde refuses it while parsing (NaN cannot be written in JSON at all).
        |v| v["moe_layers"][0]["topk_weights"][0][0] = json!(1e39),
        "number out of range",
    );
    rejected(
        "logits-width",
        |v| {
            for row in v["moe_layers"][0]["router_logits"].as_array_mut().unwrap() {
                row.as_array_mut().unwrap().pop();
            }
        },
        "router_logits is 4×7, expected 4×8",
    );
    rejected(
        "order",
        |v| v["moe_layers"][1]["layer"] = json!(0),
        "layer indices must increase",
    );
    rejected(
        "layer-range",
        |v| v["moe_layers"][1]["layer"] = json!(7),
        "index out of the model's 2 layers",
    );
    rejected(
        "timings",
        |v| v["moe_layers"][0]["expert_timings_ms"] = json!([1.0, 2.0]),
        "expert_timings_ms does not have 8 entries",
    );
    rejected(
        "json",
        |v| *v = json!({"format_version": 1}),
        "missing field",
    );
}

/// The good trace itself passes, through both commands.
#[test]
fn a_consistent_trace_is_accepted() {
    let dir = std::env::temp_dir().join(format!("moescope-trace-{}-good", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("good.json");
    std::fs::write(&path, good_trace().to_string()).unwrap();
    let (ok, _, err) = moescope(&["stats", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    let png = dir.join("out.png");
    let (ok, _, err) = moescope(&[
        "export",
        path.to_str().unwrap(),
        "--png",
        png.to_str().unwrap(),
    ]);
    assert!(ok && png.exists(), "{err}");
}

/// Values JSON cannot carry (NaN) still cannot pass through a trace built in memory.
#[test]
fn non_finite_values_are_named() {
    let dir = common::fixtures_dir().join("mixtral");
    let mut engine = Engine::load(&dir, EngineOptions::default()).unwrap();
    let mut trace = engine.run(&[1, 5, 9, 3]).unwrap().clone();
    assert_eq!(trace.validate(), Ok(()));
    let k = trace.moe_layers[0].topk_weights.cols();
    let mut w = trace.moe_layers[0].topk_weights.as_slice().to_vec();
    w[k + 1] = f32::NAN;
    trace.moe_layers[0].topk_weights = moescope::trace::Matrix::from_vec(4, k, w);
    assert_eq!(
        trace.validate(),
        Err("layer 0: topk_weights of token 1 is not finite".into())
    );
}

/// A trace larger than the cap is refused from its size alone, before any of it is read.
#[test]
fn oversized_trace_files_are_refused_unread() {
    use moescope::trace::{Trace, MAX_JSON_BYTES};
    let path = std::env::temp_dir().join(format!("moescope-huge-{}.json", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(MAX_JSON_BYTES + 1).unwrap(); // sparse: no disk used
    let err = Trace::read_json(&path).unwrap_err().to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(
        err.contains(&path.display().to_string())
            && err.contains("4294967297 bytes is more than the 4294967296 a JSON trace may have"),
        "{err}"
    );
}
