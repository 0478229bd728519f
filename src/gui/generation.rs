//! The Generate panel: how a prompt is continued (length, greedy or sampled) and the button that
//! starts or stops it. The worker runs the generation; tokens stream into every view.

use crate::engine::generate::{GenerateOptions, Sampling};
use egui::Ui;

/// What the panel asks the app to do this frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenerationAction {
    Start,
    Stop,
}

/// The panel's settings (kept for the session).
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationControls {
    pub max_new_tokens: usize,
    /// 0 is greedy decoding.
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
    pub stop_at_eos: bool,
}

impl Default for GenerationControls {
    fn default() -> Self {
        Self {
            max_new_tokens: 32,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop_at_eos: true,
        }
    }
}

impl GenerationControls {
    /// The options to generate with; stop tokens are the worker's to fill in (it holds the
    /// checkpoint), when [`GenerationControls::stop_at_eos`] says so.
    pub fn options(&self) -> GenerateOptions {
        GenerateOptions {
            max_new_tokens: self.max_new_tokens,
            sampling: if self.temperature > 0.0 {
                Sampling::Sample {
                    temperature: self.temperature,
                    top_p: self.top_p,
                    seed: self.seed,
                }
            } else {
                Sampling::Greedy
            },
            stop_ids: Vec::new(),
        }
    }

    /// The panel; `running` while a generation is in flight, `enabled` when a model can run.
    pub fn ui(&mut self, ui: &mut Ui, running: bool, enabled: bool) -> Option<GenerationAction> {
        let mut action = None;
        ui.horizontal(|ui| {
            if running {
                if ui
                    .button("■ Stop")
                    .on_hover_text("stop generating; the tokens so far stay")
                    .clicked()
                {
                    action = Some(GenerationAction::Stop);
                }
                ui.spinner();
            } else if ui
                .add_enabled(enabled, egui::Button::new("▶ Generate"))
                .on_hover_text("continue the input token by token; the views follow each token")
                .clicked()
            {
                action = Some(GenerationAction::Start);
            }
            ui.add(
                egui::DragValue::new(&mut self.max_new_tokens)
                    .range(1..=4096)
                    .suffix(" tokens"),
            )
            .on_hover_text("new tokens at most");
        });
        ui.horizontal(|ui| {
            ui.add(
                egui::DragValue::new(&mut self.temperature)
                    .range(0.0..=5.0)
                    .speed(0.01)
                    .prefix("temperature "),
            )
            .on_hover_text("0: greedy (the most probable token every step)");
            ui.add_enabled(
                self.temperature > 0.0,
                egui::DragValue::new(&mut self.top_p)
                    .range(0.01..=1.0)
                    .speed(0.01)
                    .prefix("top-p "),
            );
            ui.add_enabled(
                self.temperature > 0.0,
                egui::DragValue::new(&mut self.seed).prefix("seed "),
            );
        });
        ui.checkbox(&mut self.stop_at_eos, "stop at the model's EOS tokens");
        action
    }
}
