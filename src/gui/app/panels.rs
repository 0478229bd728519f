//! The window's frame: menus, status bar, the left panel (input, generation, interventions,
//! comparison, device, model) and the welcome screen.

use super::*;

impl MoescopeApp {
    /// Draws the whole window.
    pub fn draw(&mut self, ui: &mut Ui) {
        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_ui(ui));
        egui::Panel::left("input")
            .default_size(340.0)
            .resizable(true)
            .show(ui, |ui| {
                // The panels grew past a laptop screen's height: scroll rather than clip.
                egui::ScrollArea::vertical()
                    .id_salt("input-scroll")
                    .show(ui, |ui| self.input_ui(ui));
            });
        egui::CentralPanel::default().show(ui, |ui| {
            self.errors_ui(ui);
            if let ModelState::Loading { path, fraction, .. } = &self.model {
                let (path, fraction) = (path.clone(), *fraction);
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(format!("loading {}", path.display()));
                    ui.add(
                        egui::ProgressBar::new(fraction)
                            .show_percentage()
                            .desired_width(240.0),
                    );
                    if ui.button("Cancel").clicked() {
                        self.commands.push(Command::CancelLoad);
                    }
                });
            }
            self.corpus_switch_ui(ui);
            if self.show_corpus {
                if let Some(corpus) = &mut self.corpus {
                    corpus.ui(ui, &mut self.commands);
                    return;
                }
            }
            match self.data.take() {
                Some(data) => {
                    self.views_ui(ui, &data);
                    self.data = Some(data);
                }
                None => self.welcome_ui(ui),
            }
        });
    }

    /// With a corpus open: switch between it and the run's views, or close it.
    fn corpus_switch_ui(&mut self, ui: &mut Ui) {
        let Some(corpus) = &self.corpus else { return };
        let name = corpus.file_name();
        ui.horizontal(|ui| {
            let mut show = self.show_corpus;
            ui.selectable_value(&mut show, false, "Run");
            ui.selectable_value(&mut show, true, format!("Corpus · {name}"));
            if show != self.show_corpus {
                self.commands.push(Command::ShowCorpus(show));
            }
            if ui.small_button("Close corpus").clicked() {
                self.commands.push(Command::CloseCorpus);
            }
        });
        ui.separator();
    }

    fn menu_ui(&mut self, ui: &mut Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.add(egui::Button::new("Open checkpoint…").shortcut_text(ui.ctx().format_shortcut(&SHORTCUT_OPEN))).clicked() {
                    self.commands.push(Command::OpenDialog);
                }
                if ui.button("Open GGUF file…").on_hover_text("a llama.cpp model file (any part of a split set)").clicked() {
                    self.commands.push(Command::OpenGgufDialog);
                }
                if ui.button("Open trace or corpus…").on_hover_text("a trace JSON written by moescope trace or Export data, or a corpus JSON written by moescope corpus").clicked() {
                    self.commands.push(Command::OpenTraceDialog);
                }
                ui.menu_button("Open recent", |ui| {
                    if self.settings.recent.is_empty() {
                        ui.label("none yet");
                    }
                    for path in self.settings.recent.clone() {
                        if ui.button(path.display().to_string()).clicked() {
                            self.commands.push(Command::Load(path));
                        }
                    }
                });
                ui.menu_button("Open sample model", |ui| {
                    for path in crate::gui::bundled_models() {
                        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        if ui.button(name).clicked() {
                            self.commands.push(Command::Load(path));
                        }
                    }
                });
                ui.separator();
                let has_data = self.data.is_some();
                ui.add_enabled_ui(has_data, |ui| {
                    ui.menu_button("Export heatmap…", |ui| {
                        for kind in [
                            FigureKind::RoutingMap,
                            FigureKind::LayerHeatmap {
                                moe_layer: 0,
                                probabilities: true,
                            },
                            FigureKind::LoadHeatmap,
                        ] {
                            if ui.button(export::label(&kind)).clicked() {
                                self.commands.push(Command::ExportFigure(kind));
                            }
                        }
                    });
                    if ui.button("Export data…").on_hover_text("trace JSON, or long-format CSV: layer,token_index,token,rank,expert,weight,prob").clicked() {
                        self.commands.push(Command::ExportData);
                    }
                });
            });
            ui.menu_button("View", |ui| {
                ui.checkbox(&mut self.settings.dark_mode, "Dark theme");
                ui.add(egui::Slider::new(&mut self.settings.debounce_ms, 0..=500).text("re-run delay (ms)"));
            });
        });
    }

    fn status_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            match &self.model {
                ModelState::Ready(s) => {
                    ui.label(format!(
                        "{} · {} · {} · {}",
                        s.family, s.architecture, s.device, s.dtype
                    ));
                }
                ModelState::Loading { .. } => {
                    ui.label("loading…");
                }
                ModelState::Empty => {
                    ui.label("no model");
                }
            }
            if let Some(data) = &self.data {
                ui.separator();
                ui.label(format!("{} tokens", data.num_tokens()));
                ui.separator();
                ui.label(format!("forward {:.1} ms", data.trace.forward_ms));
            }
            if let Some(ms) = self.last_update_ms {
                ui.separator();
                ui.label(format!("edit → views {ms:.0} ms")).on_hover_text(
                    "from the last edit to the views showing its routing, re-run delay included",
                );
            }
            if self.pending.is_some() || self.dirty_since.is_some() {
                ui.spinner();
                if let Some((done, layers)) = self.pass_progress {
                    ui.label(format!("layer {done}/{layers}")).on_hover_text(
                        "a slow pass: the weights not yet in memory are read from disk",
                    );
                }
            }
            if let Some(notice) = &self.notice {
                ui.separator();
                ui.label(RichText::new(notice).italics());
            }
        });
    }

    /// What the views show when they come from a trace file rather than a run: its model, and
    /// that the prompt below is not what produced it.
    fn trace_file_ui(&mut self, ui: &mut Ui) {
        let (Some(path), Some(data)) = (&self.trace_file, &self.data) else {
            return;
        };
        let model = &data.trace.model;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        ui.heading("Trace file");
        ui.label(RichText::new(name).strong())
            .on_hover_text(path.display().to_string());
        ui.label(format!(
            "{} · {} tokens · {} MoE layers of {}",
            model.architecture,
            data.num_tokens(),
            data.num_moe_layers(),
            model.num_layers
        ));
        ui.label(format!(
            "{} experts, top-{} · captured on {} in {}",
            model.num_experts, model.top_k, model.device, model.dtype
        ));
        let next = if self.loaded_model().is_some() {
            "Editing the prompt runs the loaded model and replaces these views."
        } else {
            "Open a checkpoint to run prompts of your own."
        };
        ui.label(RichText::new(next).weak());
        ui.separator();
    }

    fn input_ui(&mut self, ui: &mut Ui) {
        self.trace_file_ui(ui);
        ui.heading("Input");
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.input_mode, InputMode::Prompt, "Prompt");
            ui.selectable_value(&mut self.input_mode, InputMode::TokenIds, "Token ids");
        });
        let changed = match self.input_mode {
            InputMode::Prompt => {
                let edit = egui::TextEdit::multiline(&mut self.settings.prompt)
                    .id_salt("prompt")
                    .hint_text("type a prompt: routing follows as you type")
                    .desired_rows(8)
                    .desired_width(f32::INFINITY);
                let response = ui.add(edit);
                if std::mem::take(&mut self.focus_prompt) {
                    response.request_focus();
                }
                response.changed()
            }
            InputMode::TokenIds => {
                let response = ui.add(
                    egui::TextEdit::multiline(&mut self.token_ids_text)
                        .id_salt("token-ids")
                        .hint_text("1, 2, 3")
                        .desired_rows(4)
                        .desired_width(f32::INFINITY),
                );
                response.changed()
            }
        };
        if changed {
            self.dirty_since = Some(Instant::now());
        }
        ui.separator();
        ui.heading("Generate");
        // A corpus run holds the engine (and its stop flag) until it ends.
        let ready = matches!(self.model, ModelState::Ready(_)) && self.corpus_run.is_none();
        match self.generation.ui(ui, self.generating.is_some(), ready) {
            Some(GenerationAction::Start) => self.start_generation(),
            Some(GenerationAction::Stop) => self.worker.stop(),
            None => {}
        }
        ui.separator();
        ui.heading("Interventions");
        let tokens = self.data.as_ref().map_or(0, RunData::num_tokens);
        let effect = self.data.as_ref().and_then(|d| d.effect.as_ref());
        if self
            .intervention
            .ui(ui, self.intervention_problem.as_deref(), effect, tokens)
            && self.intervention.interventions().is_ok()
        {
            self.dirty_since = Some(Instant::now());
        }
        ui.separator();
        self.compare_panel_ui(ui);
        ui.separator();
        self.corpus_panel_ui(ui);
        ui.separator();
        ui.heading("Run on");
        let mut rerun = false;
        egui::ComboBox::from_label("device")
            .selected_text(self.settings.device.clone())
            .show_ui(ui, |ui| {
                for device in &self.devices {
                    rerun |= ui
                        .selectable_value(
                            &mut self.settings.device,
                            device.name.clone(),
                            &device.name,
                        )
                        .on_hover_text(&device.description)
                        .changed();
                }
            });
        egui::ComboBox::from_label("dtype")
            .selected_text(self.settings.dtype.clone())
            .show_ui(ui, |ui| {
                for dtype in ["f32", "bf16", "f16"] {
                    rerun |= ui
                        .selectable_value(&mut self.settings.dtype, dtype.to_owned(), dtype)
                        .changed();
                }
            });
        if rerun {
            self.commands.push(Command::Reload);
        }
        ui.separator();
        if let ModelState::Ready(s) = &self.model {
            ui.heading("Model");
            egui::Grid::new("model-grid").num_columns(2).show(ui, |ui| {
                ui.label("path");
                ui.label(s.path.display().to_string());
                ui.end_row();
                ui.label("family");
                ui.label(s.family);
                ui.end_row();
                ui.label("layers");
                ui.label(format!("{} ({} MoE)", s.num_layers, s.num_moe_layers));
                ui.end_row();
                ui.label("experts");
                ui.label(format!("{} routed, top-{}", s.num_experts, s.top_k));
                ui.end_row();
                ui.label("routing");
                ui.label(&s.routing);
                ui.end_row();
                ui.label("weights");
                ui.label(format!(
                    "{}, {}",
                    crate::units::human_bytes(s.weight_bytes),
                    s.weight_format
                ));
                ui.end_row();
                ui.label("memory");
                ui.label(&s.memory_note);
                ui.end_row();
                ui.label("tokenizer");
                ui.add(egui::Label::new(&s.tokenizer_note).wrap());
                ui.end_row();
                ui.label("load time");
                ui.label(format!("{:.0} ms", s.load_ms));
                ui.end_row();
            });
        }
    }

    /// Pin a run (or open a trace) as B; every later run is A, compared with it.
    fn compare_panel_ui(&mut self, ui: &mut Ui) {
        ui.heading("Compare");
        ui.horizontal(|ui| {
            let pin = ui
                .add_enabled(self.data.is_some(), egui::Button::new("Pin as B"))
                .on_hover_text(
                    "keep this run; then change the prompt, dtype or checkpoint (or set an \
                     intervention) and the views compare the new run A with it",
                );
            if pin.clicked() {
                self.commands.push(Command::PinRun);
            }
            if ui
                .button("Open trace as B…")
                .on_hover_text("compare with a trace file: another machine, engine or checkpoint")
                .clicked()
            {
                self.commands.push(Command::OpenReferenceDialog);
            }
        });
        match &self.pinned {
            Some(pinned) => {
                ui.horizontal_wrapped(|ui| {
                    ui.label(RichText::new("B").strong());
                    ui.label(&pinned.label);
                });
                if ui.button("Unpin").clicked() {
                    self.commands.push(Command::Unpin);
                }
            }
            None => {
                ui.label(
                    RichText::new(
                        "nothing pinned: an intervened run is compared with its unmodified run",
                    )
                    .weak(),
                );
            }
        }
    }

    /// Run the loaded model over a folder of documents into a corpus file, with progress.
    fn corpus_panel_ui(&mut self, ui: &mut Ui) {
        ui.heading("Corpus");
        match &self.corpus_run {
            None => {
                let ready = self.loaded_model().is_some();
                if ui
                    .add_enabled(ready, egui::Button::new("Run corpus on a folder…"))
                    .on_hover_text(
                        "every .txt / .jsonl document under a folder through this model \
                         (routing unmodified); subfolders name the domains",
                    )
                    .clicked()
                {
                    self.commands.push(Command::RunCorpusDialog);
                }
            }
            Some((data, progress)) => {
                let name = data.file_name().map_or_else(
                    || data.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                ui.label(format!("running over {name}"));
                if let Some(p) = progress {
                    let fraction = p.bytes_read as f32 / p.bytes_total.max(1) as f32;
                    ui.add(egui::ProgressBar::new(fraction).show_percentage());
                    let eta = p
                        .eta_s()
                        .map_or(String::new(), |s| format!(" · {s:.0} s left"));
                    ui.label(format!(
                        "{} documents · {} tokens · {:.0} tok/s{eta}",
                        p.documents,
                        p.tokens,
                        p.tokens_per_s()
                    ));
                } else {
                    ui.spinner();
                }
                if ui
                    .button("Stop")
                    .on_hover_text("end after this pass and keep what was counted")
                    .clicked()
                {
                    self.commands.push(Command::StopCorpus);
                }
            }
        }
    }

    fn errors_ui(&mut self, ui: &mut Ui) {
        for (i, message) in self.errors.iter().enumerate() {
            egui::Frame::new()
                .fill(Color32::from_rgb(90, 20, 20))
                .inner_margin(6.0)
                .corner_radius(4.0)
                .show(ui, |ui| {
                    // Dismiss first, on the right, so a long message wraps beside it instead
                    // of pushing it out of the window.
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::TOP), |ui| {
                        if ui.button("Dismiss").clicked() {
                            self.commands.push(Command::DismissError(i));
                        }
                        ui.with_layout(egui::Layout::left_to_right(egui::Align::TOP), |ui| {
                            ui.label(RichText::new("⚠").color(Color32::WHITE));
                            ui.add(
                                egui::Label::new(RichText::new(message).color(Color32::WHITE))
                                    .wrap(),
                            );
                        });
                    });
                });
        }
    }

    fn welcome_ui(&mut self, ui: &mut Ui) {
        ui.vertical_centered(|ui| {
            ui.add_space(24.0);
            ui.heading(RichText::new("moescope").size(28.0));
            ui.label("See how a Mixture-of-Experts model routes every token.");
            ui.add_space(12.0);
            if ui
                .button(RichText::new("Open checkpoint…").size(16.0))
                .clicked()
            {
                self.commands.push(Command::OpenDialog);
            }
            if ui
                .button(RichText::new("Open GGUF file…").size(16.0))
                .clicked()
            {
                self.commands.push(Command::OpenGgufDialog);
            }
            if ui
                .button(RichText::new("Open trace or corpus…").size(16.0))
                .clicked()
            {
                self.commands.push(Command::OpenTraceDialog);
            }
            ui.label(
                RichText::new(
                    "or drop a checkpoint folder, its config.json, a .safetensors or .gguf file or a trace .json here",
                )
                .weak(),
            );
            ui.add_space(16.0);
            let models = crate::gui::bundled_models();
            if !models.is_empty() {
                ui.label(RichText::new("Sample models").strong());
                for path in models {
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if ui.button(name).clicked() {
                        self.commands.push(Command::Load(path));
                    }
                }
            }
            if !self.settings.recent.is_empty() {
                ui.add_space(12.0);
                ui.label(RichText::new("Recent").strong());
                for path in self.settings.recent.clone() {
                    if ui.link(path.display().to_string()).clicked() {
                        self.commands.push(Command::Load(path));
                    }
                }
            }
        });
    }
}
