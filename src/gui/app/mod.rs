//! The app: its state and the per-frame `logic` (merge worker events, debounce edits, shortcuts,
//! drag-and-drop); `commands.rs` applies commands, `panels.rs` draws the frame and left panel,
//! `central.rs` the views — rerun's split of its viewer app into logic, commands and UI.

mod central;
mod commands;
mod panels;

use super::command::Command;
use super::dialogs::FileDialogs;
use super::generation::{GenerationAction, GenerationControls};
use super::intervention::InterventionControls;
use super::run_data::RunData;
use super::settings::{BottomTab, Settings};
use super::views::balance::BalancePoint;
use super::views::colored_text::ColoredText;
use super::views::compare::CompareView;
use super::views::corpus::CorpusView;
use super::views::export::{self, FigureKind};
use super::views::layer_heatmap::LayerHeatmap;
use super::views::load::LoadView;
use super::views::routing_map::RoutingMap;
use super::views::timings::{TimingPoint, TimingsView};
use super::views::{balance, Selection};
use super::worker::{Event, ModelSummary, RunInput, Worker};
use crate::analysis::corpus::CorpusReport;
use crate::engine::device::{available_devices, parse_dtype, DeviceInfo};
use crate::trace::Trace;
use egui::{Color32, Key, KeyboardShortcut, Modifiers, RichText, Ui};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs kept in the live history plots.
const HISTORY_RUNS: usize = 300;
/// Time per frame spent merging worker events (rerun's `App::logic` budget).
const MERGE_BUDGET: Duration = Duration::from_millis(10);

const SHORTCUT_OPEN: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::O);
const SHORTCUT_EXPORT: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::E);
const SHORTCUT_PROMPT: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::L);

/// What the window shows first.
pub enum StartWith {
    /// Load this checkpoint.
    Model(PathBuf),
    /// Load the bundled default sample model (deepseek-tiny), if present.
    DefaultModel,
    /// Show the welcome screen.
    Welcome,
}

enum ModelState {
    Empty,
    /// A load in flight; the model that was ready before it, restored if the load fails (the
    /// worker keeps running it until a new one has loaded).
    Loading {
        path: PathBuf,
        fraction: f32,
        previous: Option<Box<ModelSummary>>,
    },
    Ready(Box<ModelSummary>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum InputMode {
    Prompt,
    TokenIds,
}

/// Answers from dialog and file-writing threads.
enum Background {
    Picked(Option<PathBuf>),
    /// A trace file read and analysed off the UI thread.
    TraceRead(PathBuf, Result<Box<RunData>, String>),
    FigurePath(FigureKind, Option<PathBuf>),
    DataPath(Option<PathBuf>),
    Wrote(Result<PathBuf, String>),
    ReferencePicked(Option<PathBuf>),
    ReferenceRead(PathBuf, Result<Box<RunData>, String>),
    ComparisonPath(Option<PathBuf>),
    CorpusRead(PathBuf, Result<Box<CorpusReport>, String>),
    CorpusFigurePath(usize, Option<PathBuf>),
    /// The documents' folder and the corpus file to write (both chosen), or `None`.
    CorpusPaths(Option<(PathBuf, PathBuf)>),
}

/// Run B of a comparison: a run kept while the prompt, dtype or checkpoint changes, or a trace
/// file, with the words that name it in the views.
pub struct PinnedRun {
    pub data: RunData,
    pub label: String,
}

pub struct MoescopeApp {
    pub settings: Settings,
    worker: Worker,
    dialogs: Arc<dyn FileDialogs>,
    background_tx: SyncSender<Background>,
    background_rx: Receiver<Background>,
    model: ModelState,
    input_mode: InputMode,
    token_ids_text: String,
    /// When the input last changed and has not been sent yet.
    dirty_since: Option<Instant>,
    /// Run without waiting for typing to pause (after a load, a device change).
    run_now: bool,
    next_run_id: u64,
    /// The run in flight and when its input was edited (for the edit → views latency).
    pending: Option<(u64, Instant)>,
    pub data: Option<RunData>,
    selection: Selection,
    pub errors: Vec<String>,
    /// Devices found at start-up (probing CUDA loads its libraries: once, not per frame).
    devices: Vec<DeviceInfo>,
    pub notice: Option<String>,
    /// Layers done of the forward pass in flight, when it is slow enough to report.
    pass_progress: Option<(usize, usize)>,
    routing_map: RoutingMap,
    /// Run B's map (the pinned run, or the unmodified run of an intervention), under A's.
    baseline_map: RoutingMap,
    /// The run later runs are compared with, until unpinned.
    pub pinned: Option<PinnedRun>,
    compare: CompareView,
    /// An opened corpus file, and whether the central area shows it rather than the run.
    pub corpus: Option<CorpusView>,
    pub show_corpus: bool,
    /// A corpus run in flight: its folder and, once reported, its progress.
    pub corpus_run: Option<(PathBuf, Option<crate::corpus::Progress>)>,
    layer_heatmap: LayerHeatmap,
    colored_text: ColoredText,
    load: LoadView,
    timings: TimingsView,
    balance_history: VecDeque<BalancePoint>,
    timing_history: VecDeque<TimingPoint>,
    /// Edit (or load) to views-updated latency of the last run.
    pub last_update_ms: Option<f64>,
    commands: Vec<Command>,
    /// The trace file the views show, until the next run replaces it.
    pub trace_file: Option<PathBuf>,
    focus_prompt: bool,
    pub generation: GenerationControls,
    pub intervention: InterventionControls,
    /// Why the model refused the interventions last asked for (cleared by the next good run).
    intervention_problem: Option<String>,
    /// The generation in flight (its run id), while tokens stream in.
    generating: Option<u64>,
    theme_applied: Option<bool>,
    fonts_installed: bool,
}

impl MoescopeApp {
    pub fn new(
        cc: &eframe::CreationContext<'_>,
        model: Option<PathBuf>,
        dialogs: Box<dyn FileDialogs>,
    ) -> Self {
        // Our own file, written atomically; eframe's storage (which rewrites its file in place)
        // keeps only the window geometry, and is read once for settings saved by older builds.
        let mut load_error = None;
        let settings: Settings = match Settings::default_path().map(|p| Settings::load(&p)) {
            Some(Ok(Some(s))) => s,
            Some(Err(e)) => {
                load_error = Some(e);
                Settings::default()
            }
            _ => cc
                .storage
                .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
                .unwrap_or_default(),
        };
        let start = match model {
            Some(path) => StartWith::Model(path),
            None => StartWith::DefaultModel,
        };
        let mut app = Self::with_settings(&cc.egui_ctx, settings, start, dialogs);
        app.errors.extend(load_error);
        app
    }

    /// Builds the app on `ctx` (tests pass a kittest context and fixed dialogs).
    pub fn with_settings(
        ctx: &egui::Context,
        settings: Settings,
        start: StartWith,
        dialogs: Box<dyn FileDialogs>,
    ) -> Self {
        let wake_ctx = ctx.clone();
        let (worker, worker_error) =
            match Worker::spawn(Arc::new(move || wake_ctx.request_repaint())) {
                Ok(w) => (w, None),
                Err(e) => panic!("cannot start the engine thread: {e}"),
            };
        let (background_tx, background_rx) = sync_channel(16);
        let mut app = Self {
            settings,
            worker,
            dialogs: Arc::from(dialogs),
            background_tx,
            background_rx,
            model: ModelState::Empty,
            input_mode: InputMode::Prompt,
            token_ids_text: String::new(),
            dirty_since: None,
            run_now: false,
            next_run_id: 1,
            pending: None,
            data: None,
            selection: Selection::default(),
            errors: worker_error.into_iter().collect(),
            devices: available_devices(),
            notice: None,
            pass_progress: None,
            routing_map: RoutingMap::default(),
            baseline_map: RoutingMap::default(),
            pinned: None,
            compare: CompareView::default(),
            corpus: None,
            show_corpus: false,
            corpus_run: None,
            layer_heatmap: LayerHeatmap::default(),
            colored_text: ColoredText::default(),
            load: LoadView::default(),
            timings: TimingsView::default(),
            balance_history: VecDeque::new(),
            timing_history: VecDeque::new(),
            last_update_ms: None,
            commands: Vec::new(),
            trace_file: None,
            focus_prompt: true,
            generation: GenerationControls::default(),
            intervention: InterventionControls::default(),
            intervention_problem: None,
            generating: None,
            theme_applied: None,
            fonts_installed: false,
        };
        let model = match start {
            StartWith::Model(path) => Some(path),
            StartWith::DefaultModel => crate::gui::default_model(),
            StartWith::Welcome => None,
        };
        if let Some(path) = model {
            app.commands.push(Command::Load(path));
        }
        app
    }

    /// The checkpoint whose model is loaded and ready.
    pub fn loaded_model(&self) -> Option<&std::path::Path> {
        match &self.model {
            ModelState::Ready(summary) => Some(&summary.path),
            _ => None,
        }
    }

    pub fn is_loading(&self) -> bool {
        matches!(self.model, ModelState::Loading { .. })
    }

    /// A generation is streaming tokens.
    pub fn is_generating(&self) -> bool {
        self.generating.is_some()
    }

    pub fn is_busy(&self) -> bool {
        self.is_loading() || self.pending.is_some() || self.dirty_since.is_some()
    }

    /// Per-frame work that draws nothing: worker events, background answers, debounce, input.
    pub fn logic(&mut self, ctx: &egui::Context) {
        if !self.fonts_installed {
            install_fonts(ctx);
            self.fonts_installed = true;
        }
        if self.theme_applied != Some(self.settings.dark_mode) {
            ctx.set_theme(if self.settings.dark_mode {
                egui::Theme::Dark
            } else {
                egui::Theme::Light
            });
            self.theme_applied = Some(self.settings.dark_mode);
        }
        let started = Instant::now();
        while started.elapsed() < MERGE_BUDGET {
            let Ok(event) = self.worker.events.try_recv() else {
                break;
            };
            self.on_event(event);
        }
        while let Ok(answer) = self.background_rx.try_recv() {
            self.on_background(answer);
        }
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        if let Some(path) = dropped.into_iter().next() {
            self.commands.push(Command::Load(path));
        }
        ctx.input_mut(|i| {
            if i.consume_shortcut(&SHORTCUT_OPEN) {
                self.commands.push(Command::OpenDialog);
            }
            if i.consume_shortcut(&SHORTCUT_EXPORT) {
                self.commands
                    .push(Command::ExportFigure(FigureKind::RoutingMap));
            }
            if i.consume_shortcut(&SHORTCUT_PROMPT) {
                self.commands.push(Command::FocusPrompt);
            }
        });
        if self.corpus_run.is_some() {
            // The engine is busy with the corpus; edits run once it is done.
        } else if std::mem::take(&mut self.run_now) {
            self.send_run(Instant::now());
        } else if let Some(since) = self.dirty_since {
            let debounce = Duration::from_millis(self.settings.debounce_ms);
            if since.elapsed() >= debounce {
                self.send_run(since);
            } else {
                ctx.request_repaint_after(debounce - since.elapsed());
            }
        }
        self.apply_commands();
    }

    fn send_run(&mut self, edited_at: Instant) {
        self.dirty_since = None;
        // A field that does not parse runs nothing: the views keep the last run and the panel
        // says what is wrong, rather than showing an unmodified run as if it were intervened.
        let Ok(interventions) = self.intervention.interventions() else {
            return;
        };
        let Some(input) = self.current_input() else {
            return;
        };
        let run_id = self.next_run_id;
        self.next_run_id += 1;
        self.pending = Some((run_id, edited_at));
        self.generating = None;
        self.worker.run(run_id, input, interventions);
    }

    /// Continues the current input token by token; tokens stream into the views.
    fn start_generation(&mut self) {
        if self.corpus_run.is_some() {
            return;
        }
        self.dirty_since = None;
        let interventions = match self.intervention.interventions() {
            Ok(i) if i.capacity.is_some() => {
                self.intervention_problem = Some(
                    "capacity drops are decided over a whole sequence: Generate adds one token at a time (untick capacity)".into(),
                );
                return;
            }
            Ok(i) => i,
            Err(_) => return,
        };
        let Some(input) = self.current_input() else {
            return;
        };
        let run_id = self.next_run_id;
        self.next_run_id += 1;
        self.pending = Some((run_id, Instant::now()));
        self.generating = Some(run_id);
        self.worker.generate(
            run_id,
            input,
            self.generation.options(),
            self.generation.stop_at_eos,
            interventions,
        );
    }

    /// What the input panel holds as the model's input; `None` (with the reason shown) when it
    /// cannot run.
    fn current_input(&mut self) -> Option<RunInput> {
        let ModelState::Ready(summary) = &self.model else {
            return None;
        };
        match self.input_mode {
            InputMode::Prompt if summary.has_tokenizer => {
                Some(RunInput::Prompt(self.settings.prompt.clone()))
            }
            InputMode::Prompt => {
                self.errors.push(format!(
                    "{}: {}",
                    summary.path.display(),
                    summary.tokenizer_note
                ));
                None
            }
            InputMode::TokenIds => match crate::input::parse_token_ids(&self.token_ids_text) {
                Ok(ids) => Some(RunInput::TokenIds(ids)),
                Err(e) => {
                    self.notice = Some(e);
                    None
                }
            },
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::CorpusProgress(progress) => {
                if let Some((_, shown)) = &mut self.corpus_run {
                    *shown = Some(progress);
                }
            }
            Event::CorpusFinished {
                out,
                result,
                warnings,
            } => {
                self.corpus_run = None;
                self.run_now = self.dirty_since.is_some();
                match result {
                    Ok(report) => {
                        let skipped = if warnings.is_empty() {
                            String::new()
                        } else {
                            format!(" · skipped: {}", warnings[0])
                        };
                        self.notice = Some(format!(
                            "wrote {} ({} documents, {} tokens{}){skipped}",
                            out.display(),
                            report.documents,
                            report.tokens,
                            if report.input.cancelled {
                                ", stopped"
                            } else {
                                ""
                            }
                        ));
                        self.corpus = Some(CorpusView::new(out, *report));
                        self.show_corpus = true;
                    }
                    Err(message) => self.errors.push(message),
                }
            }
            Event::LoadProgress { path, fraction } => {
                if let ModelState::Loading {
                    path: p,
                    fraction: f,
                    ..
                } = &mut self.model
                {
                    if *p == path {
                        *f = fraction;
                    }
                }
            }
            Event::Loaded(summary) => {
                self.intervention_problem = None;
                self.settings.remember(summary.path.clone());
                if let Some(note) = &summary.device_note {
                    self.errors.push(note.clone());
                }
                if summary.exceeds_ram {
                    self.errors.push(format!(
                        "{}: the weights are {}",
                        summary.path.display(),
                        summary.memory_note
                    ));
                }
                if !summary.has_tokenizer {
                    self.input_mode = InputMode::TokenIds;
                    if self.token_ids_text.is_empty() {
                        self.token_ids_text = "1, 2, 3, 4, 5, 6, 7, 8".into();
                    }
                }
                self.model = ModelState::Ready(summary);
                self.data = None;
                self.selection = Selection::default();
                self.run_now = true;
            }
            Event::LoadFailed { path, message } => {
                self.errors.push(message);
                self.end_load(&path);
            }
            Event::LoadCancelled { path } => self.end_load(&path),
            Event::RunFinished(data) => {
                self.pass_progress = None;
                let edited_at = match self.pending {
                    Some((id, at)) if id == data.run_id => {
                        self.pending = None;
                        Some(at)
                    }
                    _ => None,
                };
                self.accept(*data);
                self.last_update_ms = edited_at.map(|at| at.elapsed().as_secs_f64() * 1e3);
            }
            Event::Streamed(data) => {
                if self.generating == Some(data.run_id) {
                    self.show_partial(*data);
                }
            }
            Event::GenerationFinished {
                data,
                stop,
                decode_tokens_per_s,
            } => {
                self.pass_progress = None;
                if matches!(self.pending, Some((id, _)) if id == data.run_id) {
                    self.pending = None;
                }
                self.generating = None;
                let generated = data.num_tokens() - data.trace.prompt_tokens.unwrap_or(0);
                self.accept(*data);
                self.last_update_ms = None;
                self.notice = Some(format!(
                    "generated {generated} tokens ({}), {decode_tokens_per_s:.1} tokens/s",
                    stop.describe()
                ));
            }
            Event::RunFailed { run_id, message } => {
                if matches!(self.pending, Some((id, _)) if id == run_id) {
                    self.pending = None;
                }
                if self.generating == Some(run_id) {
                    self.generating = None;
                }
                self.pass_progress = None;
                if message.starts_with("intervention:") {
                    self.intervention_problem = Some(message.clone());
                }
                self.notice = Some(message);
            }
            Event::RunProgress { done, layers } => {
                self.pass_progress = (done < layers).then_some((done, layers));
            }
        }
    }

    /// A load of `path` ended without a new model: the previous one, still loaded in the worker,
    /// is shown again, and so are its views (they were never cleared).
    fn end_load(&mut self, path: &std::path::Path) {
        if matches!(&self.model, ModelState::Loading { path: p, .. } if p == path) {
            let ModelState::Loading { previous, .. } =
                std::mem::replace(&mut self.model, ModelState::Empty)
            else {
                unreachable!("matched above")
            };
            if let Some(summary) = previous {
                self.model = ModelState::Ready(summary);
            }
        }
    }

    /// Installs a trace as a finished run, analysing it on this thread (tests and benchmarks
    /// show fixed data this way; the app's runs arrive analysed from the worker).
    pub fn accept_trace(&mut self, run_id: u64, trace: Arc<Trace>, elapsed_ms: f64) {
        self.accept(RunData::new(run_id, trace, elapsed_ms));
    }

    /// A generation's trace so far: the views show it; the run histories wait for the end.
    fn show_partial(&mut self, data: RunData) {
        self.selection.moe_layer = self
            .selection
            .moe_layer
            .min(data.num_moe_layers().saturating_sub(1));
        self.trace_file = None;
        self.notice = Some(format!(
            "generating: {} tokens",
            data.num_tokens() - data.trace.prompt_tokens.unwrap_or(0)
        ));
        self.data = Some(data);
    }

    fn accept(&mut self, data: RunData) {
        let run_id = data.run_id;
        self.intervention_problem = None;
        if let Ok(m) = &data.metrics {
            let util = m
                .moe_layers
                .iter()
                .map(|l| l.utilization_balance)
                .sum::<f64>()
                / m.moe_layers.len().max(1) as f64;
            push_bounded(
                &mut self.balance_history,
                BalancePoint {
                    run: run_id,
                    utilization_mean: util,
                    switch_loss_mean: m.layer_mean.get("switch_loss").copied().flatten(),
                },
            );
        }
        push_bounded(
            &mut self.timing_history,
            TimingPoint {
                run: run_id,
                forward_ms: data.trace.forward_ms,
            },
        );
        if self.selection.token.is_some_and(|t| t >= data.num_tokens()) {
            self.selection.token = None;
        }
        self.selection.moe_layer = self
            .selection
            .moe_layer
            .min(data.num_moe_layers().saturating_sub(1));
        self.notice = None;
        self.trace_file = None;
        self.data = Some(data);
    }

    fn on_background(&mut self, answer: Background) {
        match answer {
            Background::Picked(Some(path)) => self.commands.push(Command::Load(path)),
            Background::TraceRead(path, Ok(mut data)) => {
                data.run_id = self.next_run_id;
                self.next_run_id += 1;
                self.accept(*data);
                self.notice = Some(format!("showing {}", path.display()));
                self.trace_file = Some(path);
            }
            Background::TraceRead(_, Err(message)) => self.errors.push(message),
            Background::FigurePath(kind, Some(path)) => {
                self.commands.push(Command::WriteFigure(kind, path))
            }
            Background::DataPath(Some(path)) => self.commands.push(Command::WriteData(path)),
            Background::Picked(None)
            | Background::FigurePath(_, None)
            | Background::DataPath(None) => {}
            Background::ReferencePicked(Some(path)) => {
                self.commands.push(Command::OpenReference(path))
            }
            Background::ReferenceRead(path, Ok(mut data)) => {
                data.run_id = self.next_run_id;
                self.next_run_id += 1;
                let label = file_label(&path, &data);
                self.notice = Some(format!("comparing with {}", path.display()));
                self.pinned = Some(PinnedRun { data: *data, label });
                self.settings.bottom_tab = BottomTab::Compare;
            }
            Background::ReferenceRead(_, Err(message)) => self.errors.push(message),
            Background::ComparisonPath(Some(path)) => {
                self.commands.push(Command::WriteComparison(path))
            }
            Background::CorpusRead(path, Ok(report)) => {
                self.notice = Some(format!("showing corpus {}", path.display()));
                self.corpus = Some(CorpusView::new(path, *report));
                self.show_corpus = true;
            }
            Background::CorpusRead(_, Err(message)) => self.errors.push(message),
            Background::CorpusPaths(Some((data, out))) => {
                self.commands.push(Command::RunCorpus { data, out })
            }
            Background::CorpusPaths(None) => {}
            Background::CorpusFigurePath(layer, Some(path)) => {
                self.commands.push(Command::WriteCorpusFigure(layer, path))
            }
            Background::ReferencePicked(None)
            | Background::ComparisonPath(None)
            | Background::CorpusFigurePath(_, None) => {}
            Background::Wrote(Ok(path)) => self.notice = Some(format!("wrote {}", path.display())),
            Background::Wrote(Err(e)) => self.errors.push(e),
        }
    }

    /// Runs `job` on a named thread and routes its answer back to `logic`.
    fn background(&self, name: &str, job: impl FnOnce() -> Background + Send + 'static) {
        let tx = self.background_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("moescope-{name}"))
            .spawn(move || {
                let _ = tx.send(job());
            });
        if let Err(e) = spawned {
            let _ = self
                .background_tx
                .try_send(Background::Wrote(Err(format!("cannot start {name}: {e}"))));
        }
    }

    /// Names the views' run for the comparison: its trace file, else what produced it.
    fn run_label(&self, data: &RunData) -> String {
        match &self.trace_file {
            Some(path) => file_label(path, data),
            None => data.describe(),
        }
    }

    fn model_name(&self) -> String {
        match &self.model {
            ModelState::Ready(s) => s
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into()),
            _ => "model".into(),
        }
    }
}

impl eframe::App for MoescopeApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        MoescopeApp::logic(self, ctx);
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        self.draw(ui);
    }

    fn save(&mut self, _storage: &mut dyn eframe::Storage) {
        if let Some(path) = Settings::default_path() {
            if let Err(e) = self.settings.save(&path) {
                // Shown if the app keeps running (eframe also saves periodically), once.
                let message = e.to_string();
                if !self.errors.contains(&message) {
                    self.errors.push(message);
                }
            }
        }
    }
}

/// The runs the Compare tab and the lower routing map show: the views' run as A, and as B the
/// pinned run, else the unmodified run of an intervention.
fn compared_runs<'a>(
    data: &'a Option<RunData>,
    pinned: &'a Option<PinnedRun>,
) -> Option<(&'a RunData, &'a RunData)> {
    let a = data.as_ref()?;
    let b = match pinned {
        Some(pinned) => &pinned.data,
        None => a.baseline.as_deref()?,
    };
    Some((a, b))
}

/// Reads a corpus file (on a background thread).
fn read_corpus(path: &std::path::Path) -> Result<Box<CorpusReport>, String> {
    crate::corpus::read_report(path)
        .map(Box::new)
        .map_err(|e| e.to_string())
}

/// Reads and analyses a trace file (on a background thread).
fn read_run(path: &std::path::Path) -> Result<Box<RunData>, String> {
    Trace::read_json(path)
        .map(|trace| Box::new(RunData::new(0, Arc::new(trace), 0.0)))
        .map_err(|e| e.to_string())
}

/// A trace file's run, named by the file.
fn file_label(path: &std::path::Path, data: &RunData) -> String {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    format!("{name} ({} tokens)", data.num_tokens())
}

fn push_bounded<T>(history: &mut VecDeque<T>, item: T) {
    history.push_back(item);
    if history.len() > HISTORY_RUNS {
        history.pop_front();
    }
}

/// Adds the bundled fonts as fallbacks: DejaVu Sans for symbols (⚠, →, ⏎), Droid Sans Fallback
/// for Chinese/Japanese tokens.
fn install_fonts(ctx: &egui::Context) {
    let mut fonts = egui::FontDefinitions::default();
    let extra = [
        ("dejavu-sans", crate::export::png::LATIN_FONT_BYTES),
        ("droid-sans-fallback", crate::export::png::FONT_BYTES),
    ];
    for (name, bytes) in extra {
        fonts
            .font_data
            .insert(name.into(), Arc::new(egui::FontData::from_static(bytes)));
        for family in [egui::FontFamily::Proportional, egui::FontFamily::Monospace] {
            fonts.families.entry(family).or_default().push(name.into());
        }
    }
    ctx.set_fonts(fonts);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gui::dialogs::FixedDialogs;

    /// A command that queues another (a trace path given to Load becomes OpenTrace) must not
    /// drop the commands queued after it.
    #[test]
    fn commands_queued_while_applying_keep_the_rest_of_the_queue() {
        let dir = std::env::temp_dir().join(format!("moescope-queue-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let trace = dir.join("run.json");
        std::fs::write(&trace, "{}").unwrap();
        let dialogs = FixedDialogs {
            checkpoint: None,
            trace: None,
            save: None,
            corpus_data: None,
        };
        let ctx = egui::Context::default();
        let mut app = MoescopeApp::with_settings(
            &ctx,
            Settings::default(),
            StartWith::Welcome,
            Box::new(dialogs),
        );
        app.focus_prompt = false;
        app.commands = vec![Command::Load(trace), Command::FocusPrompt];
        app.apply_commands();
        assert!(
            app.focus_prompt,
            "FocusPrompt after a trace Load was dropped"
        );
        assert!(app.commands.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
