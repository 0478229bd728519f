//! Timings: per-layer phase times of the latest run as stacked bars, and the forward time of
//! recent runs as a live line that follows the latest run unless paused.

use super::super::run_data::RunData;
use egui::{Color32, Ui};
use egui_plot::{Bar, BarChart, Legend, Line, Plot, Points};

/// Forward time of one run.
#[derive(Clone, Copy, Debug)]
pub struct TimingPoint {
    pub run: u64,
    pub forward_ms: f64,
}

#[derive(Default)]
pub struct TimingsView {
    /// A frozen copy of the history while paused (puffin's "follow latest unless paused").
    paused: Option<Vec<TimingPoint>>,
}

const PHASES: [(&str, Color32); 4] = [
    ("attention", Color32::from_rgb(88, 166, 255)),
    ("router", Color32::from_rgb(255, 166, 87)),
    ("experts", Color32::from_rgb(126, 231, 135)),
    ("shared / dense", Color32::from_rgb(210, 168, 255)),
];

impl TimingsView {
    pub fn ui(&mut self, ui: &mut Ui, data: &RunData, history: &[TimingPoint]) {
        let layers = &data.trace.moe_layers;
        ui.horizontal(|ui| {
            ui.label(format!(
                "forward {:.2} ms for {} tokens ({:.0} tok/s) · run {:.2} ms incl. tokenization",
                data.trace.forward_ms,
                data.num_tokens(),
                data.num_tokens() as f64 / (data.trace.forward_ms / 1e3).max(1e-9),
                data.elapsed_ms
            ));
            let mut paused = self.paused.is_some();
            if ui
                .toggle_value(&mut paused, "Pause")
                .on_hover_text("freeze the run history")
                .changed()
            {
                self.paused = paused.then(|| history.to_vec());
            }
        });
        ui.columns(2, |cols| {
            let phase = |i: usize, l: &crate::trace::MoeLayerTrace| match i {
                0 => l.timings_ms.attention,
                1 => l.timings_ms.router,
                2 => l.timings_ms.experts,
                _ => l.timings_ms.shared,
            };
            let mut charts: Vec<BarChart> = Vec::new();
            for (i, (name, color)) in PHASES.iter().enumerate() {
                let bars = layers
                    .iter()
                    .enumerate()
                    .map(|(x, l)| Bar::new(x as f64, phase(i, l)).name(format!("L{}", l.layer)))
                    .collect();
                let chart = BarChart::new(*name, bars).color(*color).width(0.7);
                let below: Vec<&BarChart> = charts.iter().collect();
                let chart = chart.stack_on(&below);
                charts.push(chart);
            }
            Plot::new("timings-bars")
                .legend(Legend::default())
                .x_axis_label("MoE layer index")
                .y_axis_label("ms")
                .allow_scroll(false)
                .show(&mut cols[0], |plot| {
                    for chart in charts {
                        plot.bar_chart(chart);
                    }
                });
            let shown = self.paused.as_deref().unwrap_or(history);
            let points: Vec<[f64; 2]> =
                shown.iter().map(|p| [p.run as f64, p.forward_ms]).collect();
            Plot::new("timings-history")
                .legend(Legend::default())
                .x_axis_label("run")
                .y_axis_label("forward ms")
                .include_y(0.0)
                .allow_scroll(false)
                .show(&mut cols[1], |plot| {
                    plot.line(Line::new("forward time", points.clone()));
                    plot.points(Points::new("forward time", points).radius(3.0));
                });
        });
    }
}
