//! The Interventions panel: the CLI's `--top-k`, `--ablate`, `--zero-expert`, `--force` and
//! `--router-noise` as fields that re-run the input live, and what the last intervened run did
//! against the unmodified one (next-token KL, top-1 changes, perplexity, rerouted tokens per
//! layer). The fields take the CLI's syntax, so a finding in the app is one copy away from a
//! command line.

use crate::analysis::InterventionEffect;
use crate::routing::intervention::{
    parse_expert_refs, parse_forced_route, CapacityDrops, DropPolicy, RouterNoise,
};
use crate::routing::Interventions;
use egui::{Color32, RichText, Ui};

/// Which noise the router gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NoiseKind {
    #[default]
    None,
    Gumbel,
    Jitter,
}

/// The panel's fields (kept for the session).
#[derive(Clone, Debug, PartialEq)]
pub struct InterventionControls {
    pub top_k_enabled: bool,
    pub top_k: usize,
    /// `LAYER:EXPERT,…`
    pub ablate: String,
    pub zero: String,
    /// `LAYER:TOKEN:EXPERT+EXPERT`, several separated by spaces or `;`.
    pub force: String,
    pub noise: NoiseKind,
    /// Gumbel scale or jitter eps.
    pub noise_amount: f32,
    pub noise_seed: u64,
    pub drop_over_capacity: bool,
    pub capacity_factor: f64,
    pub drop_policy: DropPolicy,
}

impl Default for InterventionControls {
    fn default() -> Self {
        Self {
            top_k_enabled: false,
            top_k: 1,
            ablate: String::new(),
            zero: String::new(),
            force: String::new(),
            noise: NoiseKind::None,
            noise_amount: 0.5,
            noise_seed: 0,
            drop_over_capacity: false,
            capacity_factor: 1.25,
            drop_policy: DropPolicy::Position,
        }
    }
}

impl InterventionControls {
    /// The interventions the fields describe, or what is wrong with them (in the CLI's words).
    pub fn interventions(&self) -> Result<Interventions, String> {
        let noise = match self.noise {
            NoiseKind::None => None,
            NoiseKind::Gumbel => Some(RouterNoise::Gumbel {
                scale: self.noise_amount,
                seed: self.noise_seed,
            }),
            NoiseKind::Jitter => Some(RouterNoise::Jitter {
                eps: self.noise_amount,
                seed: self.noise_seed,
            }),
        };
        Ok(Interventions {
            top_k: self.top_k_enabled.then_some(self.top_k),
            ablate: parse_expert_refs(&self.ablate).map_err(|e| format!("ablate: {e}"))?,
            zero: parse_expert_refs(&self.zero).map_err(|e| format!("zero: {e}"))?,
            force: self
                .force
                .split(|c: char| c == ';' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(parse_forced_route)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("force: {e}"))?,
            noise,
            capacity: self.drop_over_capacity.then_some(CapacityDrops {
                capacity_factor: self.capacity_factor,
                policy: self.drop_policy,
            }),
        })
    }

    /// The panel. `problem` is why the last run refused the interventions, `effect` what the
    /// last intervened run changed, `tokens` how many tokens it read. Returns whether a field
    /// changed (the app re-runs the input then).
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        problem: Option<&str>,
        effect: Option<&InterventionEffect>,
        tokens: usize,
    ) -> bool {
        let before = self.clone();
        egui::Grid::new("intervention-grid")
            .num_columns(2)
            .show(ui, |ui| {
                ui.checkbox(&mut self.top_k_enabled, "top-k")
                    .on_hover_text("route every MoE layer with this k instead of the config's");
                ui.add_enabled(
                    self.top_k_enabled,
                    egui::DragValue::new(&mut self.top_k)
                        .range(1..=256)
                        .prefix("k "),
                );
                ui.end_row();
                let label = ui.label("ablate").on_hover_text(
                    "LAYER:EXPERT,… — removed from the router (logit −∞): tokens go to the next best",
                );
                ui.add(
                    egui::TextEdit::singleline(&mut self.ablate)
                        .id_salt("ablate")
                        .hint_text("1:3,2:5"),
                )
                .labelled_by(label.id);
                ui.end_row();
                let label = ui
                    .label("zero")
                    .on_hover_text("LAYER:EXPERT,… — output multiplied by 0, routing unchanged");
                ui.add(
                    egui::TextEdit::singleline(&mut self.zero)
                        .id_salt("zero")
                        .hint_text("1:3"),
                )
                .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("force").on_hover_text(
                    "LAYER:TOKEN:EXPERT+EXPERT … — pin a token's experts, weighted by the rule",
                );
                ui.add(
                    egui::TextEdit::singleline(&mut self.force)
                        .id_salt("force")
                        .hint_text("1:4:0+2"),
                )
                .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("noise");
                ui.horizontal(|ui| {
                    egui::ComboBox::from_id_salt("noise-kind")
                        .selected_text(match self.noise {
                            NoiseKind::None => "none",
                            NoiseKind::Gumbel => "gumbel",
                            NoiseKind::Jitter => "jitter",
                        })
                        .show_ui(ui, |ui| {
                            ui.selectable_value(&mut self.noise, NoiseKind::None, "none");
                            ui.selectable_value(&mut self.noise, NoiseKind::Gumbel, "gumbel")
                                .on_hover_text("scale · Gumbel(0, 1) added to every router logit");
                            ui.selectable_value(&mut self.noise, NoiseKind::Jitter, "jitter")
                                .on_hover_text("router input × U(1 − eps, 1 + eps)");
                        })
                        .response
                        .labelled_by(label.id);
                    let on = self.noise != NoiseKind::None;
                    ui.add_enabled(
                        on,
                        egui::DragValue::new(&mut self.noise_amount)
                            .range(0.0..=if self.noise == NoiseKind::Jitter { 0.99 } else { 10.0 })
                            .speed(0.01)
                            .prefix(if self.noise == NoiseKind::Jitter { "eps " } else { "scale " }),
                    );
                    ui.add_enabled(on, egui::DragValue::new(&mut self.noise_seed).prefix("seed "));
                });
                ui.end_row();
                ui.checkbox(&mut self.drop_over_capacity, "capacity").on_hover_text(
                    "assignments beyond C = ceil(T·k/E·CF) skip their expert (runs only; \
                     Generate refuses it)",
                );
                ui.horizontal(|ui| {
                    let on = self.drop_over_capacity;
                    ui.add_enabled(
                        on,
                        egui::DragValue::new(&mut self.capacity_factor)
                            .range(0.05..=16.0)
                            .speed(0.01)
                            .prefix("CF "),
                    );
                    let label = ui.label("drop");
                    ui.add_enabled_ui(on, |ui| {
                        egui::ComboBox::from_id_salt("drop-policy")
                            .selected_text(self.drop_policy.label())
                            .show_ui(ui, |ui| {
                                ui.selectable_value(&mut self.drop_policy, DropPolicy::Position, "position")
                                    .on_hover_text("each expert keeps its first C tokens");
                                ui.selectable_value(&mut self.drop_policy, DropPolicy::Probs, "probs")
                                    .on_hover_text("each expert keeps its C most probable tokens");
                            })
                            .response
                            .labelled_by(label.id);
                    });
                });
                ui.end_row();
            });
        let parsed = self.interventions();
        let error_color = ui.visuals().error_fg_color;
        match (&parsed, problem) {
            (Err(why), _) => {
                ui.label(RichText::new(why).color(error_color));
            }
            (Ok(_), Some(why)) => {
                ui.label(RichText::new(why).color(error_color));
            }
            (Ok(i), None) => {
                if let Some(last) = i.last_forced_token().filter(|&t| t >= tokens && tokens > 0) {
                    ui.label(
                        RichText::new(format!(
                            "force: position {last} is past the {tokens} tokens; it applies once generation reaches it"
                        ))
                        .color(Color32::from_rgb(0xd0, 0x90, 0x20)),
                    );
                }
                if i.is_empty() {
                    ui.weak("none: the model routes as configured");
                }
            }
        }
        // The summary belongs to the last run that went through, not to a refused set.
        if let (Some(effect), Ok(i), None) = (effect, &parsed, problem) {
            if !i.is_empty() {
                effect_summary(ui, effect);
            }
        }
        *self != before
    }
}

/// What the intervened run changed against the unmodified one, as a small grid.
fn effect_summary(ui: &mut Ui, effect: &InterventionEffect) {
    ui.add_space(4.0);
    ui.label(
        RichText::new(format!(
            "against the unmodified run ({})",
            effect.interventions
        ))
        .strong(),
    );
    egui::Grid::new("effect-grid")
        .num_columns(2)
        .striped(true)
        .show(ui, |ui| {
            ui.label("next-token KL");
            ui.label(format!(
                "mean {:.4} · max {:.4} nats",
                effect.mean_kl_nats, effect.max_kl_nats
            ));
            ui.end_row();
            ui.label("top-1 changed");
            ui.label(format!(
                "{} of {} positions",
                effect.top1_changed_positions, effect.num_tokens
            ));
            ui.end_row();
            if let (Some(a), Some(b)) = (effect.perplexity_baseline, effect.perplexity_intervened) {
                ui.label("perplexity");
                ui.label(format!("{a:.2} → {b:.2}"));
                ui.end_row();
            }
            ui.label("rerouted tokens");
            let layers: Vec<String> = effect
                .moe_layers
                .iter()
                .map(|l| format!("L{} {}", l.layer, l.tokens_rerouted))
                .collect();
            ui.label(layers.join(" · "))
                .on_hover_text("per MoE layer, tokens whose expert set changed");
            ui.end_row();
            if effect.moe_layers.iter().any(|l| l.assignments_dropped > 0) {
                ui.label("dropped");
                let layers: Vec<String> = effect
                    .moe_layers
                    .iter()
                    .map(|l| format!("L{} {}", l.layer, l.assignments_dropped))
                    .collect();
                ui.label(layers.join(" · ")).on_hover_text(
                    "per MoE layer, assignments over capacity that skipped their expert",
                );
                ui.end_row();
            }
        });
}
