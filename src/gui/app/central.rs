//! The central area: the routing map (run A above run B when there is one) and the tabbed views
//! below it.

use super::*;

impl MoescopeApp {
    pub(super) fn views_ui(&mut self, ui: &mut Ui, data: &RunData) {
        let map_height = (ui.available_height() * 0.42).max(140.0);
        ui.horizontal(|ui| {
            ui.heading("Routing map");
            ui.label(
                RichText::new(format!(
                    "{} MoE layers × {} tokens",
                    data.num_moe_layers(),
                    data.num_tokens()
                ))
                .weak(),
            );
        });
        let pinned = self.pinned.as_ref().map(|p| (&p.data, p.label.as_str()));
        let lower = match (pinned, &data.baseline) {
            (Some((b, label)), _) => Some((b, "A · this run".to_owned(), format!("B · {label}"))),
            (None, Some(baseline)) => Some((
                &**baseline,
                "intervened".to_owned(),
                "unmodified".to_owned(),
            )),
            (None, None) => None,
        };
        match lower {
            None => {
                ui.allocate_ui(egui::vec2(ui.available_width(), map_height), |ui| {
                    self.routing_map
                        .ui(ui, data, self.selection, &mut self.commands);
                });
            }
            Some((baseline, upper_label, lower_label)) => {
                // Run A above run B (the intervened run above the unmodified one, token for
                // token), one selection and one zoom for both.
                let half = (map_height / 2.0 - 10.0).max(90.0);
                ui.label(RichText::new(upper_label).small().strong());
                ui.allocate_ui(egui::vec2(ui.available_width(), half), |ui| {
                    self.routing_map
                        .ui(ui, data, self.selection, &mut self.commands);
                });
                ui.label(RichText::new(lower_label).small().strong());
                self.baseline_map.cell_width = self.routing_map.cell_width;
                self.baseline_map.zoom_control = false;
                ui.push_id("baseline-map", |ui| {
                    ui.allocate_ui(egui::vec2(ui.available_width(), half), |ui| {
                        self.baseline_map
                            .ui(ui, baseline, self.selection, &mut self.commands);
                    });
                });
            }
        }
        ui.separator();
        ui.horizontal(|ui| {
            let tab = &mut self.settings.bottom_tab;
            ui.selectable_value(tab, BottomTab::LayerHeatmap, "Layer heatmap");
            ui.selectable_value(tab, BottomTab::Text, "Coloured text");
            ui.selectable_value(tab, BottomTab::Load, "Load");
            ui.selectable_value(tab, BottomTab::Balance, "Balance");
            ui.selectable_value(tab, BottomTab::Timings, "Timings");
            ui.selectable_value(tab, BottomTab::Compare, "Compare");
            ui.separator();
            let layers = &data.trace.moe_layers;
            if !layers.is_empty() {
                let mut selected = self.selection.moe_layer.min(layers.len() - 1);
                egui::ComboBox::from_label("MoE layer")
                    .selected_text(format!("layer {}", layers[selected].layer))
                    .show_ui(ui, |ui| {
                        for (i, l) in layers.iter().enumerate() {
                            ui.selectable_value(&mut selected, i, format!("layer {}", l.layer));
                        }
                    });
                if selected != self.selection.moe_layer {
                    self.commands.push(Command::SelectLayer(selected));
                }
            }
        });
        match self.settings.bottom_tab {
            BottomTab::LayerHeatmap => self.layer_heatmap.ui(
                ui,
                data,
                self.selection,
                &mut self.settings.heatmap_probabilities,
                &mut self.commands,
            ),
            BottomTab::Text => self
                .colored_text
                .ui(ui, data, self.selection, &mut self.commands),
            BottomTab::Load => {
                self.load
                    .ui(ui, data, self.selection, &mut self.settings.capacity_factor)
            }
            BottomTab::Balance => balance::ui(
                ui,
                data,
                self.selection,
                self.balance_history.make_contiguous(),
            ),
            BottomTab::Timings => {
                let history = self.timing_history.make_contiguous();
                self.timings.ui(ui, data, history)
            }
            BottomTab::Compare => {
                let a_label = self.run_label(data);
                let b = match &self.pinned {
                    Some(p) => Some((&p.data, p.label.clone())),
                    None => data
                        .baseline
                        .as_deref()
                        .map(|b| (b, "unmodified".to_owned())),
                };
                match b {
                    Some((b, b_label)) => self.compare.ui(
                        ui,
                        (data, &a_label),
                        (b, &b_label),
                        self.selection,
                        &mut self.commands,
                    ),
                    None => {
                        ui.label(
                            "Nothing to compare yet: pin this run as B (Compare, on the left) \
                             and change the prompt, dtype or checkpoint, open a trace as B, or \
                             set an intervention.",
                        );
                    }
                }
            }
        }
    }
}
