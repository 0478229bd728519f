//! The engine worker: a named thread that owns the model. The UI sends [`Request`]s and receives
//! [`Event`]s over bounded channels; it never waits on the model. Requests queued while the worker
//! was busy are coalesced: only the newest load and the newest run after it are executed, so fast
//! typing never builds a backlog.

use super::run_data::RunData;
use crate::engine::device::open_device_or_cpu;
use crate::engine::generate::{GenerateOptions, StopReason};
use crate::engine::{Engine, EngineOptions};
use crate::routing::Interventions;
use candle_core::DType;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

/// What the model should read.
#[derive(Clone, Debug, PartialEq)]
pub enum RunInput {
    Prompt(String),
    TokenIds(Vec<u32>),
}

#[derive(Clone, Debug)]
pub enum Request {
    Load {
        path: PathBuf,
        dtype: DType,
        device: String,
    },
    Run {
        run_id: u64,
        input: RunInput,
        interventions: Interventions,
    },
    /// Run the input, then continue it token by token, streaming the trace.
    Generate {
        run_id: u64,
        input: RunInput,
        options: GenerateOptions,
        /// End at the checkpoint's EOS tokens (added to `options` by the worker).
        stop_at_eos: bool,
        interventions: Interventions,
    },
    /// Run every document under `data` (unmodified routing) and write the corpus file `out`.
    Corpus {
        data: PathBuf,
        out: PathBuf,
        options: crate::corpus::CorpusOptions,
    },
}

/// What the loaded model is, for the UI.
#[derive(Clone, Debug)]
pub struct ModelSummary {
    pub path: PathBuf,
    pub family: &'static str,
    pub architecture: String,
    pub num_layers: usize,
    pub num_moe_layers: usize,
    pub num_experts: usize,
    pub top_k: usize,
    pub has_tokenizer: bool,
    /// What the tokenizer is, or why there is none.
    pub tokenizer_note: String,
    pub device: String,
    pub dtype: String,
    /// Why the model runs elsewhere than asked (CUDA asked, none usable: CPU), for the user.
    pub device_note: Option<String>,
    pub load_ms: f64,
    /// Bytes of the weight files and how they are stored (`bf16`, `FP8 e4m3, 128×128 blocks`).
    pub weight_bytes: u64,
    pub weight_format: String,
    /// The routing rule in words.
    pub routing: String,
    /// What the weights cost in memory here, in words.
    pub memory_note: String,
    /// The weights are larger than this machine's RAM (they still run, from disk).
    pub exceeds_ram: bool,
}

pub enum Event {
    LoadProgress {
        path: PathBuf,
        fraction: f32,
    },
    Loaded(Box<ModelSummary>),
    LoadFailed {
        path: PathBuf,
        message: String,
    },
    LoadCancelled {
        path: PathBuf,
    },
    /// The run's trace with its analysis, computed here so the UI thread never waits on it.
    RunFinished(Box<RunData>),
    RunFailed {
        run_id: u64,
        message: String,
    },
    /// The trace of a generation so far (at most every [`STREAM_INTERVAL`]); views show it as it
    /// grows.
    Streamed(Box<RunData>),
    /// A generation ended: its whole trace, why it stopped, and the decode speed.
    GenerationFinished {
        data: Box<RunData>,
        stop: StopReason,
        decode_tokens_per_s: f64,
    },
    /// A corpus run's progress (at most every [`STREAM_INTERVAL`]).
    CorpusProgress(crate::corpus::Progress),
    /// A corpus run ended (Stop keeps what was counted); the file is written.
    CorpusFinished {
        out: PathBuf,
        result: Result<Box<crate::analysis::corpus::CorpusReport>, String>,
        /// Lines skipped, in words (the first few).
        warnings: Vec<String>,
    },
    /// A forward pass finished `done` of `layers` blocks (sent for slow passes only).
    RunProgress {
        done: usize,
        layers: usize,
    },
}

/// Handle held by the UI.
pub struct Worker {
    requests: SyncSender<Request>,
    pub events: Receiver<Event>,
    cancel_load: Arc<AtomicBool>,
    cancel_run: Arc<AtomicBool>,
    latest_run: Arc<AtomicU64>,
}

/// Called after each event so the UI wakes up (egui's `request_repaint`).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

impl Worker {
    pub fn spawn(wake: Wake) -> std::io::Result<Self> {
        let (requests, request_rx) = sync_channel::<Request>(64);
        let (event_tx, events) = sync_channel::<Event>(256);
        let cancel_load = Arc::new(AtomicBool::new(false));
        let cancel_run = Arc::new(AtomicBool::new(false));
        let latest_run = Arc::new(AtomicU64::new(0));
        let state = WorkerState {
            engine: None,
            events: event_tx,
            wake,
            cancel_load: cancel_load.clone(),
            cancel_run: cancel_run.clone(),
            latest_run: latest_run.clone(),
        };
        std::thread::Builder::new()
            .name("moescope-engine".into())
            .spawn(move || state.serve(request_rx))?;
        Ok(Self {
            requests,
            events,
            cancel_load,
            cancel_run,
            latest_run,
        })
    }

    /// Queues a load; a load in progress is cancelled first.
    pub fn load(&self, path: PathBuf, dtype: DType, device: String) {
        self.cancel_load.store(true, Ordering::SeqCst);
        self.send(Request::Load {
            path,
            dtype,
            device,
        });
    }

    pub fn cancel_load(&self) {
        self.cancel_load.store(true, Ordering::SeqCst);
    }

    /// Queues a run; earlier runs still queued are skipped and a running one is abandoned.
    pub fn run(&self, run_id: u64, input: RunInput, interventions: Interventions) {
        self.latest_run.store(run_id, Ordering::SeqCst);
        self.cancel_run.store(true, Ordering::SeqCst);
        self.send(Request::Run {
            run_id,
            input,
            interventions,
        });
    }

    /// Queues a generation; like [`Worker::run`], it supersedes runs and generations before it.
    pub fn generate(
        &self,
        run_id: u64,
        input: RunInput,
        options: GenerateOptions,
        stop_at_eos: bool,
        interventions: Interventions,
    ) {
        self.latest_run.store(run_id, Ordering::SeqCst);
        self.cancel_run.store(true, Ordering::SeqCst);
        self.send(Request::Generate {
            run_id,
            input,
            options,
            stop_at_eos,
            interventions,
        });
    }

    /// Queues a corpus run; Stop ends it, keeping what it counted.
    pub fn corpus(&self, data: PathBuf, out: PathBuf, options: crate::corpus::CorpusOptions) {
        self.cancel_run.store(false, Ordering::SeqCst);
        self.send(Request::Corpus { data, out, options });
    }

    /// Stops the generation (or pass) in flight; a generation keeps the tokens it has made.
    pub fn stop(&self) {
        self.cancel_run.store(true, Ordering::SeqCst);
    }

    fn send(&self, request: Request) {
        // The worker drains its queue before every job, so a full queue only happens if it died;
        // the UI learns that from the disconnected event channel.
        let _ = self.requests.try_send(request);
    }
}

struct WorkerState {
    engine: Option<Engine>,
    events: SyncSender<Event>,
    wake: Wake,
    cancel_load: Arc<AtomicBool>,
    cancel_run: Arc<AtomicBool>,
    latest_run: Arc<AtomicU64>,
}

impl WorkerState {
    fn serve(mut self, requests: Receiver<Request>) {
        while let Ok(first) = requests.recv() {
            // Coalesce: the newest load wins, then the newest run.
            let mut load = None;
            let mut run = None;
            let mut corpus = None;
            for request in std::iter::once(first).chain(requests.try_iter()) {
                match request {
                    r @ Request::Load { .. } => {
                        load = Some(r);
                        run = None;
                    }
                    r @ (Request::Run { .. } | Request::Generate { .. }) => run = Some(r),
                    r @ Request::Corpus { .. } => corpus = Some(r),
                }
            }
            if let Some(Request::Load {
                path,
                dtype,
                device,
            }) = load
            {
                self.load(path, dtype, &device);
            }
            if let Some(Request::Corpus { data, out, options }) = corpus {
                self.corpus(data, out, &options);
            }
            match run {
                Some(Request::Run {
                    run_id,
                    input,
                    interventions,
                }) if self.is_latest(run_id)
                    && self.apply_interventions(run_id, &interventions) =>
                {
                    self.run(run_id, input)
                }
                Some(Request::Generate {
                    run_id,
                    input,
                    mut options,
                    stop_at_eos,
                    interventions,
                }) if self.is_latest(run_id) => {
                    if !self.apply_interventions(run_id, &interventions) {
                        continue;
                    }
                    if stop_at_eos {
                        match self.engine.as_ref().map(|e| e.checkpoint.stop_token_ids()) {
                            Some(Ok(ids)) => options.stop_ids = ids,
                            Some(Err(e)) => {
                                self.emit(Event::RunFailed {
                                    run_id,
                                    message: e.to_string(),
                                });
                                continue;
                            }
                            None => {}
                        }
                    }
                    self.generate(run_id, input, &options)
                }
                _ => {}
            }
        }
    }

    /// Makes the engine apply `interventions` if it does not already; `false` (with the reason
    /// sent as the run's failure) when the model cannot run them.
    fn apply_interventions(&mut self, run_id: u64, interventions: &Interventions) -> bool {
        let Some(engine) = self.engine.as_mut() else {
            return true;
        };
        if engine.options().interventions == *interventions {
            return true;
        }
        match engine.set_interventions(interventions.clone()) {
            Ok(()) => true,
            Err(e) => {
                // The engine keeps routing as before; the next valid set replaces it.
                self.emit(Event::RunFailed {
                    run_id,
                    message: e.to_string(),
                });
                false
            }
        }
    }

    fn is_latest(&self, run_id: u64) -> bool {
        run_id == self.latest_run.load(Ordering::SeqCst)
    }

    fn emit(&self, event: Event) {
        match self.events.try_send(event) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            // Progress events may be dropped when the UI lags; results use the blocking path.
            Err(TrySendError::Full(event)) => {
                if !matches!(event, Event::LoadProgress { .. }) {
                    let _ = self.events.send(event);
                }
            }
        }
        (self.wake)();
    }

    fn load(&mut self, path: PathBuf, dtype: DType, device: &str) {
        self.cancel_load.store(false, Ordering::SeqCst);
        let started = Instant::now();
        let (device, device_note) = match open_device_or_cpu(device) {
            Ok(d) => d,
            Err(e) => {
                return self.emit(Event::LoadFailed {
                    path,
                    message: e.to_string(),
                })
            }
        };
        let options = EngineOptions {
            dtype,
            device,
            cancel: Some(self.cancel_run.clone()),
            layer_progress: Some(self.layer_progress()),
            ..EngineOptions::default()
        };
        let cancel = self.cancel_load.clone();
        let events = self.events.clone();
        let wake = self.wake.clone();
        let progress_path = path.clone();
        let mut progress = |fraction: f32| {
            let _ = events.try_send(Event::LoadProgress {
                path: progress_path.clone(),
                fraction,
            });
            wake();
            !cancel.load(Ordering::SeqCst)
        };
        match Engine::load_with_progress(&path, options, &mut progress) {
            Ok(engine) => {
                let spec = &engine.checkpoint.spec;
                let summary = ModelSummary {
                    path: path.clone(),
                    family: engine.checkpoint.family.name,
                    architecture: spec.architecture.clone(),
                    num_layers: spec.num_layers,
                    num_moe_layers: spec.num_moe_layers(),
                    num_experts: spec.moe.router.num_experts,
                    top_k: spec.moe.router.top_k,
                    has_tokenizer: engine.checkpoint.tokenizer.is_some(),
                    tokenizer_note: engine.checkpoint.tokenizer_note.clone(),
                    device: engine.trace().model.device.clone(),
                    dtype: engine.trace().model.dtype.clone(),
                    device_note,
                    load_ms: started.elapsed().as_secs_f64() * 1e3,
                    weight_bytes: engine.weight_bytes() as u64,
                    weight_format: weight_format(&engine.checkpoint),
                    routing: spec.router_description(),
                    memory_note: if engine.options().device.is_cpu() {
                        crate::engine::memory::cpu_residency_note(engine.weight_bytes() as u64)
                    } else {
                        "on the GPU in their stored dtype".into()
                    },
                    exceeds_ram: engine.options().device.is_cpu()
                        && crate::engine::memory::total_ram_bytes()
                            .is_some_and(|ram| engine.weight_bytes() as u64 > ram),
                };
                self.engine = Some(engine);
                self.emit(Event::Loaded(Box::new(summary)));
            }
            Err(crate::Error::Cancelled) => self.emit(Event::LoadCancelled { path }),
            Err(e) => self.emit(Event::LoadFailed {
                path,
                message: e.to_string(),
            }),
        }
    }

    /// Progress of passes slower than a quarter second (a cold model read from disk), at most one
    /// event per layer, so fast passes send nothing.
    fn layer_progress(&self) -> crate::engine::LayerProgress {
        let events = self.events.clone();
        let wake = self.wake.clone();
        let started = std::sync::Mutex::new(Instant::now());
        crate::engine::LayerProgress(Arc::new(move |done, layers| {
            let Ok(mut started) = started.lock() else {
                return;
            };
            if done == 1 {
                *started = Instant::now();
            }
            if started.elapsed().as_secs_f64() > 0.25 {
                let _ = events.try_send(Event::RunProgress { done, layers });
                wake();
            }
        }))
    }

    fn run(&mut self, run_id: u64, input: RunInput) {
        let Some(engine) = self.engine.as_mut() else {
            return self.emit(Event::RunFailed {
                run_id,
                message: "no model is loaded".into(),
            });
        };
        self.cancel_run.store(false, Ordering::SeqCst);
        let started = Instant::now();
        let ids = match &input {
            RunInput::Prompt(text) => engine.checkpoint.encode(text),
            RunInput::TokenIds(ids) => Ok(ids.clone()),
        };
        // An intervened run is scored against the unmodified run of the same tokens.
        let result = ids.and_then(|ids| {
            if engine.options().interventions.is_empty() {
                engine.run(&ids).map(|t| (t.clone(), None))
            } else {
                crate::probe::probe(engine, &ids)
                    .map(|p| (p.intervened, Some((p.effect, p.baseline))))
            }
        });
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        match result {
            Ok((trace, probed)) => {
                let mut data = RunData::new(run_id, Arc::new(trace), elapsed_ms);
                if let Some((effect, baseline)) = probed {
                    data.effect = Some(effect);
                    data.baseline = Some(Box::new(RunData::new(
                        run_id,
                        Arc::new(baseline),
                        elapsed_ms,
                    )));
                }
                self.emit(Event::RunFinished(Box::new(data)))
            }
            // A newer run superseded this one; its own result follows.
            Err(crate::Error::Cancelled) => {}
            Err(e) => self.emit(Event::RunFailed {
                run_id,
                message: e.to_string(),
            }),
        }
    }
}

impl WorkerState {
    /// A corpus run through the loaded model, routing unmodified; the file is written here so a
    /// closed window loses nothing that was counted.
    fn corpus(&mut self, data: PathBuf, out: PathBuf, options: &crate::corpus::CorpusOptions) {
        let (events, wake, cancel) = (
            self.events.clone(),
            self.wake.clone(),
            self.cancel_run.clone(),
        );
        let Some(engine) = self.engine.as_mut() else {
            return self.emit(Event::CorpusFinished {
                out,
                result: Err("no model is loaded".into()),
                warnings: Vec::new(),
            });
        };
        let mut warnings = Vec::new();
        let result = (|| -> crate::Result<Box<crate::analysis::corpus::CorpusReport>> {
            if !engine.options().interventions.is_empty() {
                engine.set_interventions(Interventions::default())?;
            }
            let sources = crate::corpus::documents::sources(&[data])?;
            let mut shown = Instant::now();
            let run = crate::corpus::run_corpus(engine, &sources, options, &cancel, &mut |p| {
                if shown.elapsed() >= STREAM_INTERVAL {
                    shown = Instant::now();
                    let _ = events.try_send(Event::CorpusProgress(*p));
                    wake();
                }
            })?;
            warnings = run.log.warnings.clone();
            let bytes = serde_json::to_vec(&run.report).map_err(|e| crate::Error::Corpus {
                path: out.clone(),
                problem: e.to_string(),
            })?;
            crate::atomic::write_bytes(&out, &bytes)?;
            Ok(Box::new(run.report))
        })();
        cancel.store(false, Ordering::SeqCst);
        self.emit(Event::CorpusFinished {
            out,
            result: result.map_err(|e| e.to_string()),
            warnings,
        });
    }

    fn generate(&mut self, run_id: u64, input: RunInput, options: &GenerateOptions) {
        let Some(engine) = self.engine.as_mut() else {
            return self.emit(Event::RunFailed {
                run_id,
                message: "no model is loaded".into(),
            });
        };
        self.cancel_run.store(false, Ordering::SeqCst);
        let started = Instant::now();
        let prompt = match &input {
            RunInput::Prompt(text) => engine.checkpoint.encode(text),
            RunInput::TokenIds(ids) => Ok(ids.clone()),
        };
        let (events, wake) = (self.events.clone(), self.wake.clone());
        let mut last_sent: Option<Instant> = None;
        let mut prefill_done: Option<Instant> = None;
        let result = prompt.and_then(|prompt| {
            engine.generate(&prompt, options, &mut |e| {
                prefill_done.get_or_insert_with(Instant::now);
                if last_sent.is_some_and(|t| t.elapsed() < STREAM_INTERVAL) {
                    return;
                }
                last_sent = Some(Instant::now());
                let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
                let data = RunData::new(run_id, Arc::new(e.trace().clone()), elapsed_ms);
                // Dropped when the UI lags behind: the next update or the final one follows.
                let _ = events.try_send(Event::Streamed(Box::new(data)));
                wake();
            })
        });
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        let superseded = run_id != self.latest_run.load(Ordering::SeqCst);
        match result {
            // A newer run or generation superseded this one: its own result follows.
            Err(crate::Error::Cancelled) | Ok(StopReason::Cancelled) if superseded => {}
            Ok(stop) => {
                let trace = engine.trace().clone();
                let generated = trace.tokens.len() - trace.prompt_tokens.unwrap_or(0);
                let decode_s = prefill_done.map_or(0.0, |t| t.elapsed().as_secs_f64());
                let ids: Vec<u32> = trace.tokens.iter().map(|t| t.id).collect();
                let mut data = RunData::new(run_id, Arc::new(trace), elapsed_ms);
                if !engine.options().interventions.is_empty() {
                    // Both runs scored on the generated tokens. Stop set the cancel flag to end the
                    // generation, not the scoring of what it kept (a newer run sets it again and
                    // supersedes this summary anyway); a failure only loses the summary.
                    self.cancel_run.store(false, Ordering::SeqCst);
                    if let Ok(p) = crate::probe::probe(engine, &ids) {
                        data.effect = Some(p.effect);
                        data.baseline = Some(Box::new(RunData::new(
                            run_id,
                            Arc::new(p.baseline),
                            elapsed_ms,
                        )));
                    }
                }
                self.emit(Event::GenerationFinished {
                    data: Box::new(data),
                    stop,
                    decode_tokens_per_s: if decode_s > 0.0 {
                        generated as f64 / decode_s
                    } else {
                        0.0
                    },
                });
            }
            Err(crate::Error::Cancelled) => self.emit(Event::RunFailed {
                run_id,
                message: "generation stopped during the prompt".into(),
            }),
            Err(e) => self.emit(Event::RunFailed {
                run_id,
                message: e.to_string(),
            }),
        }
    }
}

/// How often a generation's growing trace is sent to the views (analysis included).
pub const STREAM_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// How a checkpoint's weights are stored, for the model panel.
fn weight_format(checkpoint: &crate::model::checkpoint::Checkpoint) -> String {
    use crate::model::weights::Quantization;
    if let Some(gguf) = &checkpoint.gguf {
        // Most bytes first: a "Q4_K_M" file is mostly Q4_K with some Q6_K and F32.
        let types: Vec<String> = gguf
            .type_summary()
            .iter()
            .map(|(t, _, _)| t.to_string())
            .collect();
        return format!("GGUF {}", types.join(", "));
    }
    let declared = checkpoint.config.dtype.map_or("float", |d| d.label());
    match &checkpoint.quantization {
        Quantization::None => declared.to_owned(),
        Quantization::Fp8 { block } => format!("FP8 e4m3, {}×{} blocks", block[0], block[1]),
        Quantization::Mxfp4 => format!("MXFP4 experts, {declared} otherwise"),
    }
}
