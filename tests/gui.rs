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
        save: None,
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
}
