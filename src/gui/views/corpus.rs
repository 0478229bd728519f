//! Corpus: a `moescope corpus` file — which experts serve which domain (Mixtral's domain-routing
//! figure, per MoE layer), how far apart the domains route across layers, the selected expert's
//! card (its domains, the tokens most routed to it) and the co-activation matrix.

use super::super::command::Command;
use super::super::theme;
use crate::analysis::corpus::{CorpusLayer, CorpusReport};
use egui::{Align2, Color32, FontId, Rect, RichText, Sense, Ui, Vec2};
use egui_plot::{Line, Plot, Points, VLine};
use std::path::PathBuf;
use std::sync::Arc;

pub struct CorpusView {
    pub path: PathBuf,
    pub report: Arc<CorpusReport>,
    /// Index into `report.moe_layers`.
    pub moe_layer: usize,
    pub expert: usize,
}

impl CorpusView {
    pub fn new(path: PathBuf, report: CorpusReport) -> Self {
        Self {
            path,
            report: Arc::new(report),
            moe_layer: 0,
            expert: 0,
        }
    }

    pub fn file_name(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    pub fn ui(&mut self, ui: &mut Ui, commands: &mut Vec<Command>) {
        let report = self.report.clone();
        let Some(last) = report.moe_layers.len().checked_sub(1) else {
            ui.label("This corpus file has no MoE layers.");
            return;
        };
        self.moe_layer = self.moe_layer.min(last);
        let experts = report.model.num_experts;
        self.expert = self.expert.min(experts.saturating_sub(1));
        ui.horizontal_wrapped(|ui| {
            ui.heading("Corpus");
            ui.label(RichText::new(self.file_name()).strong());
            ui.label(
                RichText::new(format!(
                    "{} · {} documents · {} tokens · {} domains{}",
                    report.model.architecture,
                    report.documents,
                    report.tokens,
                    report.domains.len(),
                    if report.input.cancelled {
                        " · cancelled run: partial counts"
                    } else {
                        ""
                    }
                ))
                .weak(),
            );
        });
        ui.horizontal(|ui| {
            let mut selected = self.moe_layer;
            egui::ComboBox::from_label("MoE layer")
                .selected_text(format!("layer {}", report.moe_layers[selected].layer))
                .show_ui(ui, |ui| {
                    for (i, l) in report.moe_layers.iter().enumerate() {
                        ui.selectable_value(&mut selected, i, format!("layer {}", l.layer));
                    }
                });
            self.moe_layer = selected;
            if ui
                .button("Export figure…")
                .on_hover_text("the domain × expert heatmap of this layer as PNG or SVG")
                .clicked()
            {
                commands.push(Command::ExportCorpusFigure(self.moe_layer));
            }
        });
        let layer = &report.moe_layers[self.moe_layer];
        let names: Vec<&str> = report.domains.iter().map(|d| d.name.as_str()).collect();
        ui.columns(2, |cols| {
            cols[0].label(
                RichText::new(format!(
                    "layer {}: each domain's share of its assignments per expert (click an expert)",
                    layer.layer
                ))
                .small()
                .weak(),
            );
            let rows: Vec<Vec<f64>> = layer.domain_distribution.clone();
            let height = (cols[0].available_height() * 0.45).max(120.0);
            if let Some(e) = grid(&mut cols[0], &rows, &names, height, Some(self.expert)) {
                self.expert = e;
            }
            if let Some(jsd) = layer.mean_pairwise_jsd_bits {
                cols[0].label(format!(
                    "mean JSD between domains {jsd:.3} bits · next layer: Jaccard {} · same top-1 {} · top-1 repeat {}",
                    num(layer.jaccard_with_next),
                    num(layer.top1_same_as_next),
                    num(layer.top1_repeat_rate)
                ));
            }
            jsd_plot(&mut cols[0], &report, self.moe_layer);
            expert_card(&mut cols[1], layer, self.expert);
            cols[1].separator();
            cols[1].label(
                RichText::new(
                    "co-activation P(column | row): how often b fires when a does (diagonal left out)",
                )
                .small()
                .weak(),
            );
            // P(a | a) = 1 would take the top of the colour scale from every real pair.
            let mut coactivation = layer.coactivation.clone();
            for (a, row) in coactivation.iter_mut().enumerate() {
                if let Some(v) = row.get_mut(a) {
                    *v = 0.0;
                }
            }
            let labels: Vec<String> = (0..experts).map(|e| e.to_string()).collect();
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            let height = cols[1].available_height().max(120.0);
            if let Some(e) = grid(
                &mut cols[1],
                &coactivation,
                &labels,
                height,
                Some(self.expert),
            ) {
                self.expert = e;
            }
        });
    }
}

fn num(value: Option<f64>) -> String {
    value.map_or("–".to_owned(), |v| format!("{v:.3}"))
}

/// A rows × experts heatmap painted cell by cell (a corpus has few domains), row labels on the
/// left; returns the expert column clicked.
fn grid(
    ui: &mut Ui,
    rows: &[Vec<f64>],
    row_labels: &[&str],
    height: f32,
    selected_column: Option<usize>,
) -> Option<usize> {
    let columns = rows.first().map_or(0, Vec::len);
    if columns == 0 || rows.is_empty() {
        return None;
    }
    let label_width = 72.0;
    let width = ui.available_width();
    let (rect, response) = ui.allocate_exact_size(
        Vec2::new(width, height),
        Sense::click().union(Sense::hover()),
    );
    let cells = Rect::from_min_max(
        rect.min + Vec2::new(label_width, 0.0),
        rect.max - Vec2::new(0.0, 16.0),
    );
    let cell = Vec2::new(
        cells.width() / columns as f32,
        cells.height() / rows.len() as f32,
    );
    let max = rows.iter().flatten().copied().fold(f64::EPSILON, f64::max);
    let painter = ui.painter_at(rect);
    let text = ui.visuals().text_color();
    for (r, row) in rows.iter().enumerate() {
        let y = cells.min.y + r as f32 * cell.y;
        painter.text(
            egui::pos2(cells.min.x - 6.0, y + cell.y / 2.0),
            Align2::RIGHT_CENTER,
            row_labels.get(r).copied().unwrap_or(""),
            FontId::proportional(12.0),
            text,
        );
        for (c, &v) in row.iter().enumerate() {
            let min = egui::pos2(cells.min.x + c as f32 * cell.x, y);
            let color = theme::sequential((v / max) as f32);
            painter.rect_filled(Rect::from_min_size(min, cell), 0.0, color);
        }
    }
    let step = (columns as f32 * 18.0 / cells.width()).ceil().max(1.0) as usize;
    for c in (0..columns).step_by(step) {
        painter.text(
            egui::pos2(cells.min.x + (c as f32 + 0.5) * cell.x, cells.max.y + 2.0),
            Align2::CENTER_TOP,
            c.to_string(),
            FontId::proportional(11.0),
            text,
        );
    }
    if let Some(c) = selected_column {
        let column = Rect::from_min_size(
            egui::pos2(cells.min.x + c as f32 * cell.x, cells.min.y),
            Vec2::new(cell.x, cells.height()),
        );
        painter.rect_stroke(
            column,
            0.0,
            egui::Stroke::new(2.0, Color32::WHITE),
            egui::StrokeKind::Inside,
        );
    }
    let at = |pos: egui::Pos2| -> Option<(usize, usize)> {
        if !cells.contains(pos) {
            return None;
        }
        let c = ((pos.x - cells.min.x) / cell.x) as usize;
        let r = ((pos.y - cells.min.y) / cell.y) as usize;
        (r < rows.len() && c < columns).then_some((r, c))
    };
    if let Some((r, c)) = response.hover_pos().and_then(at) {
        response.clone().on_hover_ui_at_pointer(|ui| {
            ui.label(format!(
                "{} · expert {c}: {:.3}",
                row_labels.get(r).copied().unwrap_or(""),
                rows[r][c]
            ));
        });
    }
    response
        .clicked()
        .then(|| response.interact_pointer_pos().and_then(at).map(|(_, c)| c))
        .flatten()
}

/// Mean pairwise JSD between domains per MoE layer, the selected layer marked.
fn jsd_plot(ui: &mut Ui, report: &CorpusReport, selected: usize) {
    let points: Vec<[f64; 2]> = report
        .moe_layers
        .iter()
        .filter_map(|l| Some([l.layer as f64, l.mean_pairwise_jsd_bits?]))
        .collect();
    if points.is_empty() {
        ui.label("one domain: no divergence between domains to plot");
        return;
    }
    let color = Color32::from_rgb(255, 123, 114);
    Plot::new("corpus-jsd")
        .x_axis_label("layer")
        .y_axis_label("mean domain JSD (bits)")
        .include_y(0.0)
        .allow_scroll(false)
        .show(ui, |plot| {
            plot.line(Line::new("mean JSD", points.clone()).color(color));
            plot.points(Points::new("mean JSD", points).color(color).radius(3.0));
            plot.vline(
                VLine::new("selected", report.moe_layers[selected].layer as f64)
                    .color(Color32::GRAY),
            );
        });
}

/// The selected expert: its share, its domain, its tokens.
fn expert_card(ui: &mut Ui, layer: &CorpusLayer, expert: usize) {
    let Some(card) = layer.experts.get(expert) else {
        return;
    };
    ui.horizontal(|ui| {
        let (rect, _) = ui.allocate_exact_size(Vec2::splat(14.0), Sense::hover());
        ui.painter()
            .rect_filled(rect, 2.0, theme::expert_color(expert, 1.0));
        ui.heading(format!("expert {expert}"));
        ui.label(format!(
            "{:.1} % of the layer's assignments · most used by {}",
            100.0 * card.share_of_assignments,
            card.top_domain.as_deref().unwrap_or("no domain")
        ));
    });
    ui.label(
        RichText::new("tokens most routed here (share of the token's occurrences)")
            .small()
            .weak(),
    );
    egui::Grid::new("expert-tokens")
        .num_columns(3)
        .striped(true)
        .show(ui, |ui| {
            ui.label(RichText::new("token").strong());
            ui.label(RichText::new("routed / seen").strong());
            ui.label(RichText::new("share").strong());
            ui.end_row();
            for t in card.top_tokens.iter().take(10) {
                ui.label(format!(
                    "“{}”",
                    crate::trace::token_text::axis_label(&t.text, 24)
                ));
                ui.label(format!("{} / {}", t.routed, t.occurrences));
                ui.label(format!("{:.2}", t.share));
                ui.end_row();
            }
        });
    if card.top_tokens.is_empty() {
        ui.label("no token seen often enough to rank");
    }
}
