//! Router parity with Hugging Face transformers on tiny random-weight checkpoints of every family,
//! in both config layouts, per-expert and packed weights, f32 and sharded bf16
//! (tests/fixtures, written by tests/fixtures/make_fixtures.py), and on llama.cpp's GGUF
//! conversions of them (tests/fixtures/gguf/models, make_gguf_models.py). Chosen experts must be
//! identical; logits and weights within 1e-4.

mod common;

use common::{fixture_dirs, max_abs_diff, reference, RefLayer};
use moescope::engine::capture::ExpertKernel;
use moescope::engine::{Engine, EngineOptions};
use moescope::trace::Trace;

const TOLERANCE: f32 = 1e-4;

fn check_layers(name: &str, trace: &Trace, expected: &[RefLayer], last_logits: &[f32]) {
    assert_eq!(
        trace.moe_layers.iter().map(|l| l.layer).collect::<Vec<_>>(),
        expected.iter().map(|l| l.layer).collect::<Vec<_>>(),
        "{name}: MoE layer indices"
    );
    for (got, want) in trace.moe_layers.iter().zip(expected) {
        let layer = want.layer;
        for (t, ids) in want.topk_ids.iter().enumerate() {
            assert_eq!(
                got.topk_ids.row(t),
                ids.as_slice(),
                "{name}: layer {layer} token {t} experts"
            );
            let d = max_abs_diff(got.topk_weights.row(t), &want.topk_weights[t]);
            assert!(
                d <= TOLERANCE,
                "{name}: layer {layer} token {t} weights differ by {d}"
            );
            let d = max_abs_diff(got.router_logits.row(t), &want.router_logits[t]);
            assert!(
                d <= TOLERANCE,
                "{name}: layer {layer} token {t} logits differ by {d}"
            );
        }
        assert_eq!(
            got.topk_ids.rows(),
            want.topk_ids.len(),
            "{name}: layer {layer} token count"
        );
    }
    let scale = last_logits.iter().fold(1.0f32, |m, x| m.max(x.abs()));
    let d = max_abs_diff(&trace.last_logits, last_logits);
    assert!(
        d <= TOLERANCE * scale,
        "{name}: last logits differ by {d} (scale {scale})"
    );
}

/// What a GGUF file's routing is checked against: the original fixture's reference for f32
/// files, transformers on the file's dequantized weights for f16 and quantized ones.
#[derive(serde::Deserialize)]
struct GgufReference {
    input_ids: Vec<u32>,
    moe_layers: Vec<RefLayer>,
    last_logits: Vec<f32>,
}

fn gguf_reference(file: &std::path::Path) -> GgufReference {
    let own = file.with_extension("reference.json");
    let path = if own.is_file() {
        own
    } else {
        let stem = file.file_stem().unwrap().to_str().unwrap();
        let fixture = stem
            .strip_suffix("-f32")
            .expect("an f32 file or its own reference");
        common::fixtures_dir().join(fixture).join("reference.json")
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files of tests/fixtures/gguf/models whose names end in `suffix`, sorted.
fn gguf_models_ending(suffix: &str) -> Vec<std::path::PathBuf> {
    let dir = common::fixtures_dir().join("gguf/models");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// llama.cpp's converter's files (stacked experts, permuted llama q/k, Q8_0 blocks) route like
/// transformers, on both expert paths.
#[test]
fn every_gguf_conversion_matches_transformers() {
    let files = gguf_models_ending(".gguf");
    assert!(
        files.len() >= 28,
        "expected the GGUF conversions, found {}",
        files.len()
    );
    for file in files {
        let r = gguf_reference(&file);
        for kernel in [ExpertKernel::Fused, ExpertKernel::Grouped] {
            let options = EngineOptions {
                expert_kernel: kernel,
                ..EngineOptions::default()
            };
            let name = format!("{} ({} experts)", file.display(), kernel.label());
            let mut engine = Engine::load(&file, options).unwrap_or_else(|e| panic!("{name}: {e}"));
            let trace = engine
                .run(&r.input_ids)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            check_layers(&name, trace, &r.moe_layers, &r.last_logits);
        }
    }
}

#[test]
fn every_fixture_matches_transformers() {
    check_every_fixture(ExpertKernel::Fused);
}

/// The plain path (two candle matmuls per expert) must agree as well: it is what runs where the
/// fused kernels do not (CPUs without AVX-512, f32 on CUDA, Metal).
#[test]
fn every_fixture_matches_transformers_on_the_grouped_path() {
    check_every_fixture(ExpertKernel::Grouped);
}

fn check_every_fixture(kernel: ExpertKernel) {
    let dirs = fixture_dirs();
    assert!(
        dirs.len() >= 34,
        "expected the fixture set, found {}",
        dirs.len()
    );
    for dir in dirs {
        let r = reference(&dir);
        let options = EngineOptions {
            expert_kernel: kernel,
            ..EngineOptions::default()
        };
        let mut engine = Engine::load(&dir, options).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        let trace = engine
            .run(&r.input_ids)
            .unwrap_or_else(|e| panic!("{}: {e}", r.name));
        let name = format!("{} ({} experts)", r.name, kernel.label());
        check_layers(&name, trace, &r.moe_layers, &r.last_logits);
        if let (Some(prompt), Some(ids), Some(layers), Some(logits)) = (
            &r.prompt,
            &r.prompt_ids,
            &r.prompt_moe_layers,
            &r.prompt_last_logits,
        ) {
            assert_eq!(
                &engine.checkpoint.encode(prompt).unwrap(),
                ids,
                "{}: tokenizer ids",
                r.name
            );
            let trace = engine.run_prompt(prompt).unwrap();
            check_layers(&format!("{name} (prompt)"), trace, layers, logits);
        }
    }
}

/// Every registered family has fixtures in both config layouts (its `model_type`s, so Llama-4's
/// text-only and multimodal checkpoints both count), and the special layouts are present.
#[test]
fn fixture_set_covers_families_layouts_and_dtypes() {
    let refs: Vec<_> = fixture_dirs().iter().map(|d| reference(d)).collect();
    for family in moescope::model::registry::FAMILIES {
        for model_type in family.model_types {
            for layout in ["v4", "v5"] {
                assert!(
                    refs.iter()
                        .any(|r| r.model_type == *model_type && r.config_layout == layout),
                    "no {} fixture of model_type {model_type} with a {layout} config",
                    family.name
                );
            }
        }
    }
    assert!(refs.iter().any(|r| r.weights_layout == "packed"));
    assert!(refs.iter().any(|r| r.weights_layout == "fused"));
    assert!(refs.iter().any(|r| r.weights_dtype == "bfloat16"));
}

/// Feeding tokens one at a time through the KV cache must route exactly like one prefill.
#[test]
fn kv_cache_incremental_equals_prefill() {
    for dir in fixture_dirs() {
        let r = reference(&dir);
        let mut engine = Engine::load(&dir, EngineOptions::default()).unwrap();
        let prefill = engine.run(&r.input_ids).unwrap().clone();
        engine.reset();
        // Uneven chunks: 1 token, then 3, then the rest one by one.
        let (first, rest) = r.input_ids.split_at(1);
        let (middle, rest) = rest.split_at(3);
        engine.push_tokens(first).unwrap();
        engine.push_tokens(middle).unwrap();
        for id in rest {
            engine.push_tokens(&[*id]).unwrap();
        }
        let stepped = engine.trace();
        assert_eq!(stepped.tokens, prefill.tokens);
        for (a, b) in stepped.moe_layers.iter().zip(&prefill.moe_layers) {
            assert_eq!(
                a.topk_ids, b.topk_ids,
                "{}: layer {} experts",
                r.name, a.layer
            );
            let d = max_abs_diff(a.topk_weights.as_slice(), b.topk_weights.as_slice());
            assert!(
                d <= TOLERANCE,
                "{}: layer {} weights differ by {d}",
                r.name,
                a.layer
            );
            let d = max_abs_diff(a.router_logits.as_slice(), b.router_logits.as_slice());
            assert!(
                d <= TOLERANCE,
                "{}: layer {} logits differ by {d}",
                r.name,
                a.layer
            );
        }
        let d = max_abs_diff(&stepped.last_logits, &prefill.last_logits);
        assert!(d <= TOLERANCE, "{}: last logits differ by {d}", r.name);
    }
}

/// Long prompts are prefilled in chunks; a chunk size that does not divide the prompt must not
/// change routing.
#[test]
fn chunked_prefill_equals_prefill() {
    for dir in fixture_dirs() {
        let r = reference(&dir);
        let options = EngineOptions {
            prefill_chunk_tokens: 5,
            ..EngineOptions::default()
        };
        let mut engine = Engine::load(&dir, options).unwrap();
        let trace = engine.run(&r.input_ids).unwrap();
        check_layers(
            &format!("{} (chunked)", r.name),
            trace,
            &r.moe_layers,
            &r.last_logits,
        );
    }
}

/// The CPU path reads weights in their stored precision from the file mapping; the grouped path
/// widens them into f32 tensors first (what moescope did before). On every fixture — f32, bf16,
/// FP8 and MXFP4 — the two route identically and their logits agree to float rounding.
#[test]
fn stored_precision_routes_like_widened_weights() {
    for dir in fixture_dirs() {
        let r = reference(&dir);
        let run = |kernel| {
            let options = EngineOptions {
                expert_kernel: kernel,
                ..EngineOptions::default()
            };
            let mut engine = Engine::load(&dir, options).unwrap();
            engine.run(&r.input_ids).unwrap().clone()
        };
        let (stored, widened) = (run(ExpertKernel::Fused), run(ExpertKernel::Grouped));
        for (a, b) in stored.moe_layers.iter().zip(&widened.moe_layers) {
            assert_eq!(
                a.topk_ids, b.topk_ids,
                "{}: layer {} experts",
                r.name, a.layer
            );
            // The kernels sum in different orders; over Qwen3-Next's four layers (a recurrent
            // state among them) the last router logits drift by up to 1.7e-5.
            let d = max_abs_diff(a.router_logits.as_slice(), b.router_logits.as_slice());
            assert!(
                d <= 5e-5,
                "{}: layer {} logits differ by {d}",
                r.name,
                a.layer
            );
        }
        let d = max_abs_diff(&stored.last_logits, &widened.last_logits);
        assert!(d <= 1e-4, "{}: last logits differ by {d}", r.name);
    }
}

/// llama.cpp's own routing of a converted file (`bench/llama_routing.py --write-reference`: the
/// `ffn_moe_topk` nodes of its graph, its kernels, activations quantized to 8 bits where weights
/// are quantized).
#[derive(serde::Deserialize)]
struct LlamaCppRouting {
    input_ids: Vec<u32>,
    moe_layers: Vec<LlamaCppLayer>,
}

#[derive(serde::Deserialize)]
struct LlamaCppLayer {
    layer: usize,
    topk_ids: Vec<Vec<u32>>,
}

/// Files llama.cpp routes by a rule other than the model's, each with the note moescope's spec
/// carries for it (moescope follows transformers there).
const LLAMA_CPP_RULES_DIFFER: &[(&str, &str)] = &[
    // llama.cpp ranks DeepSeek-V2's groups by the sum of their best two experts.
    (
        "deepseek-v2-group-f32",
        "groups ranked by their best expert",
    ),
    // No expert_gating_func key (a transformers-5 config has no scoring_func): llama.cpp
    // scores with softmax; deepseek-v3-v4-q8_0, with the key, is held to the threshold.
    (
        "deepseek-v3-f32",
        "llama.cpp scores such a file with softmax",
    ),
    (
        "deepseek-v3-q8_0",
        "llama.cpp scores such a file with softmax",
    ),
];

/// The program users trust for these files picks the same experts as moescope on at least 97 %
/// of the decisions (a decision: one expert chosen for one token in one layer; near-ties may
/// differ under llama.cpp's 8-bit activations), except where llama.cpp's rule is not the
/// model's and the spec says so.
#[test]
fn gguf_files_route_like_llama_cpp_itself() {
    let references = gguf_models_ending(".llama-cpp.json");
    assert!(
        references.len() >= 26,
        "expected llama.cpp's routing of every conversion, found {}",
        references.len()
    );
    for reference in references {
        let text = std::fs::read_to_string(&reference).unwrap();
        let theirs: LlamaCppRouting = serde_json::from_str(&text).unwrap();
        let name = reference
            .to_string_lossy()
            .replace(".llama-cpp.json", ".gguf");
        let mut engine = Engine::load(std::path::Path::new(&name), EngineOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let trace = engine
            .run(&theirs.input_ids)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            trace.moe_layers.iter().map(|l| l.layer).collect::<Vec<_>>(),
            theirs
                .moe_layers
                .iter()
                .map(|l| l.layer)
                .collect::<Vec<_>>(),
            "{name}: MoE layers"
        );
        let (mut decisions, mut shared) = (0usize, 0usize);
        for (ours, theirs) in trace.moe_layers.iter().zip(&theirs.moe_layers) {
            assert_eq!(
                ours.topk_ids.rows(),
                theirs.topk_ids.len(),
                "{name}: tokens"
            );
            for (t, their_ids) in theirs.topk_ids.iter().enumerate() {
                let our_ids = ours.topk_ids.row(t);
                decisions += our_ids.len();
                shared += our_ids.iter().filter(|e| their_ids.contains(e)).count();
            }
        }
        let share = shared as f64 / decisions as f64;
        eprintln!("{name}: {shared}/{decisions} decisions as llama.cpp's");
        let stem = std::path::Path::new(&name)
            .file_stem()
            .unwrap()
            .to_string_lossy();
        if let Some((_, note)) = LLAMA_CPP_RULES_DIFFER.iter().find(|(f, _)| *f == stem) {
            let model =
                moescope::model::gguf::GgufModel::open(std::path::Path::new(&name)).unwrap();
            let (_, _, spec) = moescope::model::gguf_spec::spec_of(&model).unwrap();
            assert!(
                spec.notes.iter().any(|n| n.contains(note)),
                "{name}: routes unlike llama.cpp without the note '{note}' (notes: {:?})",
                spec.notes
            );
            continue;
        }
        assert!(
            share >= 0.97,
            "{name}: {shared} of {decisions} decisions as llama.cpp's ({:.1} %)",
            100.0 * share
        );
    }
}

/// One intervention case of tests/fixtures/interventions (make_intervention_references.py).
#[derive(serde::Deserialize)]
struct InterventionCase {
    interventions: moescope::routing::Interventions,
    moe_layers: Vec<InterventionLayer>,
    last_logits: Vec<f32>,
}

#[derive(serde::Deserialize)]
struct InterventionLayer {
    layer: usize,
    topk_ids: Vec<Vec<u32>>,
    topk_weights: Vec<Vec<f32>>,
}

#[derive(serde::Deserialize)]
struct InterventionReference {
    input_ids: Vec<u32>,
    cases: Vec<InterventionCase>,
}

/// A row's (expert, weight) pairs by expert id, so the comparison ignores slot order.
fn by_expert(ids: &[u32], weights: &[f32]) -> (Vec<u32>, Vec<f32>) {
    let mut pairs: Vec<(u32, f32)> = ids.iter().copied().zip(weights.iter().copied()).collect();
    pairs.sort_by_key(|p| p.0);
    pairs.into_iter().unzip()
}

/// `--top-k`, `--ablate` and `--zero-expert` route and compute as transformers does when a user
/// changes its modules' top_k, masks a router's logits (and selection bias) with −inf by a hook,
/// or zeroes an expert's down projection: on a fixture of every family.
#[test]
fn interventions_match_transformers() {
    let dir = common::fixtures_dir().join("interventions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{} intervention references", files.len());
    let mut cases = 0;
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        let reference: InterventionReference =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        // The -v4 twin holds the same weights under the older config layout.
        let twin = common::fixtures_dir().join(format!("{name}-v4"));
        let folders: Vec<_> = std::iter::once(common::fixtures_dir().join(&name))
            .chain(twin.is_dir().then_some(twin))
            .collect();
        for (folder, case) in reference
            .cases
            .iter()
            .flat_map(|case| folders.iter().map(move |f| (f, case)))
        {
            let what = format!(
                "{} ({})",
                folder.file_name().unwrap().to_string_lossy(),
                case.interventions.describe()
            );
            let options = EngineOptions {
                interventions: case.interventions.clone(),
                ..EngineOptions::default()
            };
            let mut engine =
                Engine::load(folder, options).unwrap_or_else(|e| panic!("{what}: {e}"));
            let trace = engine.run(&reference.input_ids).unwrap();
            assert_eq!(trace.moe_layers.len(), case.moe_layers.len(), "{what}");
            for (got, want) in trace.moe_layers.iter().zip(&case.moe_layers) {
                assert_eq!(got.layer, want.layer, "{what}");
                for (t, (ids, weights)) in want.topk_ids.iter().zip(&want.topk_weights).enumerate()
                {
                    let (want_ids, want_w) = by_expert(ids, weights);
                    let (got_ids, got_w) = by_expert(got.topk_ids.row(t), got.topk_weights.row(t));
                    assert_eq!(
                        got_ids, want_ids,
                        "{what}: layer {} token {t} experts",
                        want.layer
                    );
                    let d = max_abs_diff(&got_w, &want_w);
                    assert!(
                        d <= TOLERANCE,
                        "{what}: layer {} token {t} weights differ by {d}",
                        want.layer
                    );
                }
            }
            let scale = case.last_logits.iter().fold(1.0f32, |m, x| m.max(x.abs()));
            let d = max_abs_diff(&trace.last_logits, &case.last_logits);
            assert!(d <= TOLERANCE * scale, "{what}: last logits differ by {d}");
            cases += 1;
        }
    }
    assert!(cases >= 103, "{cases} intervention runs");
}
