//! The prompt with each token on its top-1 expert's colour at the selected layer (Mixtral paper,
//! Fig. 8). Hover a token for its routing card; click to select it.

use super::super::command::Command;
use super::super::run_data::RunData;
use super::super::theme;
use super::{hover, Selection};
use egui::{RichText, Sense, Ui};

pub fn ui(ui: &mut Ui, data: &RunData, selection: Selection, commands: &mut Vec<Command>) {
    let moe_layer = selection
        .moe_layer
        .min(data.num_moe_layers().saturating_sub(1));
    let Some(layer) = data.trace.moe_layers.get(moe_layer) else {
        ui.label("No MoE layers in this trace.");
        return;
    };
    ui.label(
        RichText::new(format!(
            "layer {}: each token on its top-1 expert's colour (paler = lower weight share)",
            layer.layer
        ))
        .small()
        .weak(),
    );
    egui::ScrollArea::vertical()
        .id_salt("colored-text")
        .show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.spacing_mut().item_spacing = egui::vec2(0.0, 4.0);
                for (t, token) in data.trace.tokens.iter().enumerate() {
                    let Some((expert, share)) = data.top1(moe_layer, t) else {
                        continue;
                    };
                    let background = theme::expert_color(expert, share);
                    let text = if token.text.is_empty() {
                        "∅".to_owned()
                    } else {
                        token.text.replace('\n', "⏎")
                    };
                    let mut rich = RichText::new(text)
                        .monospace()
                        .size(15.0)
                        .background_color(background)
                        .color(theme::text_on(background));
                    if selection.token == Some(t) {
                        rich = rich.underline().strong();
                    }
                    let response = ui.add(egui::Label::new(rich).sense(Sense::click()));
                    if response.clicked() {
                        commands.push(Command::Select {
                            token: t,
                            moe_layer,
                        });
                    }
                    response.on_hover_ui(|ui| hover::token_card(ui, data, moe_layer, t));
                    if token.text.contains('\n') {
                        ui.end_row();
                    }
                }
            });
        });
}
