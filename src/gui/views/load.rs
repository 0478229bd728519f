//! Load: assignments per expert at the selected layer against the uniform share and the capacity
//! C = ceil(T·k/E·CF) (tokens over capacity in red, as a capacity-limited trainer would drop them),
//! and the layers × experts load heatmap (load relative to uniform).

use super::super::run_data::RunData;
use super::super::theme;
use super::Selection;
use crate::analysis;
use egui::{Color32, ColorImage, RichText, TextureHandle, TextureOptions, Ui};
use egui_plot::{Bar, BarChart, HLine, Legend, Plot, PlotImage, PlotPoint};

#[derive(Default)]
pub struct LoadView {
    texture: Option<TextureHandle>,
    built_for: Option<(u64, usize)>,
}

impl LoadView {
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        data: &RunData,
        selection: Selection,
        capacity_factor: &mut f64,
    ) {
        let metrics = match &data.metrics {
            Ok(m) => m,
            Err(e) => {
                ui.colored_label(theme::BAND_ALARM, format!("no load metrics: {e}"));
                return;
            }
        };
        let moe_layer = selection
            .moe_layer
            .min(metrics.moe_layers.len().saturating_sub(1));
        let Some(layer) = metrics.moe_layers.get(moe_layer) else {
            return;
        };
        let (tokens, k, experts) = (metrics.num_tokens, layer.top_k, metrics.num_experts);
        let capacity = analysis::capacity(tokens, k, experts, *capacity_factor);
        let uniform = (tokens * k) as f64 / experts as f64;
        let dropped: u64 = layer
            .expert_counts
            .iter()
            .map(|&c| c.saturating_sub(capacity as u64))
            .sum();
        ui.horizontal(|ui| {
            ui.label(format!("layer {}", layer.layer));
            ui.add(egui::Slider::new(capacity_factor, 0.5..=4.0).text("capacity factor"))
                .on_hover_text("C = ceil(T·k/E · CF): the most tokens an expert takes in a capacity-limited trainer");
            ui.label(format!(
                "C = {capacity} · dropped {dropped} of {} assignments ({:.1} %)",
                tokens * k,
                100.0 * dropped as f64 / (tokens * k).max(1) as f64
            ));
        });
        ui.columns(2, |cols| {
            let kept: Vec<Bar> = layer
                .expert_counts
                .iter()
                .enumerate()
                .map(|(e, &c)| {
                    Bar::new(e as f64, c.min(capacity as u64) as f64)
                        .fill(theme::expert_color(e, 1.0))
                        .name(format!("expert {e}"))
                })
                .collect();
            let over: Vec<Bar> = layer
                .expert_counts
                .iter()
                .enumerate()
                .map(|(e, &c)| Bar::new(e as f64, c.saturating_sub(capacity as u64) as f64).fill(theme::BAND_ALARM))
                .collect();
            let kept = BarChart::new("within capacity", kept)
                .color(Color32::from_rgb(88, 166, 255))
                .width(0.8);
            let over = BarChart::new("over capacity (dropped)", over)
                .color(theme::BAND_ALARM)
                .width(0.8)
                .stack_on(&[&kept]);
            Plot::new("load-bars")
                .legend(Legend::default())
                .x_axis_label("expert")
                .y_axis_label("assignments")
                .allow_scroll(false)
                .show(&mut cols[0], |plot| {
                    plot.bar_chart(kept);
                    plot.bar_chart(over);
                    plot.hline(HLine::new("uniform T·k/E", uniform).color(Color32::GRAY));
                    plot.hline(HLine::new("capacity C", capacity as f64).color(theme::BAND_ALARM));
                });
            let layers = metrics.moe_layers.len();
            if self.built_for != Some(data.view_key()) {
                let pixels = analysis::grid::relative_load(metrics).into_iter().map(theme::sequential).collect();
                let image = ColorImage::new([experts, layers], pixels);
                self.texture = Some(cols[1].ctx().load_texture("load-heatmap", image, TextureOptions::NEAREST));
                self.built_for = Some(data.view_key());
            }
            cols[1].label(
                RichText::new("load per layer × expert, relative to uniform (dark 0 · middle 1× · yellow ≥ 2×)")
                    .small()
                    .weak(),
            );
            if let Some(texture) = &self.texture {
                // Row i (first MoE layer at the top) is centred on y = layers - 1 - i; the axis
                // names it by its transformer block index.
                let names: Vec<usize> = metrics.moe_layers.iter().map(|l| l.layer).collect();
                Plot::new("load-heatmap")
                    .x_axis_label("expert")
                    .y_axis_label("layer")
                    .y_axis_formatter(move |mark, _| {
                        let row = layers as f64 - 1.0 - mark.value;
                        match names.get(row.round() as usize) {
                            Some(layer) if (row - row.round()).abs() < 1e-6 && row >= 0.0 => layer.to_string(),
                            _ => String::new(),
                        }
                    })
                    .allow_scroll(false)
                    .show(&mut cols[1], |plot| {
                        plot.image(PlotImage::new(
                            "load",
                            texture.id(),
                            PlotPoint::new(experts as f64 / 2.0 - 0.5, layers as f64 / 2.0 - 0.5),
                            [experts as f32, layers as f32],
                        ));
                    });
            }
        });
    }
}
