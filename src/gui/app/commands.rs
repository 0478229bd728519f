//! The one place commands are applied: what widgets, dialogs and background threads asked for,
//! in order, at the end of the frame.

use super::*;

impl MoescopeApp {
    /// Applies every queued command in order; commands that others queue (Reload → Load, a
    /// trace path → OpenTrace) run after the rest of the queue, in the same call.
    pub(super) fn apply_commands(&mut self) {
        while !self.commands.is_empty() {
            for command in std::mem::take(&mut self.commands) {
                self.apply_command(command);
            }
        }
    }

    pub(super) fn apply_command(&mut self, command: Command) {
        match command {
            Command::OpenDialog => {
                let dialogs = self.dialogs.clone();
                self.background("open-dialog", move || {
                    Background::Picked(dialogs.pick_checkpoint())
                });
            }
            Command::OpenGgufDialog => {
                let dialogs = self.dialogs.clone();
                self.background("open-dialog", move || {
                    Background::Picked(dialogs.pick_gguf())
                });
            }
            Command::Load(path) if crate::input::is_trace_file(&path) => {
                self.commands.push(Command::OpenTrace(path));
            }
            Command::Load(path) => {
                let dtype = parse_dtype(&self.settings.dtype).unwrap_or(candle_core::DType::F32);
                let previous = match std::mem::replace(&mut self.model, ModelState::Empty) {
                    ModelState::Ready(summary) => Some(summary),
                    ModelState::Loading { previous, .. } => previous,
                    ModelState::Empty => None,
                };
                self.model = ModelState::Loading {
                    path: path.clone(),
                    fraction: 0.0,
                    previous,
                };
                self.worker.load(path, dtype, self.settings.device.clone());
            }
            Command::OpenTraceDialog => {
                let dialogs = self.dialogs.clone();
                self.background("open-dialog", move || {
                    Background::Picked(dialogs.pick_trace())
                });
            }
            Command::OpenTrace(path) if crate::input::is_corpus_file(&path) => {
                self.background("read-corpus", move || {
                    Background::CorpusRead(path.clone(), read_corpus(&path))
                });
            }
            Command::OpenTrace(path) => {
                self.background("read-trace", move || {
                    Background::TraceRead(path.clone(), read_run(&path))
                });
            }
            Command::CancelLoad => self.worker.cancel_load(),
            Command::Select { token, moe_layer } => {
                self.selection = Selection {
                    token: Some(token),
                    moe_layer,
                }
            }
            Command::SelectLayer(moe_layer) => self.selection.moe_layer = moe_layer,
            Command::DismissError(i) => {
                if i < self.errors.len() {
                    self.errors.remove(i);
                }
            }
            Command::ExportFigure(kind) => {
                let kind = match kind {
                    FigureKind::LayerHeatmap { .. } => FigureKind::LayerHeatmap {
                        moe_layer: self.selection.moe_layer,
                        probabilities: self.settings.heatmap_probabilities,
                    },
                    other => other,
                };
                let name = export::default_file_name(&kind, &self.model_name());
                let dialogs = self.dialogs.clone();
                self.background("save-dialog", move || {
                    let path = dialogs.save_file(&name, &["png", "svg"]);
                    Background::FigurePath(kind, path)
                });
            }
            Command::ExportData => {
                let name = format!("{}-trace.json", self.model_name());
                let dialogs = self.dialogs.clone();
                self.background("save-dialog", move || {
                    Background::DataPath(dialogs.save_file(&name, &["json", "csv"]))
                });
            }
            Command::WriteFigure(kind, path) => {
                let Some(data) = &self.data else { return };
                let trace = data.trace.clone();
                self.background("export", move || {
                    Background::Wrote(
                        crate::export::write_figure(&trace, &kind, &path)
                            .map(|()| path)
                            .map_err(|e| e.to_string()),
                    )
                });
            }
            Command::WriteData(path) => {
                let Some(data) = &self.data else { return };
                let trace = data.trace.clone();
                self.background("export", move || {
                    Background::Wrote(
                        crate::export::write_data(&trace, &path)
                            .map(|()| path)
                            .map_err(|e| e.to_string()),
                    )
                });
            }
            Command::Rerun => self.run_now = true,
            Command::Reload => {
                if let ModelState::Ready(summary) = &self.model {
                    self.commands.push(Command::Load(summary.path.clone()));
                }
            }
            Command::FocusPrompt => self.focus_prompt = true,
            Command::PinRun => {
                if let Some(data) = &self.data {
                    let label = self.run_label(data);
                    self.notice = Some(format!("B is now {label}"));
                    self.pinned = Some(PinnedRun {
                        data: data.clone(),
                        label,
                    });
                    self.settings.bottom_tab = BottomTab::Compare;
                }
            }
            Command::Unpin => self.pinned = None,
            Command::OpenReferenceDialog => {
                let dialogs = self.dialogs.clone();
                self.background("open-dialog", move || {
                    Background::ReferencePicked(dialogs.pick_trace())
                });
            }
            Command::OpenReference(path) => {
                self.background("read-trace", move || {
                    Background::ReferenceRead(path.clone(), read_run(&path))
                });
            }
            Command::ExportComparison => {
                let name = format!("{}-comparison.json", self.model_name());
                let dialogs = self.dialogs.clone();
                self.background("save-dialog", move || {
                    Background::ComparisonPath(dialogs.save_file(&name, &["json"]))
                });
            }
            Command::ExportCorpusFigure(layer) => {
                let Some(corpus) = &self.corpus else { return };
                let name = format!(
                    "{}-layer{}.png",
                    corpus
                        .path
                        .file_stem()
                        .map_or_else(|| "corpus".to_owned(), |s| s.to_string_lossy().into_owned()),
                    corpus.report.moe_layers.get(layer).map_or(0, |l| l.layer)
                );
                let dialogs = self.dialogs.clone();
                self.background("save-dialog", move || {
                    Background::CorpusFigurePath(layer, dialogs.save_file(&name, &["png", "svg"]))
                });
            }
            Command::WriteCorpusFigure(layer, path) => {
                let Some(corpus) = &self.corpus else { return };
                let report = corpus.report.clone();
                self.background("export", move || {
                    Background::Wrote(
                        crate::export::write_corpus_figure(&report, layer, &path)
                            .map(|()| path)
                            .map_err(|e| e.to_string()),
                    )
                });
            }
            Command::ShowCorpus(show) => self.show_corpus = show && self.corpus.is_some(),
            Command::RunCorpusDialog => {
                let dialogs = self.dialogs.clone();
                self.background("open-dialog", move || {
                    let paths = dialogs.pick_corpus_data().and_then(|data| {
                        let out = dialogs.save_file("corpus.json", &["json"])?;
                        Some((data, out))
                    });
                    Background::CorpusPaths(paths)
                });
            }
            Command::RunCorpus { data, out } => {
                if self.loaded_model().is_none() || self.corpus_run.is_some() {
                    return;
                }
                self.worker
                    .corpus(data.clone(), out, crate::corpus::CorpusOptions::default());
                self.corpus_run = Some((data, None));
            }
            Command::StopCorpus => self.worker.stop(),
            Command::CloseCorpus => {
                self.corpus = None;
                self.show_corpus = false;
            }
            Command::WriteComparison(path) => {
                let Some((a, b)) = compared_runs(&self.data, &self.pinned) else {
                    return;
                };
                let comparison = self.compare.comparison(a, b).clone();
                self.background("export", move || {
                    let written = comparison
                        .and_then(|c| serde_json::to_vec(&c).map_err(|e| e.to_string()))
                        .and_then(|bytes| {
                            crate::atomic::write_bytes(&path, &bytes).map_err(|e| e.to_string())
                        });
                    Background::Wrote(written.map(|()| path))
                });
            }
        }
    }
}
