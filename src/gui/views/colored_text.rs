//! The prompt with each token on its top-1 expert's colour at the selected layer (Mixtral paper,
//! Fig. 8). The whole text is one galley, laid out once per (run, layer, width) and cached: a
//! widget per token would cost tens of milliseconds per frame on long prompts. Hover a token for
//! its routing card; click to select it.

use super::super::command::Command;
use super::super::run_data::RunData;
use super::super::theme;
use super::{hover, Selection};
use egui::text::{CCursor, LayoutJob, TextFormat};
use egui::{FontId, Galley, RichText, Sense, Stroke, Ui};
use std::sync::Arc;

#[derive(Default)]
pub struct ColoredText {
    galley: Option<Arc<Galley>>,
    /// Char index where each token starts in the galley's text (plus the total at the end).
    token_starts: Vec<usize>,
    built_for: Option<((u64, usize), usize, u32)>,
}

impl ColoredText {
    fn build(&mut self, ui: &Ui, data: &RunData, moe_layer: usize, width: f32) {
        let mut job = LayoutJob::default();
        job.wrap.max_width = width;
        self.token_starts.clear();
        let mut chars = 0;
        let generated_from = data.generated_from();
        for (t, token) in data.trace.tokens.iter().enumerate() {
            if Some(t) == generated_from {
                // A marker between prompt and continuation; hovering it reads as the token
                // before it.
                let marker = " ▶ ";
                chars += marker.chars().count();
                job.append(
                    marker,
                    0.0,
                    TextFormat {
                        font_id: FontId::monospace(15.0),
                        color: ui.visuals().strong_text_color(),
                        ..Default::default()
                    },
                );
            }
            self.token_starts.push(chars);
            let Some((expert, share)) = data.top1(moe_layer, t) else {
                continue;
            };
            let background = theme::expert_color(expert, share);
            let shown = &data.texts[t].text;
            let text = if shown.is_empty() {
                "∅".to_owned()
            } else {
                shown.clone()
            };
            chars += text.chars().count();
            // Generated tokens in italics, so the prompt and its continuation read apart.
            let generated = token.generated;
            job.append(
                &text,
                0.0,
                TextFormat {
                    font_id: FontId::monospace(15.0),
                    color: theme::text_on(background),
                    background,
                    italics: generated,
                    ..Default::default()
                },
            );
        }
        self.token_starts.push(chars);
        self.galley = Some(ui.fonts_mut(|f| f.layout_job(job)));
    }

    /// Token whose text contains char index `index`.
    fn token_at(&self, index: usize) -> Option<usize> {
        let t = self.token_starts.partition_point(|&start| start <= index);
        (t > 0 && t < self.token_starts.len()).then(|| t - 1)
    }

    pub fn ui(
        &mut self,
        ui: &mut Ui,
        data: &RunData,
        selection: Selection,
        commands: &mut Vec<Command>,
    ) {
        let moe_layer = selection
            .moe_layer
            .min(data.num_moe_layers().saturating_sub(1));
        let Some(layer) = data.trace.moe_layers.get(moe_layer) else {
            ui.label("No MoE layers in this trace.");
            return;
        };
        let generated = match data.generated_from() {
            Some(from) => format!(
                "; ▶ then italics: the {} generated tokens",
                data.num_tokens() - from
            ),
            None => String::new(),
        };
        ui.label(
            RichText::new(format!(
                "layer {}: each token on its top-1 expert's colour (paler = lower weight share){generated}",
                layer.layer
            ))
            .small()
            .weak(),
        );
        egui::ScrollArea::vertical()
            .id_salt("colored-text")
            .show(ui, |ui| {
                let width = ui.available_width();
                let key = (data.view_key(), moe_layer, width.round() as u32);
                if self.built_for != Some(key) {
                    self.build(ui, data, moe_layer, width);
                    self.built_for = Some(key);
                }
                let Some(galley) = self.galley.clone() else {
                    return;
                };
                let (rect, response) = ui.allocate_exact_size(galley.size(), Sense::click());
                ui.painter()
                    .galley(rect.min, galley.clone(), ui.visuals().text_color());
                if let Some(t) = selection.token {
                    if let (Some(&a), Some(&b)) =
                        (self.token_starts.get(t), self.token_starts.get(t + 1))
                    {
                        let start = galley.pos_from_cursor(CCursor::new(a));
                        let end = galley.pos_from_cursor(CCursor::new(b));
                        if (start.min.y - end.min.y).abs() < 1.0 {
                            let underline =
                                egui::Rect::from_min_max(start.left_bottom(), end.left_bottom())
                                    .translate(rect.min.to_vec2());
                            ui.painter().line_segment(
                                [underline.min, underline.max],
                                Stroke::new(2.0, ui.visuals().strong_text_color()),
                            );
                        }
                    }
                }
                let hovered = response.hover_pos().and_then(|p| {
                    let cursor = galley.cursor_from_pos(p - rect.min);
                    self.token_at(cursor.index.0)
                });
                if let Some(t) = hovered {
                    if response.clicked() {
                        commands.push(Command::Select {
                            token: t,
                            moe_layer,
                        });
                    }
                    response.on_hover_ui_at_pointer(|ui| hover::token_card(ui, data, moe_layer, t));
                }
            });
    }
}
