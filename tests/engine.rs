//! Engine behaviour beyond parity: capture levels, trace round trip, dtypes, input limits.

mod common;

use candle_core::DType;
use moescope::engine::capture::CaptureLevel;
use moescope::engine::{Engine, EngineOptions};
use moescope::trace::Trace;
use moescope::Error;

fn fixture(name: &str) -> std::path::PathBuf {
    common::fixtures_dir().join(name)
}

const IDS: &[u32] = &[5, 17, 42, 99, 3, 64, 8, 120];

#[test]
fn routing_capture_skips_logits_but_keeps_experts() {
    let dir = fixture("deepseek-v3");
    let mut full = Engine::load(&dir, EngineOptions::default()).unwrap();
    let full = full.run(IDS).unwrap().clone();
    let options = EngineOptions {
        capture: CaptureLevel::Routing,
        ..EngineOptions::default()
    };
    let mut lean = Engine::load(&dir, options).unwrap();
    let lean = lean.run(IDS).unwrap();
    for (a, b) in lean.moe_layers.iter().zip(&full.moe_layers) {
        assert!(a.router_logits.is_empty());
        assert_eq!(a.topk_ids, b.topk_ids);
        assert_eq!(a.topk_weights, b.topk_weights);
    }
    assert_eq!(full.moe_layers[0].router_logits.rows(), IDS.len());
    assert_eq!(full.moe_layers[0].router_logits.cols(), 16);
}

#[test]
fn trace_json_round_trips_and_has_the_contract_fields() {
    let mut engine = Engine::load(&fixture("qwen2-moe"), EngineOptions::default()).unwrap();
    let trace = engine.run(IDS).unwrap().clone();
    let json = trace.to_json();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["format_version"], 1);
    for key in [
        "path",
        "architecture",
        "num_layers",
        "num_experts",
        "top_k",
        "device",
        "dtype",
    ] {
        assert!(!value["model"][key].is_null(), "model.{key}");
    }
    let layer = &value["moe_layers"][0];
    assert_eq!(layer["layer"], 1, "qwen2-moe fixture: layer 0 is dense");
    for key in ["router_logits", "topk_ids", "topk_weights"] {
        assert_eq!(
            layer[key].as_array().unwrap().len(),
            IDS.len(),
            "{key} rows"
        );
    }
    for key in ["attention", "router", "experts", "shared", "total"] {
        assert!(
            layer["timings_ms"][key].as_f64().unwrap() >= 0.0,
            "timings_ms.{key}"
        );
    }
    assert_eq!(value["last_logits"].as_array().unwrap().len(), 128);
    let path = std::env::temp_dir().join(format!("moescope-roundtrip-{}.json", std::process::id()));
    trace.write_json(&path).unwrap();
    assert_eq!(Trace::read_json(&path).unwrap(), trace);
}

#[test]
fn unsupported_trace_version_is_refused() {
    let mut engine = Engine::load(&fixture("mixtral"), EngineOptions::default()).unwrap();
    let mut trace = engine.run(IDS).unwrap().clone();
    trace.format_version = 99;
    let path = std::env::temp_dir().join(format!("moescope-v99-{}.json", std::process::id()));
    trace.write_json(&path).unwrap();
    let err = Trace::read_json(&path).unwrap_err().to_string();
    assert!(err.contains("format_version 99"), "{err}");
}

#[test]
fn half_precision_compute_runs_and_mostly_agrees() {
    let dir = fixture("mixtral");
    let reference = Engine::load(&dir, EngineOptions::default())
        .unwrap()
        .run(IDS)
        .unwrap()
        .clone();
    for dtype in [DType::BF16, DType::F16] {
        let options = EngineOptions {
            dtype,
            ..EngineOptions::default()
        };
        let mut engine = Engine::load(&dir, options).unwrap();
        let trace = engine.run(IDS).unwrap();
        assert_eq!(
            trace.model.dtype,
            if dtype == DType::BF16 { "bf16" } else { "f16" }
        );
        let (mut same, mut total) = (0, 0);
        for (a, b) in trace.moe_layers.iter().zip(&reference.moe_layers) {
            for t in 0..IDS.len() {
                total += 1;
                same += usize::from(a.topk_ids.row(t)[0] == b.topk_ids.row(t)[0]);
            }
        }
        // Precision-induced flips are possible; a wholesale disagreement is a bug.
        assert!(
            same * 10 >= total * 8,
            "{dtype:?}: top-1 agrees on only {same}/{total}"
        );
    }
}

#[test]
fn prompts_longer_than_the_context_are_refused() {
    let mut engine = Engine::load(&fixture("mixtral"), EngineOptions::default()).unwrap();
    let limit = engine.checkpoint.spec.max_position_embeddings;
    let ids = vec![3u32; limit + 1];
    match engine.run(&ids) {
        Err(Error::TooManyTokens { tokens, limit: l }) => {
            assert_eq!((tokens, l), (limit + 1, limit))
        }
        other => panic!(
            "expected TooManyTokens, got {:?}",
            other.map(|t| t.num_tokens())
        ),
    }
    assert!(matches!(engine.run(&[]), Err(Error::EmptyInput)));

    // The engine's own cap applies below the model's limit, counting tokens already cached.
    let options = EngineOptions {
        max_tokens: 8,
        ..EngineOptions::default()
    };
    let mut engine = Engine::load(&fixture("mixtral"), options).unwrap();
    engine.run(&[3; 6]).unwrap();
    assert!(matches!(
        engine.push_tokens(&[3; 3]),
        Err(Error::TooManyTokens {
            tokens: 9,
            limit: 8
        })
    ));
    assert_eq!(
        engine.trace().num_tokens(),
        6,
        "a refused push leaves the trace as it was"
    );
}

#[test]
fn open_accepts_config_json_and_safetensors_paths() {
    let dir = fixture("olmoe");
    for path in [dir.join("config.json"), dir.join("model.safetensors")] {
        let mut engine = Engine::load(&path, EngineOptions::default()).unwrap();
        assert_eq!(engine.run(IDS).unwrap().moe_layers.len(), 2);
    }
}

#[test]
fn a_cancelled_pass_stops_cleanly_and_the_next_one_is_unaffected() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = fixture("deepseek-v2");
    let reference = Engine::load(&dir, EngineOptions::default())
        .unwrap()
        .run(IDS)
        .unwrap()
        .clone();
    let cancel = Arc::new(AtomicBool::new(true));
    let options = EngineOptions {
        cancel: Some(cancel.clone()),
        ..EngineOptions::default()
    };
    let mut engine = Engine::load(&dir, options).unwrap();
    assert!(matches!(engine.run(IDS), Err(Error::Cancelled)));
    assert_eq!(
        engine.trace().num_tokens(),
        0,
        "a stopped pass leaves no partial trace"
    );
    // Cancelled while feeding more tokens: the engine starts clean instead of keeping a torn cache.
    cancel.store(false, Ordering::SeqCst);
    engine.run(&IDS[..4]).unwrap();
    cancel.store(true, Ordering::SeqCst);
    assert!(matches!(
        engine.push_tokens(&IDS[4..]),
        Err(Error::Cancelled)
    ));
    assert_eq!(
        engine.trace().num_tokens(),
        0,
        "a torn pass resets the engine"
    );
    cancel.store(false, Ordering::SeqCst);
    let trace = engine.run(IDS).unwrap();
    assert_eq!(
        trace.moe_layers,
        reference
            .moe_layers
            .iter()
            .map(|l| {
                // Timings differ run to run; everything else must not.
                let mut l = l.clone();
                let same = trace
                    .moe_layers
                    .iter()
                    .find(|m| m.layer == l.layer)
                    .unwrap();
                l.timings_ms = same.timings_ms;
                l.expert_timings_ms = same.expert_timings_ms.clone();
                l
            })
            .collect::<Vec<_>>()
    );
}

/// Each expert's compute time lands in the trace (both kernels), only used experts take time, and
/// turning the timing off leaves the field empty (and out of the JSON).
#[test]
fn per_expert_times_are_recorded_for_used_experts() {
    use moescope::engine::capture::ExpertKernel;
    for kernel in [ExpertKernel::Fused, ExpertKernel::Grouped] {
        let options = EngineOptions {
            expert_kernel: kernel,
            ..EngineOptions::default()
        };
        let mut engine = Engine::load(&fixture("olmoe"), options).unwrap();
        let trace = engine.run(IDS).unwrap();
        for layer in &trace.moe_layers {
            let times = &layer.expert_timings_ms;
            assert_eq!(times.len(), trace.model.num_experts, "{kernel:?}");
            for (expert, &ms) in times.iter().enumerate() {
                let used = (0..IDS.len()).any(|t| layer.topk_ids.row(t).contains(&(expert as u32)));
                assert!(
                    ms >= 0.0 && (used || ms == 0.0),
                    "{kernel:?} expert {expert}: {ms} ms"
                );
            }
            // Experts with few rows run side by side, so only each one (not their sum) is bounded
            // by the layer's wall time for the routed experts.
            let longest = times.iter().copied().fold(0.0, f64::max);
            assert!(longest <= layer.timings_ms.experts + 1e-9, "{kernel:?}");
        }
    }
    let options = EngineOptions {
        time_experts: false,
        ..EngineOptions::default()
    };
    let mut engine = Engine::load(&fixture("olmoe"), options).unwrap();
    let trace = engine.run(IDS).unwrap();
    assert!(trace
        .moe_layers
        .iter()
        .all(|l| l.expert_timings_ms.is_empty()));
    assert!(!serde_json::to_string(trace)
        .unwrap()
        .contains("expert_timings_ms"));
}

#[test]
fn prompts_over_the_byte_limit_are_refused_before_tokenizing() {
    use moescope::model::checkpoint::{Checkpoint, MAX_PROMPT_BYTES};
    let checkpoint = Checkpoint::open(&fixture("mixtral")).unwrap();
    let text = "a ".repeat(MAX_PROMPT_BYTES / 2 + 1);
    let err = checkpoint.encode(&text).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the prompt is {} bytes, more than the {MAX_PROMPT_BYTES} a prompt may have",
            text.len()
        )
    );
    assert!(checkpoint.encode("a short prompt").is_ok());
}

/// A transformers greedy-generation reference (tests/fixtures/make_generation_references.py).
#[derive(serde::Deserialize)]
struct GenerationReference {
    prompt_ids: Vec<u32>,
    generated_ids: Vec<u32>,
    max_new_tokens: usize,
    stop: String,
    margins: Vec<f32>,
    prefill_agrees: bool,
}

/// Steps whose best and second-best logits are closer than this may pick either in float32.
const GREEDY_MARGIN: f32 = 1e-3;

fn generation_references() -> Vec<(String, std::path::PathBuf, GenerationReference)> {
    let dir = common::fixtures_dir().join("generation");
    let mut refs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let model = [fixture(&name), common::sample_models_dir().join(&name)]
                .into_iter()
                .find(|d| d.is_dir())
                .unwrap_or_else(|| panic!("no model folder for {}", path.display()));
            let reference = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            (name, model, reference)
        })
        .collect();
    refs.sort_by(|a, b| a.0.cmp(&b.0));
    refs
}

#[test]
fn greedy_generation_equals_transformers_generate() {
    use moescope::engine::generate::{GenerateOptions, Sampling, StopReason};
    let refs = generation_references();
    assert!(refs.len() >= 24, "{} generation references", refs.len());
    let mut compared_steps = 0;
    for (name, model, reference) in refs {
        assert!(reference.prefill_agrees, "{name}: transformers' own cache");
        let mut engine = Engine::load(&model, EngineOptions::default()).unwrap();
        let stop_at_eos = reference.stop == "eos";
        let options = GenerateOptions {
            max_new_tokens: reference.max_new_tokens,
            sampling: Sampling::Greedy,
            stop_ids: if stop_at_eos {
                engine.checkpoint.stop_token_ids().unwrap()
            } else {
                Vec::new()
            },
        };
        let mut streamed = Vec::new();
        let stop = engine
            .generate(&reference.prompt_ids, &options, &mut |e| {
                streamed.push(e.trace().tokens.len())
            })
            .unwrap();
        let trace = engine.trace().clone();
        let prompt_len = reference.prompt_ids.len();
        let generated: Vec<u32> = trace.tokens[prompt_len..].iter().map(|t| t.id).collect();
        // Compare up to the first near-tie of the reference; all of it when there is none.
        let sure = reference
            .margins
            .iter()
            .position(|&m| m < GREEDY_MARGIN)
            .unwrap_or(reference.margins.len());
        assert_eq!(
            generated[..sure.min(generated.len())],
            reference.generated_ids[..sure],
            "{name}: generated tokens"
        );
        compared_steps += sure;
        if sure == reference.margins.len() {
            assert_eq!(generated, reference.generated_ids, "{name}");
            let want = match generated.len() < reference.max_new_tokens {
                true => StopReason::StopToken(*generated.last().unwrap()),
                false => StopReason::MaxNewTokens,
            };
            assert_eq!(stop, want, "{name}");
        }
        // One call after the prefill, then one per token, each seeing one more token.
        let expected: Vec<usize> = (prompt_len..=trace.tokens.len()).collect();
        assert_eq!(streamed, expected, "{name}: streaming");
        assert_eq!(trace.prompt_tokens, Some(prompt_len));
        for (i, token) in trace.tokens.iter().enumerate() {
            assert_eq!(token.generated, i >= prompt_len, "{name}: token {i}");
            assert_eq!(token.logprob.is_some(), i >= prompt_len);
            assert!(token.logprob.is_none_or(|l| l.is_finite() && l <= 0.0));
        }
        // The routing of generated tokens is that of one prefill over the whole sequence.
        let all: Vec<u32> = trace.tokens.iter().map(|t| t.id).collect();
        let prefill = engine.run(&all).unwrap();
        for (g, p) in trace.moe_layers.iter().zip(&prefill.moe_layers) {
            assert_eq!(g.topk_ids, p.topk_ids, "{name}: layer {} experts", g.layer);
            let diff = common::max_abs_diff(g.topk_weights.as_slice(), p.topk_weights.as_slice());
            assert!(
                diff < 1e-4,
                "{name}: layer {} weights differ by {diff}",
                g.layer
            );
        }
    }
    assert!(compared_steps > 300, "{compared_steps} steps compared");
}

#[test]
fn generation_keeps_its_tokens_when_cancelled_and_refuses_bad_sampling() {
    use moescope::engine::generate::{GenerateOptions, Sampling, StopReason};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let cancel = Arc::new(AtomicBool::new(false));
    let options = EngineOptions {
        cancel: Some(cancel.clone()),
        ..EngineOptions::default()
    };
    let mut engine = Engine::load(&fixture("mixtral"), options).unwrap();
    let generate = GenerateOptions {
        max_new_tokens: 50,
        sampling: Sampling::Sample {
            temperature: 0.7,
            top_p: 0.9,
            seed: 11,
        },
        stop_ids: Vec::new(),
    };
    let stop = engine
        .generate(IDS, &generate, &mut |e| {
            if e.trace().tokens.len() == IDS.len() + 5 {
                cancel.store(true, Ordering::Relaxed);
            }
        })
        .unwrap();
    assert_eq!(stop, StopReason::Cancelled);
    let first = engine.trace().clone();
    assert_eq!(first.tokens.len(), IDS.len() + 5);
    // The engine keeps its cancel flag for the next run; the same seed gives the same tokens.
    cancel.store(false, Ordering::Relaxed);
    let short = GenerateOptions {
        max_new_tokens: 5,
        ..generate.clone()
    };
    engine.generate(IDS, &short, &mut |_| {}).unwrap();
    assert_eq!(engine.trace().tokens, first.tokens);
    let bad = GenerateOptions {
        sampling: Sampling::Sample {
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        },
        ..generate
    };
    let err = engine.generate(IDS, &bad, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Generation(_)), "{err}");
}

/// transformers' apply_chat_template results (tests/fixtures/make_generation_references.py).
#[derive(serde::Deserialize)]
struct ChatReferences {
    templates: std::collections::BTreeMap<String, String>,
    cases: Vec<ChatCase>,
}

#[derive(serde::Deserialize)]
struct ChatCase {
    template: String,
    system: Option<String>,
    user: String,
    rendered: Option<String>,
    ids: Option<Vec<u32>>,
    error: Option<String>,
}

/// mixtral-tiny in a temp folder with `template` as its tokenizer_config.json chat template.
fn sample_with_template(case: &str, template: &str) -> std::path::PathBuf {
    let src = common::sample_models_dir().join("mixtral-tiny");
    let dir = std::env::temp_dir().join(format!("moescope-chat-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for name in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
    ] {
        std::fs::copy(src.join(name), dir.join(name)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("tokenizer_config.json")).unwrap()).unwrap();
    config["chat_template"] = template.into();
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    dir
}

#[test]
fn chat_templates_render_and_tokenize_like_transformers() {
    use moescope::model::chat_template::ChatMessage;
    use moescope::model::checkpoint::Checkpoint;
    let path = common::fixtures_dir().join("chat_templates.json");
    let refs: ChatReferences = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert!(refs.cases.len() >= 5);
    for (i, case) in refs.cases.iter().enumerate() {
        let dir = sample_with_template(&i.to_string(), &refs.templates[&case.template]);
        let checkpoint = Checkpoint::open(&dir).unwrap();
        let template = checkpoint.chat_template().unwrap().expect("a template");
        let mut messages: Vec<ChatMessage> = case
            .system
            .iter()
            .map(|s| ChatMessage::new("system", s))
            .collect();
        messages.push(ChatMessage::new("user", &case.user));
        let rendered = template.render(&messages, true);
        match (&case.rendered, &case.error) {
            (Some(want), _) => {
                let rendered = rendered.unwrap();
                assert_eq!(&rendered, want, "case {i} ({})", case.template);
                let ids = checkpoint.encode_with(&rendered, false).unwrap();
                assert_eq!(Some(&ids), case.ids.as_ref(), "case {i} ids");
            }
            (None, Some(message)) => {
                let err = rendered.unwrap_err().to_string();
                assert!(err.contains(message.as_str()), "case {i}: {err}");
            }
            (None, None) => panic!("case {i} has neither text nor error"),
        }
        // The CLI prompts with the same ids.
        if let (Some(ids), true) = (&case.ids, case.system.is_some()) {
            let out = dir.join("chat.json");
            let (d, o) = (dir.to_str().unwrap(), out.to_str().unwrap());
            let mut args = vec!["generate", d, "--prompt", &case.user, "--chat", "--out", o];
            args.extend(["--max-new-tokens", "3", "--system"]);
            args.push(case.system.as_deref().unwrap());
            let (ok, _, stderr) = common::moescope(&args);
            assert!(ok, "{stderr}");
            let trace = Trace::read_json(&out).unwrap();
            let prompt: Vec<u32> = trace.tokens[..trace.prompt_tokens.unwrap()]
                .iter()
                .map(|t| t.id)
                .collect();
            assert_eq!(&prompt, ids, "case {i}: the CLI's chat prompt");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // A checkpoint without a template: --chat says so in one line.
    let model = common::sample_models_dir().join("mixtral-tiny");
    let out = std::env::temp_dir().join(format!("moescope-nochat-{}.json", std::process::id()));
    let (ok, _, stderr) = common::moescope(&[
        "generate",
        model.to_str().unwrap(),
        "--prompt",
        "hi",
        "--chat",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("needs a chat template"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// Noise is keyed by position and pins by absolute position, so an intervened prompt routes the
/// same in one pass, in chunks and token by token (what generation and live editing rely on);
/// clearing the interventions routes as an engine that never had them.
#[test]
fn intervened_routing_is_the_same_in_one_pass_chunks_and_token_by_token() {
    use moescope::routing::intervention::{ForcedRoute, RouterNoise};
    use moescope::routing::Interventions;
    for noise in [
        RouterNoise::Gumbel {
            scale: 0.7,
            seed: 11,
        },
        RouterNoise::Jitter { eps: 0.2, seed: 5 },
    ] {
        let interventions = Interventions {
            noise: Some(noise),
            force: vec![ForcedRoute {
                layer: 1,
                token: 6,
                experts: vec![0, 1, 2, 3, 4, 5, 6, 7],
            }],
            ..Interventions::default()
        };
        let options = EngineOptions {
            interventions: interventions.clone(),
            ..EngineOptions::default()
        };
        let mut engine = Engine::load(&fixture("olmoe"), options.clone()).unwrap();
        let one_pass = engine.run(IDS).unwrap().clone();
        assert_eq!(one_pass.interventions.as_ref(), Some(&interventions));
        let mut pinned = one_pass.moe_layers[1].topk_ids.row(6).to_vec();
        pinned.sort_unstable();
        assert_eq!(pinned, [0, 1, 2, 3, 4, 5, 6, 7]);

        let chunked_options = EngineOptions {
            prefill_chunk_tokens: 3,
            ..options
        };
        let mut chunked = Engine::load(&fixture("olmoe"), chunked_options).unwrap();
        let in_chunks = chunked.run(IDS).unwrap().clone();
        chunked.reset();
        for &id in IDS {
            chunked.push_tokens(&[id]).unwrap();
        }
        for other in [&in_chunks, chunked.trace()] {
            for (a, b) in one_pass.moe_layers.iter().zip(&other.moe_layers) {
                assert_eq!(a.topk_ids, b.topk_ids, "{noise:?}");
                let d = common::max_abs_diff(a.topk_weights.as_slice(), b.topk_weights.as_slice());
                assert!(d <= 1e-5, "{noise:?}: weights differ by {d}");
            }
        }

        let mut plain = Engine::load(&fixture("olmoe"), EngineOptions::default()).unwrap();
        let plain = plain.run(IDS).unwrap().clone();
        assert_ne!(
            plain.moe_layers[1].topk_ids,
            one_pass.moe_layers[1].topk_ids
        );
        engine.set_interventions(Interventions::default()).unwrap();
        let cleared = engine.run(IDS).unwrap();
        assert!(cleared.interventions.is_none());
        for (a, b) in plain.moe_layers.iter().zip(&cleared.moe_layers) {
            assert_eq!(a.topk_ids, b.topk_ids);
            assert_eq!(a.topk_weights, b.topk_weights);
        }
    }
}

/// Every-position logits end in the last position's, and are what the plain run computes.
#[test]
fn scoring_runs_return_every_positions_logits() {
    let mut engine = Engine::load(&fixture("mixtral"), EngineOptions::default()).unwrap();
    let logits = engine.run_scoring(IDS).unwrap();
    let vocab = engine.checkpoint.spec.vocab_size;
    assert_eq!(logits.len(), IDS.len() * vocab);
    let last = engine.trace().last_logits.clone();
    assert_eq!(&logits[(IDS.len() - 1) * vocab..], &last[..]);
    let prefix = engine.run(&IDS[..3]).unwrap().last_logits.clone();
    let d = common::max_abs_diff(&logits[2 * vocab..3 * vocab], &prefix);
    assert!(d <= 1e-4, "position 2 differs by {d}");
}

/// `--drop-over-capacity` drops exactly the assignments `stats` counts as over capacity for the
/// same trace, under both policies; a capacity no expert reaches changes nothing; it refuses to
/// extend a run, whose capacity was decided over the tokens it had.
#[test]
fn capacity_drops_are_the_assignments_the_analysis_counts() {
    use moescope::analysis::{self, AnalysisOptions};
    use moescope::routing::intervention::{CapacityDrops, DropPolicy};
    use moescope::routing::Interventions;
    let with = |capacity_factor: f64, policy: DropPolicy| EngineOptions {
        interventions: Interventions {
            capacity: Some(CapacityDrops {
                capacity_factor,
                policy,
            }),
            ..Interventions::default()
        },
        ..EngineOptions::default()
    };
    let mut plain = Engine::load(&fixture("olmoe"), EngineOptions::default()).unwrap();
    let plain = plain.run(IDS).unwrap().clone();
    for policy in [DropPolicy::Position, DropPolicy::Probs] {
        let mut engine = Engine::load(&fixture("olmoe"), with(0.5, policy)).unwrap();
        let trace = engine.run(IDS).unwrap().clone();
        // The first MoE layer routes as before; its dropped assignments change what follows.
        assert_eq!(trace.moe_layers[0].topk_ids, plain.moe_layers[0].topk_ids);
        let d = common::max_abs_diff(&trace.last_logits, &plain.last_logits);
        assert!(
            d > 1e-3,
            "{policy:?}: dropping changed the logits by only {d}"
        );
        let options = AnalysisOptions {
            capacity_factor: 0.5,
            token_range: None,
        };
        let metrics = analysis::analyze(&trace, &options).unwrap();
        for (layer, m) in trace.moe_layers.iter().zip(&metrics.moe_layers) {
            let counted = match policy {
                DropPolicy::Position => m.dropped_tokens_position.clone(),
                DropPolicy::Probs => m.dropped_tokens_probs.clone().unwrap(),
            };
            assert!(!layer.capacity_dropped.is_empty(), "{policy:?}");
            assert_eq!(
                layer.capacity_dropped, counted,
                "{policy:?} layer {}",
                layer.layer
            );
        }
        let err = engine.push_tokens(&[7]).unwrap_err();
        assert!(err.to_string().contains("cannot extend a run"), "{err}");
    }
    let mut roomy = Engine::load(&fixture("olmoe"), with(100.0, DropPolicy::Position)).unwrap();
    let roomy = roomy.run(IDS).unwrap();
    assert_eq!(roomy.last_logits, plain.last_logits);
    for (a, b) in roomy.moe_layers.iter().zip(&plain.moe_layers) {
        assert!(a.capacity_dropped.is_empty());
        assert_eq!(a.topk_ids, b.topk_ids);
    }
}
