//! The hover card shared by the routing map, the layer heatmap and the coloured text: what one
//! token did at one MoE layer.

use super::super::run_data::RunData;
use super::super::theme;
use egui::{RichText, Ui};

/// How many of the highest router probabilities the card lists.
const TOP_PROBABILITIES: usize = 6;

pub fn token_card(ui: &mut Ui, data: &RunData, moe_layer: usize, token: usize) {
    let Some(layer) = data.trace.moe_layers.get(moe_layer) else {
        return;
    };
    if token >= layer.topk_ids.rows() {
        return;
    }
    let t = &data.trace.tokens[token];
    ui.label(
        RichText::new(format!("“{}”", data.token_label(token)))
            .strong()
            .size(15.0),
    );
    ui.label(format!(
        "token {token} (id {}) · layer {}",
        t.id, layer.layer
    ));
    if let Some(note) = data.span_note(token) {
        ui.label(RichText::new(note).small());
    }
    ui.separator();
    ui.label(RichText::new("chosen experts (weight applied)").small());
    egui::Grid::new("chosen").num_columns(3).show(ui, |ui| {
        for (&id, &w) in layer
            .topk_ids
            .row(token)
            .iter()
            .zip(layer.topk_weights.row(token))
        {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
            ui.painter()
                .rect_filled(rect, 2.0, theme::expert_color(id as usize, 1.0));
            ui.label(format!("expert {id}"));
            ui.label(format!("{w:.4}"));
            ui.end_row();
        }
    });
    if let Some(probs) = data.probabilities(moe_layer, token) {
        ui.separator();
        ui.label(RichText::new("router probabilities (highest)").small());
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        egui::Grid::new("probs").num_columns(2).show(ui, |ui| {
            for &e in order.iter().take(TOP_PROBABILITIES) {
                ui.label(format!("expert {e}"));
                ui.label(format!("{:.4}", probs[e]));
                ui.end_row();
            }
        });
    }
    if let Some(Some(m)) = data
        .token_metrics
        .get(moe_layer)
        .map(|m| m.as_ref().map(|v| v[token]))
    {
        ui.separator();
        ui.label(format!(
            "entropy {:.3} nats (uniform: {:.3})",
            m.entropy_nats,
            (data.trace.model.num_experts as f64).ln()
        ));
        ui.label(format!("top-k mass {:.3}", m.topk_mass));
        match m.margin {
            Some(margin) => ui.label(format!("margin {margin:.4} (k-th − (k+1)-th probability)")),
            None => ui.label("margin: none (every expert is chosen)"),
        };
    }
}
