//! Balance: per-layer health and balance losses, each labelled with its normalization, the seed's
//! health bands (normal ≥ 0.8, alarm < 0.7 for utilization balance), and a live history across
//! runs.

use super::super::run_data::RunData;
use super::super::theme;
use super::Selection;
use crate::analysis::Band;
use egui::{Color32, RichText, Ui};
use egui_plot::{Bar, BarChart, HLine, Legend, Line, Plot, Points};

/// One run's model-level balance figures, for the history plot.
#[derive(Clone, Copy, Debug)]
pub struct BalancePoint {
    pub run: u64,
    pub utilization_mean: f64,
    pub switch_loss_mean: Option<f64>,
}

pub fn band_color(band: Band) -> Color32 {
    match band {
        Band::Normal => theme::BAND_NORMAL,
        Band::Warning => theme::BAND_WARNING,
        Band::Alarm => theme::BAND_ALARM,
    }
}

/// Metric rows: (label, normalization note, tooltip, value of a layer).
type Row = (
    &'static str,
    &'static str,
    &'static str,
    fn(&crate::analysis::LayerMetrics) -> Option<f64>,
);

const ROWS: &[Row] = &[
    (
        "utilization balance",
        "1 = even, < 0.7 alarm",
        "normalized entropy of expert load: −Σ f log f / log E",
        |m| Some(m.utilization_balance),
    ),
    (
        "switch loss",
        "1 at balance",
        "Switch Transformer: E · Σ_e f_e · P_e (f = load share, P = mean router probability)",
        |m| m.switch_loss,
    ),
    (
        "seq aux loss",
        "1 at balance",
        "DeepSeek sequence-wise: Σ_e (c_e / (T·k/E)) · P_e",
        |m| m.seq_aux_loss,
    ),
    (
        "z loss",
        "0 ideal",
        "ST-MoE router z-loss: mean over tokens of (logsumexp of logits)²",
        |m| m.z_loss,
    ),
    (
        "CV of load",
        "0 at balance",
        "std / mean of assignments per expert",
        |m| Some(m.cv),
    ),
    (
        "max violation",
        "0 at balance",
        "(max − mean) / mean of assignments per expert",
        |m| Some(m.max_vio),
    ),
    (
        "Gini",
        "0 even, →1 collapsed",
        "Gini coefficient of expert load",
        |m| Some(m.gini),
    ),
    (
        "Jain",
        "1 even, 1/E collapsed",
        "Jain's fairness index (Σc)² / (E Σc²)",
        |m| Some(m.jain),
    ),
    ("dead experts", "count", "experts no token chose", |m| {
        Some(m.dead_experts as f64)
    }),
    (
        "router entropy",
        "nats, log E uniform",
        "mean over tokens of the entropy of the router distribution",
        |m| m.router_entropy_mean,
    ),
    (
        "top-k mass",
        "k/E uniform … 1",
        "mean probability mass of the chosen experts",
        |m| m.topk_mass_mean,
    ),
    (
        "margin",
        "larger = more decisive",
        "mean of k-th minus (k+1)-th probability",
        |m| m.margin_mean,
    ),
];

pub fn ui(ui: &mut Ui, data: &RunData, selection: Selection, history: &[BalancePoint]) {
    let metrics = match &data.metrics {
        Ok(m) => m,
        Err(e) => {
            ui.colored_label(theme::BAND_ALARM, format!("no balance metrics: {e}"));
            return;
        }
    };
    ui.horizontal(|ui| {
        match metrics.hf_aux_loss {
            Some(aux) => ui.label(format!(
                "transformers aux loss {aux:.4} (= k = {} at perfect balance)",
                metrics.top_k
            )),
            None => ui.label("transformers aux loss: n/a (sigmoid router or no logits)"),
        };
    });
    ui.columns(2, |cols| {
        let bars: Vec<Bar> = metrics
            .moe_layers
            .iter()
            .enumerate()
            .map(|(i, m)| {
                Bar::new(i as f64, m.utilization_balance)
                    .fill(band_color(m.utilization_band))
                    .name(format!("layer {}", m.layer))
            })
            .collect();
        cols[0].label(
            RichText::new(
                "utilization balance per MoE layer (green ≥ 0.8, amber 0.7–0.8, red < 0.7)",
            )
            .small(),
        );
        Plot::new("balance-bars")
            .include_y(0.0)
            .include_y(1.0)
            .x_axis_label("MoE layer index")
            .allow_scroll(false)
            .height(cols[0].available_height() * 0.5)
            .show(&mut cols[0], |plot| {
                plot.bar_chart(BarChart::new("utilization balance", bars).width(0.7));
                plot.hline(HLine::new("normal ≥ 0.8", 0.8).color(theme::BAND_NORMAL));
                plot.hline(HLine::new("alarm < 0.7", 0.7).color(theme::BAND_ALARM));
            });
        cols[0].label(RichText::new("history across runs (follows the latest run)").small());
        let util: Vec<[f64; 2]> = history
            .iter()
            .map(|p| [p.run as f64, p.utilization_mean])
            .collect();
        let switch: Vec<[f64; 2]> = history
            .iter()
            .filter_map(|p| p.switch_loss_mean.map(|s| [p.run as f64, s]))
            .collect();
        Plot::new("balance-history")
            .legend(Legend::default())
            .x_axis_label("run")
            .allow_scroll(false)
            .show(&mut cols[0], |plot| {
                let (u, s) = (
                    "utilization balance (mean over layers)",
                    "switch loss (mean over layers)",
                );
                plot.line(Line::new(u, util.clone()));
                plot.points(Points::new(u, util).radius(3.0));
                plot.line(Line::new(s, switch.clone()));
                plot.points(Points::new(s, switch).radius(3.0));
            });
        let selected = selection
            .moe_layer
            .min(metrics.moe_layers.len().saturating_sub(1));
        egui::ScrollArea::both()
            .id_salt("balance-table")
            .show(&mut cols[1], |ui| {
                egui::Grid::new("balance-grid")
                    .striped(true)
                    .show(ui, |ui| {
                        ui.label(RichText::new("metric").strong());
                        ui.label(RichText::new("normalization").strong());
                        for m in &metrics.moe_layers {
                            let text = RichText::new(format!("L{}", m.layer)).strong();
                            ui.label(if metrics.moe_layers[selected].layer == m.layer {
                                text.underline()
                            } else {
                                text
                            });
                        }
                        ui.end_row();
                        for (label, norm, tip, value) in ROWS {
                            ui.label(*label).on_hover_text(*tip);
                            ui.label(RichText::new(*norm).small().weak());
                            for m in &metrics.moe_layers {
                                match value(m) {
                                    Some(v) if *label == "utilization balance" => ui.colored_label(
                                        band_color(m.utilization_band),
                                        format!("{v:.3}"),
                                    ),
                                    Some(v) => ui.label(format!("{v:.3}")),
                                    None => ui.label("—"),
                                };
                            }
                            ui.end_row();
                        }
                    });
            });
    });
}
