//! The desktop app driven headless with egui_kittest: the open → run flow through widgets found by
//! label, and a small snapshot of each view with fixed data (tests/snapshots/).

mod common;

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use moescope::engine::{Engine, EngineOptions};
use moescope::gui::app::{MoescopeApp, StartWith};
use moescope::gui::dialogs::FixedDialogs;
use moescope::gui::settings::{BottomTab, Settings};
use moescope::trace::{LayerTimings, Trace};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn app(
    ctx: &egui::Context,
    checkpoint: Option<std::path::PathBuf>,
    start: StartWith,
) -> MoescopeApp {
    let settings = Settings {
        prompt: "the quick brown fox jumps over the lazy dog".into(),
        debounce_ms: 0,
        ..Settings::default()
    };
    let dialogs = FixedDialogs {
        checkpoint,
        trace: None,
        save: None,
        corpus_data: None,
    };
    MoescopeApp::with_settings(ctx, settings, start, Box::new(dialogs))
}

fn harness(app: MoescopeApp) -> Harness<'static, MoescopeApp> {
    Harness::builder()
        .with_size(egui::vec2(1200.0, 800.0))
        .build_ui_state(
            |ui, app: &mut MoescopeApp| {
                app.logic(ui.ctx());
                app.draw(ui);
            },
            app,
        )
}

/// Steps the UI until `done` holds (the engine works on its own thread), at most 20 s.
fn step_until(harness: &mut Harness<'_, MoescopeApp>, done: impl Fn(&MoescopeApp) -> bool) {
    let started = Instant::now();
    while !done(harness.state()) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out; errors: {:?}, notice: {:?}, busy: {}",
            harness.state().errors,
            harness.state().notice,
            harness.state().is_busy()
        );
        harness.run_steps(1);
        std::thread::sleep(Duration::from_millis(10));
    }
    harness.run_steps(2);
}

#[test]
fn open_dialog_loads_the_model_and_runs_the_prompt() {
    let fixture = common::fixtures_dir().join("mixtral");
    let ctx = egui::Context::default();
    let mut harness = harness(app(&ctx, Some(fixture.clone()), StartWith::Welcome));
    harness.run_steps(2);
    harness.get_by_label("Open checkpoint…").click();
    step_until(&mut harness, |app| app.data.is_some());
    let data = harness.state().data.as_ref().unwrap();
    // The fixture's tokenizer adds <s> and splits on words: 10 tokens.
    assert_eq!(data.trace.tokens.len(), 10);
    assert_eq!(data.trace.tokens[0].text, "<s>");
    assert_eq!(data.trace.model.architecture, "MixtralForCausalLM");
    assert!(harness.state().errors.is_empty());

    // Typing re-runs the model (views follow the prompt).
    harness.state_mut().settings.prompt.push_str(" again");
    harness.get_by_label("Token ids").click();
    harness.run_steps(1);
    harness.get_by_label("Prompt").click();
    harness.run_steps(1);
    let first_run = harness.state().data.as_ref().unwrap().run_id;
    harness
        .get_by_role(egui::accesskit::Role::MultilineTextInput)
        .click();
    harness.run_steps(1);
    harness
        .get_by_role(egui::accesskit::Role::MultilineTextInput)
        .type_text(" cat");
    step_until(&mut harness, |app| {
        app.data.as_ref().is_some_and(|d| d.run_id > first_run)
    });
    let data = harness.state().data.as_ref().unwrap();
    assert!(data.trace.tokens.len() > 10, "{}", data.trace.tokens.len());

    for tab in [
        "Coloured text",
        "Load",
        "Balance",
        "Timings",
        "Layer heatmap",
    ] {
        harness.get_by_label(tab).click();
        harness.run_steps(2);
    }
    assert!(harness.state().errors.is_empty());
}

#[test]
fn a_broken_checkpoint_shows_a_dismissible_banner_and_the_app_stays_usable() {
    let broken = std::env::temp_dir().join(format!("moescope-gui-broken-{}", std::process::id()));
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("config.json"), "{ not json").unwrap();
    let ctx = egui::Context::default();
    let mut harness = harness(app(&ctx, Some(broken), StartWith::Welcome));
    harness.run_steps(2);
    harness.get_by_label("Open checkpoint…").click();
    step_until(&mut harness, |app| !app.errors.is_empty());
    assert!(
        harness.state().errors[0].contains("config.json"),
        "{:?}",
        harness.state().errors
    );
    harness.get_by_label("Dismiss").click();
    harness.run_steps(2);
    assert!(harness.state().errors.is_empty());
    assert!(
        harness.query_by_label("Open checkpoint…").is_some(),
        "welcome screen still there"
    );
}

/// A trace with fixed timings, so snapshots do not depend on the machine's speed.
fn fixed_trace() -> Arc<Trace> {
    let dir = common::fixtures_dir().join("deepseek-v3");
    let mut engine = Engine::load(&dir, EngineOptions::default()).unwrap();
    let mut trace = engine
        .run(&[5, 17, 42, 99, 3, 64, 8, 120, 7, 33, 21, 90])
        .unwrap()
        .clone();
    for (i, layer) in trace.moe_layers.iter_mut().enumerate() {
        let base = 1.0 + i as f64;
        layer.timings_ms = LayerTimings {
            attention: 0.4 * base,
            router: 0.05,
            experts: 0.9 * base,
            shared: 0.2,
            total: 1.35 * base + 0.25,
        };
    }
    trace.forward_ms = 5.0;
    trace.model.path = "tests/fixtures/deepseek-v3".into();
    Arc::new(trace)
}

#[test]
fn view_snapshots() {
    let ctx = egui::Context::default();
    let mut app = app(&ctx, None, StartWith::Welcome);
    app.accept_trace(1, fixed_trace(), 5.0);
    let mut harness = harness(app);
    for (tab, name) in [
        (BottomTab::LayerHeatmap, "layer_heatmap"),
        (BottomTab::Text, "coloured_text"),
        (BottomTab::Load, "load"),
        (BottomTab::Balance, "balance"),
        (BottomTab::Timings, "timings"),
    ] {
        harness.state_mut().settings.bottom_tab = tab;
        harness.run_steps(3);
        harness.snapshot(name);
    }
    // Compare: the fixed run pinned as B, A the same model on other tokens.
    harness.get_by_label("Pin as B").click();
    harness.run_steps(2);
    let mut other = (*fixed_trace()).clone();
    let dir = common::fixtures_dir().join("deepseek-v3");
    let mut engine = Engine::load(&dir, EngineOptions::default()).unwrap();
    let run = engine
        .run(&[11, 23, 42, 57, 3, 64, 101, 120, 7, 88])
        .unwrap();
    other.tokens = run.tokens.clone();
    other.moe_layers = run.moe_layers.clone();
    harness.state_mut().accept_trace(2, Arc::new(other), 5.0);
    harness.run_steps(3);
    harness.snapshot("compare");
}

/// A file dropped from a file manager: egui hands the app its path.
#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

/// Drops `path` on the window, as a file manager would.
fn drop_file(harness: &mut Harness<'_, MoescopeApp>, path: &std::path::Path) {
    harness
        .input_mut()
        .dropped_files
        .push(Arc::new(Dropped(path.to_owned())));
    harness.run_steps(1);
}

/// Hostile inputs a user can drop on the window: checkpoints broken in each way the loader
/// refuses, files that are not checkpoints, and malformed traces. Each is `(path, what the
/// banner must name)`.
fn hostile_inputs(root: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let fixture = common::fixtures_dir().join("mixtral");
    let checkpoint = |name: &str, edit: &dyn Fn(&std::path::Path)| {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["config.json", "model.safetensors", "tokenizer.json"] {
            std::fs::copy(fixture.join(file), dir.join(file)).unwrap();
        }
        edit(&dir);
        dir
    };
    let edit_config = |dir: &std::path::Path, edit: &dyn Fn(&mut serde_json::Value)| {
        let path = dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut config);
        std::fs::write(&path, config.to_string()).unwrap();
    };
    let mut inputs = Vec::new();
    let mut add = |path: std::path::PathBuf, names: &str| inputs.push((path, names.to_owned()));
    add(
        checkpoint("not-json", &|d| {
            std::fs::write(d.join("config.json"), "{ not json").unwrap()
        }),
        "config.json",
    );
    add(
        checkpoint("unknown-architecture", &|d| {
            edit_config(d, &|c| {
                c["architectures"] = serde_json::json!(["NopeForCausalLM"]);
                c["model_type"] = "nope".into();
            })
        }),
        "NopeForCausalLM",
    );
    add(
        checkpoint("top-k-99", &|d| {
            edit_config(d, &|c| c["num_experts_per_tok"] = 99.into())
        }),
        "num_experts_per_tok",
    );
    add(
        checkpoint("truncated", &|d| {
            let path = d.join("model.safetensors");
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        }),
        "model.safetensors",
    );
    add(
        checkpoint("garbage-header", &|d| {
            std::fs::write(d.join("model.safetensors"), [0xffu8; 64]).unwrap()
        }),
        "model.safetensors",
    );
    add(
        checkpoint("no-tensors", &|d| {
            let mut bytes = 2u64.to_le_bytes().to_vec();
            bytes.extend(b"{}");
            std::fs::write(d.join("model.safetensors"), bytes).unwrap();
        }),
        "model.safetensors",
    );
    add(
        checkpoint("escaping-index", &|d| {
            std::fs::write(
                d.join("model.safetensors.index.json"),
                r#"{"weight_map": {"a": "../../etc/passwd"}}"#,
            )
            .unwrap()
        }),
        "model.safetensors.index.json",
    );
    add(
        checkpoint("pickle", &|d| {
            std::fs::remove_file(d.join("model.safetensors")).unwrap();
            std::fs::write(d.join("pytorch_model.bin"), b"PK").unwrap();
        }),
        "pytorch_model.bin",
    );
    add(
        checkpoint("bad-tokenizer", &|d| {
            std::fs::write(d.join("tokenizer.json"), "[]").unwrap()
        }),
        "tokenizer.json",
    );
    let empty = root.join("empty-folder");
    std::fs::create_dir_all(&empty).unwrap();
    add(empty, "empty-folder");
    add(root.join("does-not-exist"), "does-not-exist");
    let gguf = root.join("model.gguf");
    std::fs::write(&gguf, b"GGUF\x03\x00\x00\x00").unwrap();
    add(gguf, "model.gguf");

    let good = fixed_trace().to_json();
    let trace = |name: &str, text: &str| {
        let path = root.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    add(
        trace("not-json-trace.json", "{\"format_version\": "),
        "not-json-trace.json",
    );
    add(trace("empty-trace.json", ""), "empty-trace.json");
    let mut value: serde_json::Value = serde_json::from_str(&good).unwrap();
    value["moe_layers"][0]["topk_ids"][0][0] = 999.into();
    add(
        trace("expert-out-of-range.json", &value.to_string()),
        "expert-out-of-range.json",
    );
    let mut value: serde_json::Value = serde_json::from_str(&good).unwrap();
    value["format_version"] = 999.into();
    add(
        trace("future-version.json", &value.to_string()),
        "future-version.json",
    );
    let mut value: serde_json::Value = serde_json::from_str(&good).unwrap();
    value["moe_layers"][0]["topk_weights"][1][0] = serde_json::json!("NaN");
    add(
        trace("string-weight.json", &value.to_string()),
        "string-weight.json",
    );
    let binary = root.join("binary.json");
    std::fs::write(&binary, [0u8, 159, 146, 150, 255]).unwrap();
    add(binary, "binary.json");
    inputs
}

#[test]
fn hostile_files_dropped_on_the_window_show_a_banner_and_keep_the_model_and_its_views() {
    let root = std::env::temp_dir().join(format!("moescope-gui-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let fixture = common::fixtures_dir().join("mixtral");
    let ctx = egui::Context::default();
    let mut harness = harness(app(&ctx, None, StartWith::Welcome));
    harness.run_steps(2);
    drop_file(&mut harness, &fixture);
    step_until(&mut harness, |app| app.data.is_some() && !app.is_busy());
    let run_id = harness.state().data.as_ref().unwrap().run_id;

    for (path, named) in hostile_inputs(&root) {
        drop_file(&mut harness, &path);
        step_until(&mut harness, |app| !app.errors.is_empty() && !app.is_busy());
        let app = harness.state();
        assert_eq!(app.errors.len(), 1, "{}: {:?}", path.display(), app.errors);
        let message = &app.errors[0];
        assert!(
            message.contains(&named) && !message.contains('\n'),
            "{}: the banner should name {named} on one line: {message}",
            path.display()
        );
        assert_eq!(app.loaded_model(), Some(fixture.as_path()), "{message}");
        assert_eq!(app.data.as_ref().unwrap().run_id, run_id, "{message}");
        harness.get_by_label("Dismiss").click();
        harness.run_steps(2);
        assert!(
            harness.state().errors.is_empty(),
            "{:?}",
            harness.state().errors
        );
    }

    // A good trace opens in the same views, and the model stays loaded for the next prompt.
    let good = root.join("good-trace.json");
    fixed_trace().write_json(&good).unwrap();
    drop_file(&mut harness, &good);
    step_until(&mut harness, |app| app.trace_file.is_some());
    let app = harness.state();
    assert!(app.errors.is_empty(), "{:?}", app.errors);
    let shown = &app.data.as_ref().unwrap().trace;
    assert_eq!(shown.model.architecture, "DeepseekV3ForCausalLM");
    assert_eq!(app.loaded_model(), Some(fixture.as_path()));
    let tokens = shown.tokens.len();
    harness.run_steps(2);
    harness.get_by_label("good-trace.json");
    harness.get_by_label_contains(&format!("DeepseekV3ForCausalLM · {tokens} tokens"));
    harness.get_by_label("Editing the prompt runs the loaded model and replaces these views.");
    let _ = std::fs::remove_dir_all(&root);
}

/// The app with mixtral-tiny opened from the welcome screen and its prompt run.
fn mixtral_tiny_opened() -> Harness<'static, MoescopeApp> {
    let model = common::sample_models_dir().join("mixtral-tiny");
    let ctx = egui::Context::default();
    let mut harness = harness(app(&ctx, Some(model), StartWith::Welcome));
    harness.run_steps(2);
    harness.get_by_label("Open checkpoint…").click();
    step_until(&mut harness, |app| app.data.is_some() && !app.is_busy());
    harness
}

#[test]
fn generate_streams_tokens_into_the_views_and_stop_keeps_them() {
    let mut harness = mixtral_tiny_opened();
    let prompt_len = harness.state().data.as_ref().unwrap().num_tokens();

    // Greedy, stopping at EOS or after 8 tokens: the trace grows by the generated tokens.
    harness.state_mut().generation.max_new_tokens = 8;
    harness.get_by_label("▶ Generate").click();
    harness.run_steps(1);
    assert!(harness.state().is_generating());
    step_until(&mut harness, |app| !app.is_generating() && !app.is_busy());
    let data = harness.state().data.as_ref().unwrap();
    assert_eq!(data.trace.prompt_tokens, Some(prompt_len));
    let generated = data.num_tokens() - prompt_len;
    assert!((1..=8).contains(&generated), "{generated}");
    assert!(data.trace.tokens[prompt_len..].iter().all(|t| t.generated));
    let notice = harness.state().notice.clone().unwrap_or_default();
    assert!(
        notice.starts_with(&format!("generated {generated} tokens")),
        "{notice}"
    );
    harness.get_by_label("Coloured text").click();
    harness.run_steps(2);
    harness.get_by_label_contains(&format!("italics: the {generated} generated tokens"));

    // A long generation without EOS, stopped once tokens have streamed in: they stay.
    harness.state_mut().generation.max_new_tokens = 4000;
    harness.state_mut().generation.stop_at_eos = false;
    harness.get_by_label("▶ Generate").click();
    step_until(&mut harness, |app| {
        app.data
            .as_ref()
            .is_some_and(|d| d.num_tokens() > prompt_len + 2)
    });
    harness.get_by_label("■ Stop").click();
    harness.run_steps(1);
    step_until(&mut harness, |app| !app.is_generating() && !app.is_busy());
    let data = harness.state().data.as_ref().unwrap();
    let kept = data.num_tokens() - prompt_len;
    assert!(kept > 2, "{kept}");
    assert!(data.num_tokens() < 512, "stopped before the context filled");
    let notice = harness.state().notice.clone().unwrap_or_default();
    assert!(notice.contains("(cancelled)"), "{notice}");
    assert!(harness.state().errors.is_empty());
}

#[test]
fn the_interventions_panel_reruns_live_and_shows_the_effect_or_why_not() {
    let mut harness = mixtral_tiny_opened();
    assert!(harness.state().data.as_ref().unwrap().effect.is_none());
    harness.get_by_label("none: the model routes as configured");

    // Top-1 everywhere: the views show the intervened routing, the panel its effect.
    harness.state_mut().intervention.top_k = 1;
    harness.get_by_label("top-k").click();
    step_until(&mut harness, |app| {
        app.data.as_ref().is_some_and(|d| d.effect.is_some()) && !app.is_busy()
    });
    let data = harness.state().data.as_ref().unwrap();
    assert_eq!(data.trace.model.top_k, 1);
    let described = &data.trace.model.router.description;
    assert!(described.contains("top-1"), "{described}");
    assert!(data.trace.moe_layers.iter().all(|l| l.topk_ids.cols() == 1));
    let tokens = data.num_tokens();
    let effect = data.effect.as_ref().unwrap();
    assert!(effect
        .moe_layers
        .iter()
        .all(|l| l.tokens_rerouted == tokens));
    harness.run_steps(2);
    harness.get_by_label("against the unmodified run (top-1)");
    // The routing map shows the unmodified run under the intervened one.
    let baseline = &harness.state().data.as_ref().unwrap().baseline;
    assert_eq!(baseline.as_ref().unwrap().trace.model.top_k, 2);
    harness.get_by_label("intervened");
    harness.get_by_label("unmodified");
    harness.get_by_label_contains(&format!("of {tokens} positions"));
    // Nothing pinned: the Compare tab compares the intervened run with the unmodified one.
    harness
        .get_by_role_and_label(egui::accesskit::Role::Button, "Compare")
        .click();
    harness.run_steps(2);
    harness.get_by_label(&format!(
        "the same {tokens} tokens: load and per-token agreement"
    ));
    let expected = {
        let data = harness.state().data.as_ref().unwrap();
        let baseline = data.baseline.as_ref().unwrap();
        moescope::analysis::compare_runs(&data.trace, &baseline.trace).unwrap()
    };
    let first = &expected.moe_layers[0];
    assert_eq!(first.mean_jaccard, Some(0.5), "top-1 against top-2");
    harness.get_by_label(&format!(
        "layer 0: load JSD {:.4} bits · Jaccard 0.500 · saturation 0.500 · same top-1 {:.3}",
        first.load_jsd_bits,
        first.top1_agreement.unwrap()
    ));
    harness.get_by_label("Layer heatmap").click();

    // A block that is not an MoE layer: refused with the reason, the app stays up.
    harness.state_mut().intervention.ablate = "9:0".into();
    harness.get_by_label("top-k").click();
    step_until(&mut harness, |app| {
        app.notice
            .as_deref()
            .is_some_and(|n| n.starts_with("intervention:"))
            && !app.is_busy()
    });
    harness.run_steps(2);
    // In the panel and in the status bar.
    let shown = harness
        .query_all_by_label_contains("block 9 is not an MoE layer (MoE layers: 0, 1, 2, 3)")
        .count();
    assert_eq!(shown, 2);

    // Fixed: the run goes through and the reason disappears.
    harness.state_mut().intervention.ablate = "1:3".into();
    harness.get_by_label("top-k").click();
    step_until(&mut harness, |app| {
        app.data
            .as_ref()
            .and_then(|d| d.trace.interventions.as_ref())
            .is_some_and(|i| i.top_k == Some(1) && !i.ablate.is_empty())
            && !app.is_busy()
    });
    harness.run_steps(2);
    harness.get_by_label("against the unmodified run (top-1; ablate 1:3)");
    assert!(harness
        .query_by_label_contains("is not an MoE layer")
        .is_none());

    // A field that does not parse runs nothing: the views keep the intervened run.
    let runs_before = harness.state().data.as_ref().unwrap().run_id;
    harness.state_mut().intervention.ablate = "1:x".into();
    harness.get_by_label("top-k").click();
    harness.run_steps(20);
    assert_eq!(harness.state().data.as_ref().unwrap().run_id, runs_before);
    assert!(!harness.state().is_busy());
    harness.get_by_label_contains("'x' in '1:x' is not a non-negative integer");
    harness.state_mut().intervention.ablate = "1:3".into();
    harness.get_by_label("top-k").click();
    step_until(&mut harness, |app| {
        app.data.as_ref().is_some_and(|d| d.run_id != runs_before) && !app.is_busy()
    });

    // Capacity drops: the panel counts the dropped assignments per layer.
    harness.get_by_label("capacity").click();
    step_until(&mut harness, |app| {
        app.data
            .as_ref()
            .and_then(|d| d.effect.as_ref())
            .is_some_and(|e| e.moe_layers.iter().any(|l| l.assignments_dropped > 0))
            && !app.is_busy()
    });
    harness.run_steps(2);
    harness.get_by_label("dropped");
}

#[test]
fn a_pinned_run_or_trace_file_is_compared_with_later_runs_layer_by_layer() {
    let root = std::env::temp_dir().join(format!("moescope-gui-compare-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let other_model = root.join("deepseek-trace.json");
    fixed_trace().write_json(&other_model).unwrap();
    let exported = root.join("comparison.json");
    let ctx = egui::Context::default();
    let settings = Settings {
        prompt: "the quick brown fox jumps over the lazy dog".into(),
        debounce_ms: 0,
        ..Settings::default()
    };
    let dialogs = FixedDialogs {
        checkpoint: Some(common::sample_models_dir().join("mixtral-tiny")),
        trace: Some(other_model.clone()),
        save: Some(exported.clone()),
        corpus_data: None,
    };
    let app = MoescopeApp::with_settings(&ctx, settings, StartWith::Welcome, Box::new(dialogs));
    let mut harness = harness(app);
    harness.run_steps(2);
    harness.get_by_label("Open checkpoint…").click();
    step_until(&mut harness, |app| app.data.is_some() && !app.is_busy());
    harness.get_by_label("nothing pinned: an intervened run is compared with its unmodified run");

    // Pinned: B is this run, the Compare tab opens, and A equals B in every layer.
    harness.get_by_label("Pin as B").click();
    harness.run_steps(3);
    assert_eq!(harness.state().settings.bottom_tab, BottomTab::Compare);
    let tokens = harness.state().data.as_ref().unwrap().num_tokens();
    harness.get_by_label(&format!(
        "the same {tokens} tokens: load and per-token agreement"
    ));
    harness.get_by_label(
        "layer 0: load JSD 0.0000 bits · Jaccard 1.000 · saturation 1.000 · same top-1 1.000",
    );
    harness.get_by_label("A · this run");
    let pinned_label = harness.state().pinned.as_ref().unwrap().label.clone();
    assert!(
        pinned_label.starts_with(&format!("mixtral-tiny · f32 · {tokens} tokens «"))
            && pinned_label.contains("the quick brown fox"),
        "{pinned_label}"
    );
    harness.get_by_label(&format!("B · {pinned_label}"));

    // Another prompt: A is the new run; only the loads can be compared, as compare_runs does.
    let first_run = harness.state().data.as_ref().unwrap().run_id;
    harness
        .get_by_role(egui::accesskit::Role::MultilineTextInput)
        .click();
    harness.run_steps(1);
    harness
        .get_by_role(egui::accesskit::Role::MultilineTextInput)
        .type_text(" 机器学习模型的专家路由");
    step_until(&mut harness, |app| {
        app.data.as_ref().is_some_and(|d| d.run_id > first_run) && !app.is_busy()
    });
    harness.run_steps(2);
    let state = harness.state();
    let (a, b) = (
        &state.data.as_ref().unwrap().trace,
        &state.pinned.as_ref().unwrap().data.trace,
    );
    let expected = moescope::analysis::compare_runs(a, b).unwrap();
    assert!(!expected.same_tokens);
    let first = &expected.moe_layers[0];
    assert!(first.load_jsd_bits > 0.0);
    harness.get_by_label(&format!(
        "different tokens ({} against {tokens}): load divergence only",
        a.tokens.len()
    ));
    harness.get_by_label(&format!(
        "layer 0: load JSD {:.4} bits · Jaccard – · saturation – · same top-1 –",
        first.load_jsd_bits
    ));

    // The comparison exported is compare --json's.
    harness.get_by_label("Export comparison…").click();
    step_until(&mut harness, |app| {
        app.notice
            .as_deref()
            .is_some_and(|n| n.starts_with("wrote"))
    });
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&exported).unwrap()).unwrap();
    assert_eq!(written, serde_json::to_value(&expected).unwrap());

    // A trace of another model as B: refused in the tab with the reason; the app stays up.
    harness.get_by_label("Open trace as B…").click();
    step_until(&mut harness, |app| {
        app.pinned
            .as_ref()
            .is_some_and(|p| p.label.starts_with("deepseek-trace.json"))
    });
    harness.run_steps(2);
    harness.get_by_label_contains("these runs cannot be compared: MoE layers [0, 1, 2, 3] against");
    assert!(harness.state().errors.is_empty());

    harness.get_by_label("Unpin").click();
    harness.run_steps(2);
    assert!(harness.state().pinned.is_none());
    harness.get_by_label_contains("Nothing to compare yet");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_corpus_file_opens_in_its_own_view_and_exports_its_figure() {
    use moescope::corpus::{documents, run_corpus, CorpusOptions};
    let root = std::env::temp_dir().join(format!("moescope-gui-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let mut engine = Engine::load(
        &common::sample_models_dir().join("mixtral-tiny"),
        EngineOptions::default(),
    )
    .unwrap();
    let sources = documents::sources(&[common::fixtures_dir().join("corpus")]).unwrap();
    let run = run_corpus(
        &mut engine,
        &sources,
        &CorpusOptions::default(),
        &std::sync::atomic::AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    let corpus = root.join("fixtures-corpus.json");
    std::fs::write(&corpus, serde_json::to_vec(&run.report).unwrap()).unwrap();
    let figure = root.join("domains.png");
    let ctx = egui::Context::default();
    let dialogs = FixedDialogs {
        checkpoint: None,
        trace: Some(corpus.clone()),
        save: Some(figure.clone()),
        corpus_data: Some(common::fixtures_dir().join("corpus")),
    };
    let app = MoescopeApp::with_settings(
        &ctx,
        Settings::default(),
        StartWith::Welcome,
        Box::new(dialogs),
    );
    let mut harness = harness(app);
    harness.run_steps(2);
    harness.get_by_label("Open trace or corpus…").click();
    step_until(&mut harness, |app| app.corpus.is_some());
    assert!(harness.state().show_corpus);
    harness.get_by_label("Corpus · fixtures-corpus.json");
    harness.get_by_label_contains("12 documents");
    harness.get_by_label_contains("expert 0");
    let jsd = run.report.moe_layers[0].mean_pairwise_jsd_bits.unwrap();
    harness.get_by_label_contains(&format!("mean JSD between domains {jsd:.3} bits"));

    harness.get_by_label("Export figure…").click();
    step_until(&mut harness, |app| {
        app.notice
            .as_deref()
            .is_some_and(|n| n.starts_with("wrote"))
    });
    let png = std::fs::read(&figure).unwrap();
    assert!(png.starts_with(b"\x89PNG"));

    // Back to the run's views (the welcome screen here), then closed.
    harness.get_by_label("Run").click();
    harness.run_steps(2);
    assert!(!harness.state().show_corpus);
    harness.get_by_label("Close corpus").click();
    harness.run_steps(2);
    assert!(harness.state().corpus.is_none());
    assert!(harness.state().errors.is_empty());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_app_runs_a_corpus_over_a_folder_and_shows_what_it_wrote() {
    let root = std::env::temp_dir().join(format!("moescope-gui-corpus-run-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let out = root.join("corpus.json");
    let ctx = egui::Context::default();
    let settings = Settings {
        debounce_ms: 0,
        ..Settings::default()
    };
    let dialogs = FixedDialogs {
        checkpoint: Some(common::sample_models_dir().join("mixtral-tiny")),
        save: Some(out.clone()),
        corpus_data: Some(common::fixtures_dir().join("corpus")),
        ..FixedDialogs::default()
    };
    let app = MoescopeApp::with_settings(&ctx, settings, StartWith::Welcome, Box::new(dialogs));
    let mut harness = harness(app);
    harness.run_steps(2);
    harness.get_by_label("Open checkpoint…").click();
    step_until(&mut harness, |app| app.data.is_some() && !app.is_busy());
    harness.get_by_label("Run corpus on a folder…").click();
    step_until(&mut harness, |app| app.corpus.is_some());
    // The file written is the one shown, with every fixture document.
    let written = moescope::corpus::read_report(&out).unwrap();
    let shown = &harness.state().corpus.as_ref().unwrap().report;
    assert_eq!(**shown, written);
    assert_eq!(written.documents, 12);
    assert!(!written.input.cancelled);
    assert!(harness.state().show_corpus && harness.state().corpus_run.is_none());
    harness.run_steps(2);
    harness.get_by_label("Corpus · corpus.json");
    harness.get_by_label("Run corpus on a folder…");
    assert!(harness.state().errors.is_empty());
    std::fs::remove_dir_all(&root).unwrap();
}
