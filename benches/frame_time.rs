//! Frame time of the desktop app on a large synthetic trace (4096 tokens × 64 experts × 48 MoE
//! layers), every bottom view in turn, once textures are built. Prints the median and worst CPU
//! time of an egui frame (logic + layout + tessellation) and its ratio to the 16 ms budget of a
//! 60 Hz display. Run: `cargo bench --bench frame_time`.

use egui_kittest::Harness;
use moescope::gui::app::{MoescopeApp, StartWith};
use moescope::gui::dialogs::FixedDialogs;
use moescope::gui::settings::{BottomTab, Settings};
use moescope::trace::{
    LayerTimings, Matrix, ModelInfo, MoeLayerTrace, RouterInfo, Token, Trace, FORMAT_VERSION,
};
use std::sync::Arc;
use std::time::Instant;

const TOKENS: usize = 4096;
const EXPERTS: usize = 64;
const LAYERS: usize = 48;
const TOP_K: usize = 8;
const BUDGET_MS: f64 = 16.0;

/// Deterministic pseudo-random numbers (64-bit LCG), so every run draws the same trace.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

fn synthetic_trace() -> Trace {
    let mut rng = Lcg(42);
    let moe_layers = (0..LAYERS)
        .map(|layer| {
            let logits: Vec<f32> = (0..TOKENS * EXPERTS)
                .map(|_| rng.next() * 6.0 - 3.0)
                .collect();
            let mut ids = Vec::with_capacity(TOKENS * TOP_K);
            let mut weights = Vec::with_capacity(TOKENS * TOP_K);
            for row in logits.chunks(EXPERTS) {
                let mut order: Vec<usize> = (0..EXPERTS).collect();
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                let top: Vec<f32> = order[..TOP_K].iter().map(|&e| row[e].exp()).collect();
                let sum: f32 = top.iter().sum();
                for (i, &e) in order[..TOP_K].iter().enumerate() {
                    ids.push(e as u32);
                    weights.push(top[i] / sum);
                }
            }
            MoeLayerTrace {
                layer,
                router_logits: Matrix::from_vec(TOKENS, EXPERTS, logits),
                topk_ids: Matrix::from_vec(TOKENS, TOP_K, ids),
                topk_weights: Matrix::from_vec(TOKENS, TOP_K, weights),
                selection_bias: None,
                expert_timings_ms: Vec::new(),
                capacity_dropped: Vec::new(),
                timings_ms: LayerTimings {
                    attention: 1.0,
                    router: 0.1,
                    experts: 3.0,
                    shared: 0.0,
                    total: 4.1,
                },
            }
        })
        .collect();
    Trace {
        format_version: FORMAT_VERSION,
        model: ModelInfo {
            path: "synthetic".into(),
            architecture: "Synthetic".into(),
            num_layers: LAYERS,
            num_experts: EXPERTS,
            top_k: TOP_K,
            device: "cpu".into(),
            dtype: "f32".into(),
            router: RouterInfo {
                scoring: "softmax".into(),
                renormalize: true,
                routed_scaling_factor: 1.0,
                num_groups: 1,
                topk_groups: 1,
                ..Default::default()
            },
        },
        tokens: (0..TOKENS)
            .map(|i| Token::given(i as u32, format!("t{i}")))
            .collect(),
        moe_layers,
        last_logits: Vec::new(),
        forward_ms: 197.0,
        prompt_tokens: None,
        interventions: None,
    }
}

fn main() {
    let started = Instant::now();
    let trace = Arc::new(synthetic_trace());
    let ctx = egui::Context::default();
    let dialogs = FixedDialogs::default();
    let mut app = MoescopeApp::with_settings(
        &ctx,
        Settings::default(),
        StartWith::Welcome,
        Box::new(dialogs),
    );
    app.accept_trace(1, trace, 197.0);
    println!(
        "trace {TOKENS} tokens × {EXPERTS} experts × {LAYERS} MoE layers built and analysed in {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1600.0, 1000.0))
        .build_ui_state(
            |ui, app: &mut MoescopeApp| {
                app.logic(ui.ctx());
                app.draw(ui);
            },
            app,
        );
    println!(
        "{:<14} {:>10} {:>10} {:>12}",
        "view", "median ms", "max ms", "median/16ms"
    );
    for (tab, name) in [
        (BottomTab::LayerHeatmap, "layer heatmap"),
        (BottomTab::Text, "coloured text"),
        (BottomTab::Load, "load"),
        (BottomTab::Balance, "balance"),
        (BottomTab::Timings, "timings"),
    ] {
        harness.state_mut().settings.bottom_tab = tab;
        // Warm-up frames build the textures and caches for this view.
        harness.run_steps(3);
        let mut frames_ms: Vec<f64> = (0..30)
            .map(|_| {
                let t = Instant::now();
                harness.step();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        frames_ms.sort_by(f64::total_cmp);
        let median = frames_ms[frames_ms.len() / 2];
        let max = frames_ms[frames_ms.len() - 1];
        println!(
            "{name:<14} {median:>10.2} {max:>10.2} {:>12.2}",
            median / BUDGET_MS
        );
    }
}
