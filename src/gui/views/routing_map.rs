//! Routing map: MoE layers (rows) × tokens (columns), each cell the top-1 expert's colour, paler
//! when the router hesitated. Drawn from textures built once per run (tiled, because GPUs cap a
//! texture's width), so thousands of tokens cost one quad per tile per frame.

use super::super::command::Command;
use super::super::run_data::RunData;
use super::super::theme;
use super::{hover, Selection};
use egui::{
    Color32, ColorImage, Pos2, Rect, Sense, Stroke, TextureHandle, TextureOptions, Ui, Vec2,
};

/// Tokens per texture tile at most; also bounded by the renderer's maximum texture side.
const TILE_TOKENS: usize = 4096;

/// Texture tile width in cells for this renderer.
pub fn tile_width(ui: &Ui) -> usize {
    TILE_TOKENS
        .min(ui.ctx().input(|i| i.max_texture_side))
        .max(1)
}
/// Width of the layer-label gutter.
const GUTTER_PX: f32 = 40.0;

pub struct RoutingMap {
    tiles: Vec<(TextureHandle, std::ops::Range<usize>)>,
    built_for: Option<(u64, usize)>,
    /// Column width in points; the zoom slider sets it.
    pub cell_width: f32,
    /// Show the zoom slider (a map drawn under another one follows that one's zoom instead).
    pub zoom_control: bool,
}

impl Default for RoutingMap {
    fn default() -> Self {
        Self {
            tiles: Vec::new(),
            built_for: None,
            cell_width: 18.0,
            zoom_control: true,
        }
    }
}

/// Pixels of the map, layer-major: `pixels[layer * tokens + token]`.
pub fn map_pixels(data: &RunData, tokens: std::ops::Range<usize>) -> Vec<Color32> {
    crate::analysis::grid::top1_cells(&data.trace, tokens)
        .into_iter()
        .map(|cell| match cell {
            Some((expert, share)) => theme::expert_color(expert, share),
            None => Color32::TRANSPARENT,
        })
        .collect()
}

impl RoutingMap {
    fn ensure_textures(&mut self, ui: &Ui, data: &RunData) {
        if self.built_for == Some(data.view_key()) {
            return;
        }
        self.tiles.clear();
        let tokens = data.num_tokens();
        let layers = data.num_moe_layers();
        let tile = tile_width(ui);
        for start in (0..tokens).step_by(tile) {
            let range = start..(start + tile).min(tokens);
            let image = ColorImage::new([range.len(), layers], map_pixels(data, range.clone()));
            let texture = ui.ctx().load_texture(
                format!("routing-map-{start}"),
                image,
                TextureOptions::NEAREST,
            );
            self.tiles.push((texture, range));
        }
        self.built_for = Some(data.view_key());
    }

    pub fn ui(
        &mut self,
        ui: &mut Ui,
        data: &RunData,
        selection: Selection,
        commands: &mut Vec<Command>,
    ) {
        let tokens = data.num_tokens();
        let layers = data.num_moe_layers();
        if tokens == 0 || layers == 0 {
            ui.label("No MoE layers in this trace.");
            return;
        }
        self.ensure_textures(ui, data);
        if self.zoom_control {
            ui.horizontal(|ui| {
                ui.add(
                    egui::Slider::new(&mut self.cell_width, 2.0..=48.0)
                        .show_value(false)
                        .text("zoom"),
                );
                ui.label(
                    egui::RichText::new(
                        "cell = top-1 expert; paler = lower weight share; click to select",
                    )
                    .small()
                    .weak(),
                );
            });
        }
        let label_band = if self.cell_width >= 10.0 { 64.0 } else { 0.0 };
        let avail = ui.available_size();
        let cell_h = ((avail.y - label_band - 16.0) / layers as f32).clamp(4.0, 26.0);
        let size = Vec2::new(
            GUTTER_PX + tokens as f32 * self.cell_width,
            label_band + layers as f32 * cell_h,
        );
        egui::ScrollArea::horizontal()
            .id_salt("routing-map-scroll")
            .show(ui, |ui| {
                let (response, painter) = ui.allocate_painter(size, Sense::click());
                let origin = response.rect.min + Vec2::new(GUTTER_PX, label_band);
                let cell = |t: usize, l: usize| {
                    Rect::from_min_size(
                        origin + Vec2::new(t as f32 * self.cell_width, l as f32 * cell_h),
                        Vec2::new(self.cell_width, cell_h),
                    )
                };
                for (texture, range) in &self.tiles {
                    let rect = Rect::from_min_max(
                        cell(range.start, 0).min,
                        cell(range.end - 1, layers - 1).max,
                    );
                    painter.image(
                        texture.id(),
                        rect,
                        Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
                        Color32::WHITE,
                    );
                }
                let text_color = ui.visuals().text_color();
                let font = egui::FontId::proportional(11.0);
                for (l, layer) in data.trace.moe_layers.iter().enumerate() {
                    if cell_h >= 9.0 || l % 4 == 0 {
                        painter.text(
                            Pos2::new(response.rect.min.x + GUTTER_PX - 4.0, cell(0, l).center().y),
                            egui::Align2::RIGHT_CENTER,
                            format!("L{}", layer.layer),
                            font.clone(),
                            text_color,
                        );
                    }
                }
                if label_band > 0.0 {
                    let visible = ui.clip_rect();
                    for t in 0..tokens {
                        let x = cell(t, 0).center().x;
                        if x < visible.min.x - self.cell_width
                            || x > visible.max.x + self.cell_width
                        {
                            continue;
                        }
                        let mut label = data.token_label(t);
                        if label.chars().count() > 10 {
                            label = label.chars().take(9).collect::<String>() + "…";
                        }
                        let galley = painter.layout_no_wrap(label, font.clone(), text_color);
                        let pos = Pos2::new(x - galley.size().y / 2.0, origin.y - 4.0);
                        painter.add(
                            egui::epaint::TextShape::new(pos, galley, text_color)
                                .with_angle(-std::f32::consts::FRAC_PI_2),
                        );
                    }
                }
                if let Some(from) = data.generated_from() {
                    // The prompt ends here; generated tokens follow.
                    let x = cell(from, 0).min.x;
                    let top = response.rect.min.y;
                    painter.line_segment(
                        [Pos2::new(x, top), Pos2::new(x, cell(0, layers - 1).max.y)],
                        Stroke::new(2.0, ui.visuals().strong_text_color()),
                    );
                    painter.text(
                        Pos2::new(x + 3.0, top),
                        egui::Align2::LEFT_TOP,
                        "generated →",
                        font.clone(),
                        text_color,
                    );
                }
                if let Some(t) = selection.token.filter(|&t| t < tokens) {
                    let l = selection.moe_layer.min(layers - 1);
                    let stroke = Stroke::new(2.0, ui.visuals().strong_text_color());
                    painter.rect_stroke(cell(t, l), 0.0, stroke, egui::StrokeKind::Outside);
                }
                let hovered = response.hover_pos().and_then(|p| {
                    let rel = p - origin;
                    let (t, l) = ((rel.x / self.cell_width).floor(), (rel.y / cell_h).floor());
                    (rel.x >= 0.0 && rel.y >= 0.0 && (t as usize) < tokens && (l as usize) < layers)
                        .then_some((t as usize, l as usize))
                });
                if let Some((t, l)) = hovered {
                    painter.rect_stroke(
                        cell(t, l),
                        0.0,
                        Stroke::new(1.0, Color32::WHITE),
                        egui::StrokeKind::Inside,
                    );
                    if response.clicked() {
                        commands.push(Command::Select {
                            token: t,
                            moe_layer: l,
                        });
                    }
                    response.on_hover_ui_at_pointer(|ui| hover::token_card(ui, data, l, t));
                }
            });
    }
}
