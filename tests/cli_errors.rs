//! Bad input gets one readable line naming the file and the problem, a non-zero exit, no panic.
//! Each case starts from a good fixture copied into a temp folder and breaks one thing.

mod common;

use common::moescope;

use std::path::{Path, PathBuf};

/// A fresh copy of fixture `name` in a unique temp folder.
fn copy_fixture(name: &str, case: &str) -> PathBuf {
    let src = common::fixtures_dir().join(name);
    let dst = std::env::temp_dir().join(format!("moescope-test-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    dst
}

/// Runs `trace` on `dir` and returns stderr, asserting a clean one-line failure.
fn trace_fails(dir: &Path, extra: &[&str]) -> String {
    let out = dir.join("out.json");
    let mut args = vec![
        "trace",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if !extra.contains(&"--prompt") {
        args.extend(["--token-ids", "1,2,3"]);
    }
    args.extend(extra);
    let (ok, _, stderr) = moescope(&args);
    assert!(!ok, "expected failure, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one line expected: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

/// Rewrites `model.safetensors` in `dir` through `edit` (name → (shape, f32 data)).
fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(&path, out).unwrap();
}

#[test]
fn unknown_architecture_is_named_with_the_supported_list() {
    let dir = copy_fixture("mixtral", "arch");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("MixtralForCausalLM", "FancyMoeForCausalLM")
            .replace("\"mixtral\"", "\"fancy\""),
    )
    .unwrap();
    let err = trace_fails(&dir, &[]);
    assert!(err.contains("FancyMoeForCausalLM"), "{err}");
    assert!(
        err.contains("DeepseekV3ForCausalLM") && err.contains("MixtralForCausalLM"),
        "{err}"
    );
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_fixture("mixtral", "missing");
    rewrite_weights(&dir, |t| {
        t.retain(|(n, _, _)| n != "model.layers.1.self_attn.k_proj.weight")
    });
    let err = trace_fails(&dir, &[]);
    assert!(
        err.contains("model.layers.1.self_attn.k_proj.weight"),
        "{err}"
    );
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn shape_mismatch_is_named() {
    let dir = copy_fixture("mixtral", "shape");
    rewrite_weights(&dir, |t| {
        let norm = t
            .iter_mut()
            .find(|(n, _, _)| n == "model.norm.weight")
            .unwrap();
        norm.1 = vec![norm.1[0] / 2];
        norm.2.truncate(norm.2.len() / 2);
    });
    let err = trace_fails(&dir, &[]);
    assert!(
        err.contains("model.norm.weight") && err.contains("shape"),
        "{err}"
    );
}

#[test]
fn truncated_safetensors_is_reported() {
    let dir = copy_fixture("mixtral", "truncated");
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = trace_fails(&dir, &[]);
    assert!(
        err.contains("truncated") && err.contains("model.safetensors"),
        "{err}"
    );
}

#[test]
fn garbage_safetensors_is_reported() {
    let dir = copy_fixture("mixtral", "garbage");
    std::fs::write(
        dir.join("model.safetensors"),
        b"this is not a safetensors file at all",
    )
    .unwrap();
    let err = trace_fails(&dir, &[]);
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn bad_config_json_is_reported() {
    let dir = copy_fixture("mixtral", "badjson");
    std::fs::write(dir.join("config.json"), "{ \"hidden_size\": 32, ").unwrap();
    let err = trace_fails(&dir, &[]);
    assert!(
        err.contains("config.json") && err.contains("invalid JSON"),
        "{err}"
    );

    let cfg = std::fs::read_to_string(common::fixtures_dir().join("mixtral/config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"hidden_size\": 32", "\"hidden_size\": \"big\""),
    )
    .unwrap();
    let err = trace_fails(&dir, &[]);
    assert!(err.contains("hidden_size"), "{err}");
}

#[test]
fn pickle_checkpoints_are_refused() {
    let dir = copy_fixture("mixtral", "pickle");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("pytorch_model.bin"), b"\x80\x02}q\x00.").unwrap();
    let err = trace_fails(&dir, &[]);
    assert!(
        err.contains("pytorch_model.bin") && err.contains("safetensors"),
        "{err}"
    );
    let (ok, _, stderr) = moescope(&["info", dir.join("pytorch_model.bin").to_str().unwrap()]);
    assert!(!ok && stderr.contains("pickle"), "{stderr}");
}

#[test]
fn token_id_out_of_range_is_reported() {
    let dir = common::fixtures_dir().join("mixtral");
    let out = std::env::temp_dir().join("moescope-test-oob.json");
    let (ok, _, stderr) = moescope(&[
        "trace",
        dir.to_str().unwrap(),
        "--token-ids",
        "1,99999",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("99999") && stderr.contains("position 1"),
        "{stderr}"
    );
}

#[test]
fn nan_weights_are_reported() {
    let dir = copy_fixture("mixtral", "nan");
    rewrite_weights(&dir, |t| {
        let w = t
            .iter_mut()
            .find(|(n, _, _)| n == "model.layers.0.self_attn.q_proj.weight")
            .unwrap();
        w.2[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    let err = trace_fails(&dir, &[]);
    assert!(err.contains("NaN") && err.contains("layer 0"), "{err}");
}

#[test]
fn prompt_without_tokenizer_asks_for_ids() {
    let dir = copy_fixture("qwen3-moe", "notok");
    let err = trace_fails(&dir, &["--prompt", "hello"]);
    assert!(
        err.contains("tokenizer.json") && err.contains("token ids"),
        "{err}"
    );
}

#[test]
fn trace_and_info_succeed_on_a_fixture() {
    let dir = common::fixtures_dir().join("mixtral");
    let out = std::env::temp_dir().join(format!("moescope-test-ok-{}.json", std::process::id()));
    let (ok, _, stderr) = moescope(&[
        "trace",
        dir.to_str().unwrap(),
        "--prompt",
        "hello world",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let trace = moescope::trace::Trace::read_json(&out).unwrap();
    assert_eq!(trace.model.architecture, "MixtralForCausalLM");
    assert_eq!(trace.tokens.first().map(|t| t.text.as_str()), Some("<s>"));
    let (ok, stdout, _) = moescope(&["info", dir.to_str().unwrap()]);
    assert!(ok && stdout.contains("Mixtral"), "{stdout}");
}

/// Rewrites config.json's JSON through `edit`.
fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
}

/// The spec is validated when the checkpoint opens: an impossible top-k, groups that do not
/// divide the experts, an unknown rope type, a zero sliding window or a sparsemixer with k ≠ 2
/// are one-line errors naming config.json and the field, never a panic in a kernel.
#[test]
fn impossible_configs_are_refused_with_the_field_named() {
    type Edit = fn(&mut serde_json::Value);
    let cases: &[(&str, &str, Edit, &str)] = &[
        (
            "mixtral",
            "topk99",
            |c| c["num_experts_per_tok"] = 99.into(),
            "num_experts_per_tok",
        ),
        (
            "mixtral",
            "topk0",
            |c| c["num_experts_per_tok"] = 0.into(),
            "1..=8",
        ),
        (
            "deepseek-v3",
            "groups",
            |c| c["n_group"] = 3.into(),
            "divide",
        ),
        (
            "glm4-moe",
            "topkgroup",
            |c| c["topk_group"] = 9.into(),
            "topk_group",
        ),
        (
            "mixtral",
            "rope",
            |c| c["rope_parameters"]["rope_type"] = "fancy".into(),
            "rope type 'fancy'",
        ),
        (
            "phimoe",
            "sparsemixer-k",
            |c| c["num_experts_per_tok"] = 3.into(),
            "sparsemixer",
        ),
        (
            "dbrx",
            "dbrx-topk",
            |c| c["ffn_config"]["moe_top_k"] = 17.into(),
            "ffn_config.moe_top_k",
        ),
        (
            "ernie4_5-moe",
            "ernie-k",
            |c| c["moe_k"] = 0.into(),
            "moe_k",
        ),
        (
            "mixtral",
            "heads",
            |c| c["num_key_value_heads"] = 3.into(),
            "num_key_value_heads",
        ),
        (
            "gpt-oss",
            "layer-types",
            |c| c["layer_types"][0] = "strided".into(),
            "layer_types[0]",
        ),
        (
            "llama4-cg",
            "text-config",
            |c| c["text_config"]["num_local_experts"] = 0.into(),
            "text_config.num_local_experts",
        ),
    ];
    for (fixture, case, edit, needle) in cases {
        let dir = copy_fixture(fixture, case);
        edit_config(&dir, *edit);
        let err = trace_fails(&dir, &[]);
        assert!(
            err.contains(needle) && err.contains("config.json"),
            "{case}: {err}"
        );
    }
}

/// A tensor whose dtype the kernels cannot read is named with its dtype and file, not reported
/// as missing.
#[test]
fn unsupported_tensor_dtype_is_named() {
    let dir = copy_fixture("mixtral", "dtype");
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            if n == "model.norm.weight" {
                // Same bytes, declared as 4-byte integers.
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::I32,
                    v.shape().to_vec(),
                    v.data(),
                )
                .unwrap();
                (n, view)
            } else {
                (n, v)
            }
        })
        .collect();
    let out = safetensors::serialize(tensors, None).unwrap();
    std::fs::write(&path, out).unwrap();
    let err = trace_fails(&dir, &[]);
    assert!(
        err.contains("model.norm.weight")
            && err.contains("I32")
            && err.contains("model.safetensors"),
        "{err}"
    );
}

/// Output piped into a reader that stops early (`| head`) ends the process quietly, no panic.
#[cfg(unix)]
#[test]
fn closed_stdout_is_not_a_panic() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_moescope"))
        .args([
            "info",
            common::fixtures_dir().join("mixtral").to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before anything is printed
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Rewrites the named safetensors file of `dir` keeping every tensor's dtype; `edit` may change
/// (name, dtype, shape, bytes) entries or drop them.
fn rewrite_typed(
    path: &Path,
    edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// Quantized tensors that lie about their layout are one-line errors naming the tensor and the
/// file: FP8 scales that do not tile their weight, an FP8 weight without scales, MXFP4 blocks of
/// the wrong shape, an unknown quantization method.
#[test]
fn lying_quantized_tensors_are_named() {
    let fp8 = "model.layers.1.self_attn.q_a_proj.weight";
    let dir = copy_fixture("deepseek-v3-fp8", "fp8-scales");
    rewrite_typed(&dir.join("model.safetensors"), |t| {
        let s = t
            .iter_mut()
            .find(|e| e.0 == format!("{fp8}_scale_inv"))
            .unwrap();
        // One scale too many in the last dimension.
        let extra = s.2.last().copied().unwrap() + 1;
        let rows = s.2[0];
        *s.2.last_mut().unwrap() = extra;
        s.3 = vec![0u8; rows * extra * 4];
    });
    let err = trace_fails(&dir, &[]);
    assert!(
        err.contains(&format!("{fp8}_scale_inv"))
            && err.contains("do not tile")
            && err.contains("model.safetensors"),
        "{err}"
    );

    let dir = copy_fixture("deepseek-v3-fp8", "fp8-no-scales");
    rewrite_typed(&dir.join("model.safetensors"), |t| {
        t.retain(|e| e.0 != format!("{fp8}_scale_inv"))
    });
    let err = trace_fails(&dir, &[]);
    assert!(
        err.contains(fp8) && err.contains("without its scale"),
        "{err}"
    );

    let blocks = "model.layers.0.mlp.experts.down_proj_blocks";
    let dir = copy_fixture("gpt-oss-mxfp4", "mxfp4-blocks");
    rewrite_typed(&dir.join("model.safetensors"), |t| {
        let b = t.iter_mut().find(|e| e.0 == blocks).unwrap();
        let half = b.2[1] / 2;
        b.2[1] = half;
        b.3.truncate(b.2.iter().product());
    });
    let err = trace_fails(&dir, &[]);
    assert!(err.contains(blocks) && err.contains("shape"), "{err}");

    let dir = copy_fixture("qwen3-moe-fp8", "quant-method");
    edit_config(&dir, |c| {
        c["quantization_config"]["quant_method"] = "awq".into()
    });
    let err = trace_fails(&dir, &[]);
    assert!(
        err.contains("quantization_config.quant_method")
            && err.contains("awq")
            && err.contains("config.json"),
        "{err}"
    );
}

#[test]
fn generate_streams_text_writes_the_trace_and_refuses_bad_sampling() {
    let model = common::sample_models_dir().join("mixtral-tiny");
    let out = std::env::temp_dir().join(format!("moescope-generate-{}.json", std::process::id()));
    let (m, o) = (model.to_str().unwrap(), out.to_str().unwrap());
    let args = [
        "generate",
        m,
        "--prompt",
        "The capital of France is",
        "--out",
        o,
    ];
    let (ok, stdout, stderr) = moescope(&args);
    assert!(ok, "{stderr}");
    // The prompt, then its continuation, as text; the summary on stderr.
    assert!(stdout.starts_with("The capital of France is"), "{stdout}");
    assert!(
        stdout.trim().len() > "The capital of France is".len() + 10,
        "{stdout}"
    );
    assert!(stderr.contains("stop token 1"), "{stderr}");
    let trace = moescope::trace::Trace::read_json(&out).unwrap();
    let prompt = trace.prompt_tokens.unwrap();
    assert!(trace.tokens.len() > prompt && trace.tokens[prompt].generated);
    std::fs::remove_file(&out).unwrap();

    let sampled = |seed: &str| {
        let mut sampling = args.to_vec();
        sampling.extend(["--temperature", "0.9", "--top-p", "0.95", "--seed", seed]);
        sampling.extend(["--max-new-tokens", "12", "--ignore-eos"]);
        let (ok, stdout, stderr) = moescope(&sampling);
        assert!(ok, "{stderr}");
        assert!(stderr.contains("generated 12 tokens"), "{stderr}");
        stdout
    };
    assert_eq!(sampled("4"), sampled("4"));

    for (extra, needle) in [
        (&["--temperature", "0"][..], "temperature 0 must be above 0"),
        (
            &["--temperature", "1", "--top-p", "2"][..],
            "top-p 2 must be in (0, 1]",
        ),
    ] {
        let mut bad = args.to_vec();
        bad.extend(extra);
        let (ok, _, stderr) = moescope(&bad);
        assert!(!ok && stderr.trim().lines().count() == 1, "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
    // Options that mean nothing without sampling are refused by the parser.
    let mut bad = args.to_vec();
    bad.extend(["--top-p", "0.5"]);
    let (ok, _, stderr) = moescope(&bad);
    assert!(!ok && stderr.contains("--temperature"), "{stderr}");
}

/// Interventions the model cannot run are refused in one line that says why, before a pass.
#[test]
fn interventions_the_model_cannot_run_are_one_line_errors() {
    let dir = copy_fixture("mixtral", "intervene");
    for (args, expected) in [
        (&["--top-k", "9"][..], "--top-k 9: top-k 9 is not in 1..=8"),
        (
            &["--ablate", "2:0"],
            "block 2 is not an MoE layer (MoE layers: 0, 1)",
        ),
        (&["--zero-expert", "1:8"], "the model has experts 0..7"),
        (
            &["--ablate", "0:0,0:1,0:2,0:3,0:4,0:5,0:6"],
            "top-2 needs 2 of the 8 experts",
        ),
        (
            &["--force", "0:1:3"],
            "1 experts given, the layer routes top-2",
        ),
        (&["--force", "0:1:3+3"], "an expert is given twice"),
        (
            &["--force", "0:5:1+2"],
            "the run has 3 tokens (positions 0..2)",
        ),
        (
            &["--router-noise", "jitter:1.5"],
            "jitter eps must be in [0, 1)",
        ),
        (
            &["--router-noise", "dropout:0.1"],
            "noise kind 'dropout' is not gumbel or jitter",
        ),
        (
            &["--report", "r.json"],
            "--report describes an intervention",
        ),
        (
            &["--drop-over-capacity", "0"],
            "the capacity factor must be a positive number, not 0",
        ),
    ] {
        let stderr = trace_fails(&dir, args);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(
        !dir.join("out.json").exists(),
        "a refused run wrote a trace"
    );
}

/// An intervened `trace` writes the intervened routing with the interventions recorded, and
/// its report scores it against the unmodified run.
#[test]
fn an_intervened_trace_records_its_interventions_and_reports_the_effect() {
    let dir = copy_fixture("mixtral", "intervened-trace");
    let (out, report) = (dir.join("t.json"), dir.join("r.json"));
    let (ok, _, stderr) = moescope(&[
        "trace",
        dir.to_str().unwrap(),
        "--token-ids",
        "5,17,42,99,3",
        "--top-k",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("intervention (top-1)"), "{stderr}");
    let trace = moescope::trace::Trace::read_json(&out).unwrap();
    assert_eq!(trace.model.top_k, 1);
    assert_eq!(trace.interventions.as_ref().unwrap().top_k, Some(1));
    assert!(trace.moe_layers.iter().all(|l| l.topk_ids.cols() == 1));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["interventions"], "top-1");
    assert_eq!(report["num_tokens"], 5);
    assert_eq!(report["positions"].as_array().unwrap().len(), 5);
    // Every token's expert set changes when k does.
    for layer in report["moe_layers"].as_array().unwrap() {
        assert_eq!(layer["tokens_rerouted"], 5);
    }
    // A stats run of trace files cannot intervene.
    let (ok, _, stderr) = moescope(&["stats", out.to_str().unwrap(), "--top-k", "1"]);
    assert!(
        !ok && stderr.contains("give a checkpoint, not trace files"),
        "{stderr}"
    );
}

/// An intervened `generate` also generates without the interventions and reports both
/// continuations, scored on the intervened run's tokens.
#[test]
fn an_intervened_generation_reports_both_continuations() {
    let dir = copy_fixture("mixtral", "intervened-generate");
    let (out, report) = (dir.join("g.json"), dir.join("r.json"));
    let (ok, _, stderr) = moescope(&[
        "generate",
        dir.to_str().unwrap(),
        "--token-ids",
        "5,17,42",
        "--max-new-tokens",
        "4",
        "--ignore-eos",
        "--ablate",
        "0:1,1:1",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let trace = moescope::trace::Trace::read_json(&out).unwrap();
    assert_eq!(trace.tokens.len(), 7);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["num_tokens"], 7);
    let continuation = &report["continuation"];
    assert_eq!(continuation["baseline_ids"].as_array().unwrap().len(), 4);
    let generated: Vec<u64> = trace.tokens[3..].iter().map(|t| u64::from(t.id)).collect();
    let reported: Vec<u64> = continuation["intervened_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(reported, generated);
    // Capacity is decided over a whole sequence: generation, one token at a time, refuses it.
    let (ok, _, stderr) = moescope(&[
        "generate",
        dir.to_str().unwrap(),
        "--token-ids",
        "5,17,42",
        "--drop-over-capacity",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("generate adds one token at a time"),
        "{stderr}"
    );
}

/// `compare` lines two traces up layer by layer, and names both files when they cannot be.
#[test]
fn compare_reports_per_layer_divergence_and_refuses_unlike_models() {
    let dir = copy_fixture("mixtral", "compare");
    let trace = |name: &str, extra: &[&str]| {
        let out = dir.join(name);
        let mut args = vec![
            "trace",
            dir.to_str().unwrap(),
            "--token-ids",
            "5,17,42,99",
            "--out",
        ];
        args.push(out.to_str().unwrap());
        args.extend(extra);
        let (ok, _, stderr) = moescope(&args);
        assert!(ok, "{stderr}");
        out
    };
    let (plain, top1) = (trace("a.json", &[]), trace("b.json", &["--top-k", "1"]));
    let (ok, stdout, stderr) = moescope(&[
        "compare",
        plain.to_str().unwrap(),
        top1.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["same_tokens"], true);
    for layer in report["moe_layers"].as_array().unwrap() {
        // Top-1 inside top-2: every token keeps half its set.
        assert_eq!(layer["mean_jaccard"], 0.5);
    }
    let other = common::fixtures_dir().join("deepseek-v3");
    let out = dir.join("c.json");
    let (ok, _, stderr) = moescope(&[
        "trace",
        other.to_str().unwrap(),
        "--token-ids",
        "5,17,42,99",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = moescope(&["compare", plain.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(
        !ok && stderr.starts_with("error: cannot compare ") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
}
