//! Compare: run A (the views' run) against run B (a pinned run, an opened trace, or the unmodified
//! run of an intervention), per MoE layer: the divergence of the two loads and, for the same
//! tokens, how often the expert sets and the first expert agree — the small plot OLMoE draws for
//! router saturation — and the two loads of the selected layer side by side.

use super::super::command::Command;
use super::super::run_data::RunData;
use super::super::theme;
use super::Selection;
use crate::analysis::{self, RunComparison};
use egui::{Color32, RichText, Ui};
use egui_plot::{Bar, BarChart, Legend, Line, Plot, Points, VLine};

/// The comparison, recomputed only when either run changes (a generation grows A every frame).
#[derive(Default)]
pub struct CompareView {
    cached: Option<(CacheKey, Result<RunComparison, String>)>,
}

type CacheKey = ((u64, usize), (u64, usize));

const JSD_COLOR: Color32 = Color32::from_rgb(255, 123, 114);
const JACCARD_COLOR: Color32 = Color32::from_rgb(210, 168, 255);
const TOP1_COLOR: Color32 = Color32::from_rgb(126, 231, 135);
const SATURATION_COLOR: Color32 = Color32::from_rgb(255, 166, 87);
const A_COLOR: Color32 = Color32::from_rgb(88, 166, 255);
const B_COLOR: Color32 = Color32::from_rgb(160, 160, 160);

impl CompareView {
    /// The comparison of `a` with `b` (cached), or why the two cannot be compared.
    pub fn comparison(&mut self, a: &RunData, b: &RunData) -> &Result<RunComparison, String> {
        let key = (a.view_key(), b.view_key());
        if self.cached.as_ref().map(|(k, _)| *k) != Some(key) {
            let result = analysis::compare_runs(&a.trace, &b.trace).map_err(|e| match e {
                analysis::AnalysisError::Mismatch { problem, .. } => {
                    format!("these runs cannot be compared: {problem}")
                }
                other => other.to_string(),
            });
            self.cached = Some((key, result));
        }
        &self.cached.as_ref().expect("just cached").1
    }

    pub fn ui(
        &mut self,
        ui: &mut Ui,
        (a, a_label): (&RunData, &str),
        (b, b_label): (&RunData, &str),
        selection: Selection,
        commands: &mut Vec<Command>,
    ) {
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("A").strong().color(A_COLOR));
            ui.label(a_label);
            ui.separator();
            ui.label(RichText::new("B").strong().color(B_COLOR));
            ui.label(b_label);
        });
        let comparison = match self.comparison(a, b) {
            Ok(c) => c.clone(),
            Err(message) => {
                ui.colored_label(theme::BAND_ALARM, message);
                return;
            }
        };
        ui.horizontal(|ui| {
            ui.label(if comparison.same_tokens {
                format!(
                    "the same {} tokens: load and per-token agreement",
                    comparison.num_tokens_a
                )
            } else {
                format!(
                    "different tokens ({} against {}): load divergence only",
                    comparison.num_tokens_a, comparison.num_tokens_b
                )
            });
            if ui
                .button("Export comparison…")
                .on_hover_text("JSON, as moescope compare --json writes it")
                .clicked()
            {
                commands.push(Command::ExportComparison);
            }
        });
        let moe_layer = selection
            .moe_layer
            .min(comparison.moe_layers.len().saturating_sub(1));
        ui.columns(2, |cols| {
            divergence_plot(&mut cols[0], &comparison, moe_layer, commands);
            load_pair_plot(&mut cols[1], a, b, moe_layer);
        });
    }
}

/// Per MoE layer (x = its transformer block): load JSD in bits and, for the same tokens, mean
/// Jaccard and top-1 agreement, all in [0, 1]; clicking a layer selects it.
fn divergence_plot(
    ui: &mut Ui,
    comparison: &RunComparison,
    selected: usize,
    commands: &mut Vec<Command>,
) {
    let layers = &comparison.moe_layers;
    let series =
        |value: &dyn Fn(&analysis::compare::LayerDivergence) -> Option<f64>| -> Vec<[f64; 2]> {
            layers
                .iter()
                .filter_map(|l| Some([l.layer as f64, value(l)?]))
                .collect()
        };
    let jsd = series(&|l| Some(l.load_jsd_bits));
    let jaccard = series(&|l| l.mean_jaccard);
    let top1 = series(&|l| l.top1_agreement);
    let saturation = series(&|l| l.saturation);
    if let Some(l) = layers.get(selected) {
        let num = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.3}"));
        ui.label(format!(
            "layer {}: load JSD {:.4} bits · Jaccard {} · saturation {} · same top-1 {}",
            l.layer,
            l.load_jsd_bits,
            num(l.mean_jaccard),
            num(l.saturation),
            num(l.top1_agreement)
        ));
    }
    ui.label(
        RichText::new("per MoE layer · click a layer to select it")
            .small()
            .weak(),
    );
    let response = Plot::new("compare-divergence")
        .legend(Legend::default())
        .x_axis_label("layer")
        .include_y(0.0)
        .include_y(1.0)
        .allow_scroll(false)
        .show(ui, |plot| {
            for (name, points, color) in [
                ("load JSD (bits)", jsd, JSD_COLOR),
                ("mean Jaccard of expert sets", jaccard, JACCARD_COLOR),
                ("same top-1 expert", top1, TOP1_COLOR),
                (
                    "router saturation (share of B's experts in A)",
                    saturation,
                    SATURATION_COLOR,
                ),
            ] {
                if points.is_empty() {
                    continue;
                }
                plot.line(Line::new(name, points.clone()).color(color));
                plot.points(Points::new(name, points).color(color).radius(3.0));
            }
            if let Some(l) = layers.get(selected) {
                plot.vline(VLine::new("selected layer", l.layer as f64).color(Color32::GRAY));
            }
            plot.pointer_coordinate()
        });
    if response.response.clicked() {
        if let Some(pointer) = response.inner {
            let nearest = layers
                .iter()
                .enumerate()
                .min_by(|(_, x), (_, y)| {
                    let d =
                        |l: &analysis::compare::LayerDivergence| (l.layer as f64 - pointer.x).abs();
                    d(x).total_cmp(&d(y))
                })
                .map(|(i, _)| i);
            if let Some(i) = nearest {
                commands.push(Command::SelectLayer(i));
            }
        }
    }
}

/// The selected layer's load share per expert, A's bars beside B's.
fn load_pair_plot(ui: &mut Ui, a: &RunData, b: &RunData, moe_layer: usize) {
    let fractions = |d: &RunData| -> Option<Vec<f64>> {
        let metrics = d.metrics.as_ref().ok()?;
        Some(metrics.moe_layers.get(moe_layer)?.load_fraction.clone())
    };
    let (Some(fa), Some(fb)) = (fractions(a), fractions(b)) else {
        ui.label("no load metrics for this layer in one of the runs");
        return;
    };
    let layer = a.trace.moe_layers.get(moe_layer).map_or(0, |l| l.layer);
    ui.label(
        RichText::new(format!(
            "layer {layer}: share of assignments per expert (A left, B right)"
        ))
        .small()
        .weak(),
    );
    let bars = |fractions: &[f64], offset: f64, color: Color32| -> Vec<Bar> {
        fractions
            .iter()
            .enumerate()
            .map(|(e, &f)| {
                Bar::new(e as f64 + offset, f)
                    .width(0.38)
                    .fill(color)
                    .name(format!("expert {e}"))
            })
            .collect()
    };
    let uniform = 1.0 / fa.len().max(1) as f64;
    Plot::new("compare-load")
        .legend(Legend::default())
        .x_axis_label("expert")
        .y_axis_label("share")
        .allow_scroll(false)
        .show(ui, |plot| {
            plot.bar_chart(BarChart::new("A", bars(&fa, -0.2, A_COLOR)).color(A_COLOR));
            plot.bar_chart(BarChart::new("B", bars(&fb, 0.2, B_COLOR)).color(B_COLOR));
            plot.hline(egui_plot::HLine::new("uniform 1/E", uniform).color(Color32::DARK_GRAY));
        });
}
