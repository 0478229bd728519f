//! The command line (`moescope info|trace ...`), exactly as DESIGN.md's CLI contract names it. One
//! file per command; this one holds what several share (run options, token input).

mod bench;
mod compare;
mod corpus;
mod devices;
mod export;
mod generate;
mod info;
mod intervene;
mod stats;
mod trace;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use moescope::engine::capture::{CaptureLevel, ExpertKernel};
use moescope::engine::device::open_device_or_cpu;
use moescope::engine::EngineOptions;
use moescope::input::TokenInput;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "moescope",
    version,
    about = "See how a Mixture-of-Experts model routes every token"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Checkpoint to open in the desktop app (a Hugging Face folder, its config.json, a .safetensors file or a .gguf file).
    pub model: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Architecture, layers, experts, router rule, dtype and size of a checkpoint.
    Info {
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a prompt and write its routing trace.
    Trace(trace::TraceArgs),
    /// Continue a prompt token by token (KV cache) and write the routing of prompt and generated
    /// tokens.
    Generate(generate::GenerateArgs),
    /// Routing metrics (docs/metrics.md) of trace files, pooled as one batch, or of a model run.
    Stats(stats::StatsArgs),
    /// Two traces layer by layer: load divergence, and per-token agreement when they read the
    /// same tokens (two checkpoints, two dtypes, a run and its intervention).
    Compare(compare::CompareArgs),
    /// Which experts specialize in what: texts (.txt, .jsonl, folders) through the model, per
    /// domain and MoE layer, into a corpus JSON.
    Corpus(corpus::CorpusArgs),
    /// Draw a heatmap (PNG/SVG) or write the routing data (CSV/JSON) from a trace or a model run.
    Export(export::ExportArgs),
    /// Prefill speed, per-phase times, capture overhead, FLOP efficiency and memory of a checkpoint.
    Bench(bench::BenchArgs),
    /// The devices this build can run on here (the CPU, CUDA GPUs).
    Devices {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct InputArgs {
    /// Text to tokenize with the checkpoint's tokenizer.json.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Token ids, comma separated (`1,2,3`), fed as they are.
    #[arg(long, value_delimiter = ',')]
    pub token_ids: Option<Vec<u32>>,
}

impl InputArgs {
    /// The tokens asked for (`None` when neither option was given, where the group is optional).
    pub fn tokens(&self) -> Option<TokenInput> {
        match (&self.prompt, &self.token_ids) {
            (Some(text), _) => Some(TokenInput::Prompt(text.clone())),
            (None, Some(ids)) => Some(TokenInput::Ids(ids.clone())),
            (None, None) => None,
        }
    }
}

/// Compute dtypes a forward pass runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    F32,
    Bf16,
    F16,
}

impl DtypeArg {
    pub fn dtype(self) -> candle_core::DType {
        match self {
            DtypeArg::F32 => candle_core::DType::F32,
            DtypeArg::Bf16 => candle_core::DType::BF16,
            DtypeArg::F16 => candle_core::DType::F16,
        }
    }
}

/// What a forward pass records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CaptureArg {
    /// Router logits, experts and weights.
    Full,
    /// Experts and weights only.
    Routing,
}

/// How routed experts are computed; routing is the same either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExpertKernelArg {
    /// All experts at once (CPU with AVX-512 in f32/bf16, CUDA; grouped elsewhere).
    Fused,
    /// Two matmuls per expert, any device.
    Grouped,
}

#[derive(Args)]
pub struct RunArgs {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute dtype.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// What the trace records.
    #[arg(long, value_enum, default_value_t = CaptureArg::Full)]
    pub capture: CaptureArg,
    /// How routed experts are computed.
    #[arg(long, value_enum, default_value_t = ExpertKernelArg::Fused)]
    pub expert_kernel: ExpertKernelArg,
}

impl RunArgs {
    /// Engine options; a GPU that cannot be used falls back to the CPU with a warning on stderr.
    pub fn options(&self) -> Result<EngineOptions> {
        let (device, note) = open_device_or_cpu(&self.device)?;
        if let Some(note) = note {
            eprintln!("warning: {note}");
        }
        Ok(EngineOptions {
            dtype: self.dtype.dtype(),
            device,
            capture: match self.capture {
                CaptureArg::Full => CaptureLevel::Full,
                CaptureArg::Routing => CaptureLevel::Routing,
            },
            synchronize_timings: true,
            expert_kernel: match self.expert_kernel {
                ExpertKernelArg::Fused => ExpertKernel::Fused,
                ExpertKernelArg::Grouped => ExpertKernel::Grouped,
            },
            layer_progress: Some(slow_pass_progress()),
            ..EngineOptions::default()
        })
    }
}

/// Layer-by-layer progress on stderr for forward passes that take more than a second (the first
/// pass over a model larger than the page cache reads it from disk), on a terminal only.
fn slow_pass_progress() -> moescope::engine::LayerProgress {
    use std::io::{IsTerminal, Write};
    use std::sync::Mutex;
    use std::time::Instant;
    let state: Mutex<(Instant, bool)> = Mutex::new((Instant::now(), false));
    moescope::engine::LayerProgress(std::sync::Arc::new(move |done, layers| {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let Ok(mut s) = state.lock() else { return };
        if done == 1 {
            *s = (Instant::now(), false);
        }
        let elapsed = s.0.elapsed().as_secs_f64();
        if elapsed > 1.0 {
            s.1 = true;
            eprint!("\rforward pass: layer {done}/{layers}, {elapsed:.0} s");
            let _ = std::io::stderr().flush();
        }
        if done == layers && s.1 {
            eprintln!();
        }
    }))
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Info { model, json }) => info::info(&model, json),
        Some(Command::Trace(args)) => trace::trace(args),
        Some(Command::Generate(args)) => generate::generate(args),
        Some(Command::Stats(args)) => stats::stats(args),
        Some(Command::Compare(args)) => compare::compare(args),
        Some(Command::Corpus(args)) => corpus::corpus(args),
        Some(Command::Export(args)) => export::export(args),
        Some(Command::Bench(args)) => bench::bench(args),
        Some(Command::Devices { json }) => devices::devices(json),
        None => open_app(cli.model),
    }
}

/// `moescope [MODEL]`: the desktop app, on the bundled sample model when no model is named.
#[cfg(feature = "gui")]
fn open_app(model: Option<PathBuf>) -> Result<()> {
    moescope::gui::run(model).map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

#[cfg(not(feature = "gui"))]
fn open_app(_model: Option<PathBuf>) -> Result<()> {
    anyhow::bail!("this is the headless build (--no-default-features): use a subcommand such as `moescope trace` (see --help)")
}
