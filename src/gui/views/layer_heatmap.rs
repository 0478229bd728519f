//! Layer heatmap: tokens (x) × experts (y) of the selected MoE layer, coloured by router
//! probability or by applied weight, with the chosen cells outlined. One texture per
//! (run, layer, mode), shown as an egui_plot image so it zooms and pans.

use super::super::command::Command;
use super::super::run_data::RunData;
use super::super::theme;
use super::{hover, Selection};
use egui::{Color32, ColorImage, TextureHandle, TextureOptions, Ui};
use egui_plot::{Plot, PlotImage, PlotPoint, Polygon, VLine};

/// Above this many chosen cells, outlines are too small to see and too many to draw each frame.
const MAX_OUTLINES: usize = 4096;

#[derive(Default)]
pub struct LayerHeatmap {
    /// Texture tiles and the token range each covers (long traces exceed the texture size limit).
    tiles: Vec<(TextureHandle, std::ops::Range<usize>)>,
    /// The cell values the tiles show (for hover), computed with them.
    values: Vec<f32>,
    built_for: Option<((u64, usize), usize, bool)>,
}

/// Value of each (expert row, token column) cell: probability or applied weight (0 if unchosen).
/// Row-major over experts: `values[expert * tokens + token]`.
pub fn heatmap_values(data: &RunData, moe_layer: usize, probabilities: bool) -> Vec<f32> {
    crate::analysis::grid::layer_heatmap(&data.trace, moe_layer, probabilities)
        .map(|h| h.values)
        .unwrap_or_else(|| vec![0.0; data.num_tokens() * data.trace.model.num_experts])
}

impl LayerHeatmap {
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        data: &RunData,
        selection: Selection,
        probabilities: &mut bool,
        commands: &mut Vec<Command>,
    ) {
        let tokens = data.num_tokens();
        let experts = data.trace.model.num_experts;
        let moe_layer = selection
            .moe_layer
            .min(data.num_moe_layers().saturating_sub(1));
        let Some(layer) = data.trace.moe_layers.get(moe_layer) else {
            ui.label("No MoE layers in this trace.");
            return;
        };
        let has_logits = !layer.router_logits.is_empty();
        ui.horizontal(|ui| {
            ui.label(format!("layer {}", layer.layer));
            ui.add_enabled_ui(has_logits, |ui| {
                ui.selectable_value(probabilities, true, "router probability")
                    .on_hover_text(
                        "softmax over all experts, or sigmoid scores normalized to sum 1",
                    );
            });
            ui.selectable_value(probabilities, false, "applied weight")
                .on_hover_text(
                    "the weight multiplied into each chosen expert's output (0 where not chosen)",
                );
        });
        let use_probs = *probabilities && has_logits;
        let key = (data.view_key(), moe_layer, use_probs);
        if self.built_for != Some(key) {
            self.values = heatmap_values(data, moe_layer, use_probs);
            let values = &self.values;
            let max = values.iter().copied().fold(f32::EPSILON, f32::max);
            self.tiles.clear();
            let tile = super::routing_map::tile_width(ui);
            for start in (0..tokens).step_by(tile) {
                let range = start..(start + tile).min(tokens);
                // Image rows run top-down; put expert 0 at the bottom so y grows with the expert id.
                let pixels = (0..experts)
                    .rev()
                    .flat_map(|e| values[e * tokens + range.start..e * tokens + range.end].iter())
                    .map(|v| theme::sequential(v / max))
                    .collect();
                let image = ColorImage::new([range.len(), experts], pixels);
                let texture = ui.ctx().load_texture(
                    format!("layer-heatmap-{start}"),
                    image,
                    TextureOptions::NEAREST,
                );
                self.tiles.push((texture, range));
            }
            self.built_for = Some(key);
        }
        let (t_n, e_n) = (tokens as f64, experts as f64);
        let ui_text = ui.visuals().strong_text_color();
        let response = Plot::new("layer-heatmap-plot")
            .x_axis_label("token")
            .y_axis_label("expert")
            .allow_scroll(false)
            .show(ui, |plot_ui| {
                // Cell (token t, expert e) is centred on (t, e), so axis ticks name cells.
                for (texture, range) in &self.tiles {
                    let width = range.len() as f64;
                    plot_ui.image(PlotImage::new(
                        "heatmap",
                        texture.id(),
                        PlotPoint::new(range.start as f64 + width / 2.0 - 0.5, e_n / 2.0 - 0.5),
                        [width as f32, e_n as f32],
                    ));
                }
                if tokens * layer.topk_ids.cols() <= MAX_OUTLINES {
                    for t in 0..tokens.min(layer.topk_ids.rows()) {
                        for &id in layer.topk_ids.row(t) {
                            let (x, y) = (t as f64 - 0.5, id as f64 - 0.5);
                            let square =
                                vec![[x, y], [x + 1.0, y], [x + 1.0, y + 1.0], [x, y + 1.0]];
                            plot_ui.polygon(
                                Polygon::new("chosen", square)
                                    .fill_color(Color32::TRANSPARENT)
                                    .stroke(egui::Stroke::new(1.2, Color32::WHITE)),
                            );
                        }
                    }
                }
                if let Some(from) = data.generated_from() {
                    plot_ui.vline(
                        VLine::new("generated from here", from as f64 - 0.5)
                            .color(ui_text)
                            .width(2.0),
                    );
                }
                if let Some(t) = selection.token {
                    plot_ui.vline(VLine::new("selected", t as f64).color(Color32::LIGHT_RED));
                }
                plot_ui.pointer_coordinate()
            });
        if let Some(p) = response.inner {
            let (x, y) = (p.x.round(), p.y.round());
            if x >= 0.0 && y >= 0.0 && x < t_n && y < e_n {
                let (t, e) = (x as usize, y as usize);
                let plot_response = response.response;
                if plot_response.clicked() {
                    commands.push(Command::Select {
                        token: t,
                        moe_layer,
                    });
                }
                plot_response.on_hover_ui_at_pointer(|ui| {
                    let v = self.values[e * tokens + t];
                    ui.label(format!("expert {e}: {v:.4}"));
                    ui.separator();
                    hover::token_card(ui, data, moe_layer, t);
                });
            }
        }
    }
}
