//! The command line (`moescope info|trace ...`), exactly as DESIGN.md's CLI contract names it.

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use moescope::engine::bench::{self, BenchOptions, BenchReport};
use moescope::engine::capture::{CaptureLevel, ExpertKernel};
use moescope::engine::device::{available_devices, open_device_or_cpu, parse_dtype};
use moescope::engine::{Engine, EngineOptions};
use moescope::model::checkpoint::Checkpoint;
use moescope::model::weights::Quantization;
use std::path::PathBuf;
// `stats`.
use anyhow::anyhow;
use moescope::analysis::{self, AnalysisError, AnalysisOptions, Metrics, DEFAULT_CAPACITY_FACTOR};
use moescope::trace::Trace;
use std::ops::Range;
use std::path::Path;

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
    Trace(TraceArgs),
    /// Routing metrics (docs/metrics.md) of trace files, pooled as one batch, or of a model run.
    Stats(StatsArgs),
    /// Draw a heatmap (PNG/SVG) or write the routing data (CSV/JSON) from a trace or a model run.
    Export(ExportArgs),
    /// Prefill speed, per-phase times, capture overhead, FLOP efficiency and memory of a checkpoint.
    Bench(BenchArgs),
    /// The devices this build can run on here (the CPU, CUDA GPUs).
    Devices {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct BenchArgs {
    pub model: PathBuf,
    /// Run this many tokens (ids spread over the vocabulary; no tokenizer needed).
    #[arg(long, conflicts_with = "prompt", required_unless_present = "prompt")]
    pub tokens: Option<usize>,
    /// Run this text instead (needs the checkpoint's tokenizer.json).
    #[arg(long)]
    pub prompt: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Timed runs after one warm-up; figures are medians.
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Time with capture off (and skip the capture-overhead runs).
    #[arg(long)]
    pub no_capture: bool,
    /// Print the report as JSON (keys shared with bench/torch_baseline.py).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct TraceArgs {
    pub model: PathBuf,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Output file; the format follows the extension (.json).
    #[arg(long)]
    pub out: PathBuf,
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

#[derive(Args)]
pub struct RunArgs {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute dtype: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// full (logits, experts, weights) or routing (experts and weights only).
    #[arg(long, default_value = "full", value_parser = ["full", "routing"])]
    pub capture: String,
    /// How routed experts are computed: fused (all experts at once: CPU with AVX-512 in f32/bf16,
    /// CUDA; grouped elsewhere) or grouped (two matmuls per expert, any
    /// device). Routing is the same either way.
    #[arg(long, default_value = "fused", value_parser = ["fused", "grouped"])]
    pub expert_kernel: String,
}

impl RunArgs {
    /// Engine options; a GPU that cannot be used falls back to the CPU with a warning on stderr.
    pub fn options(&self) -> Result<EngineOptions> {
        let (device, note) = open_device_or_cpu(&self.device)?;
        if let Some(note) = note {
            eprintln!("warning: {note}");
        }
        Ok(EngineOptions {
            dtype: parse_dtype(&self.dtype)?,
            device,
            capture: match self.capture.as_str() {
                "routing" => CaptureLevel::Routing,
                _ => CaptureLevel::Full,
            },
            synchronize_timings: true,
            expert_kernel: match self.expert_kernel.as_str() {
                "fused" => ExpertKernel::Fused,
                _ => ExpertKernel::Grouped,
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
        Some(Command::Info { model, json }) => info(&model, json),
        Some(Command::Trace(args)) => trace(args),
        Some(Command::Stats(args)) => stats(args),
        Some(Command::Export(args)) => export(args),
        Some(Command::Bench(args)) => bench(args),
        Some(Command::Devices { json }) => devices(json),
        None => open_app(cli.model),
    }
}

fn info(model: &std::path::Path, json: bool) -> Result<()> {
    if moescope::model::gguf::is_gguf_path(model) {
        return gguf_info(model, json);
    }
    let ckpt = Checkpoint::open(model)?;
    let spec = &ckpt.spec;
    let size_bytes: u64 = ckpt
        .weight_files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    if json {
        let value = serde_json::json!({
            "path": ckpt.dir.display().to_string(),
            "family": ckpt.family.name,
            "spec": spec,
            "num_moe_layers": spec.num_moe_layers(),
            "weight_files": ckpt.weight_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "size_bytes": size_bytes,
            "tokenizer": ckpt.tokenizer_path.as_ref().map(|p| p.display().to_string()),
            "tokenizer_note": ckpt.tokenizer_note,
            "declared_dtype": ckpt.config.dtype.map(|d| d.label()),
            "quantization": ckpt.quantization.label(),
            "ram_bytes": moescope::engine::memory::total_ram_bytes(),
            "description": moescope::model::describe::describe(spec)
                .into_iter()
                .map(|(label, text)| serde_json::json!({"label": label, "text": text}))
                .collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("{:<15}{}", "path", ckpt.dir.display());
    println!(
        "{:<15}{} ({})",
        "architecture", spec.architecture, ckpt.family.name
    );
    for (label, text) in moescope::model::describe::describe(spec) {
        println!("{label:<15}{text}");
    }
    println!(
        "{:<15}{} file(s), {:.2} MB, declared dtype {}{}",
        "weights",
        ckpt.weight_files.len(),
        size_bytes as f64 / 1e6,
        ckpt.config.dtype.map_or("none", |d| d.label()),
        match &ckpt.quantization {
            Quantization::None => String::new(),
            Quantization::Fp8 { block } => {
                format!(", FP8 e4m3 in {}×{} blocks", block[0], block[1])
            }
            Quantization::Mxfp4 => ", MXFP4 experts".into(),
        }
    );
    println!(
        "{:<15}on the CPU {}",
        "memory",
        moescope::engine::memory::cpu_residency_note(size_bytes)
    );
    println!(
        "tokenizer      {}",
        ckpt.tokenizer_path
            .as_ref()
            .map_or(ckpt.tokenizer_note.clone(), |p| p.display().to_string())
    );
    Ok(())
}

/// `info` for a GGUF file (or split set): what its header says, checked.
fn gguf_info(path: &std::path::Path, json: bool) -> Result<()> {
    use moescope::model::gguf::{GgufModel, MetaValue};
    let model = GgufModel::open(path)?;
    let first = model.metadata();
    let size_bytes = model.size_bytes();
    // How moescope runs it: the spec its metadata becomes, or why it does not run.
    let runs = moescope::model::gguf_spec::spec_of(&model);
    // Text input: what a prompt is tokenized with (the rebuilt vocabulary or a tokenizer.json).
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let (tokenizer_path, tokenizer_note) =
        match moescope::model::checkpoint::gguf_tokenizer_of(&model, dir) {
            Ok((_, path, note)) => (path, note),
            Err(e) => (None, e.to_string()),
        };
    if json {
        let metadata: serde_json::Map<String, serde_json::Value> = first
            .metadata
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    MetaValue::Uint(v) => serde_json::json!(v),
                    MetaValue::Int(v) => serde_json::json!(v),
                    MetaValue::Float(v) => serde_json::json!(v),
                    // The decimal the file's writer meant, not the f32's f64 widening.
                    MetaValue::Float32(v) => {
                        serde_json::json!(v.to_string().parse::<f64>().unwrap_or(f64::NAN))
                    }
                    MetaValue::Bool(v) => serde_json::json!(v),
                    MetaValue::Str(v) => serde_json::json!(v),
                    MetaValue::Array(a) => {
                        serde_json::json!({"array_of": a.element_name(), "len": a.len})
                    }
                };
                (key.clone(), value)
            })
            .collect();
        let tensors: Vec<serde_json::Value> = model
            .tensors()
            .map(|t| {
                serde_json::json!({"name": t.name, "type": t.ggml_type.to_string(), "dims": t.dims, "bytes": t.size_bytes})
            })
            .collect();
        let value = serde_json::json!({
            "path": path.display().to_string(),
            "format": "gguf",
            "version": first.version,
            "parts": model.parts.iter().map(|p| p.path.display().to_string()).collect::<Vec<_>>(),
            "architecture": first.architecture(),
            "size_bytes": size_bytes,
            "metadata": metadata,
            "tensors": tensors,
            "family": runs.as_ref().ok().map(|(family, _, _)| family.name),
            "spec": runs.as_ref().ok().map(|(_, _, spec)| spec),
            "not_runnable": runs.as_ref().err().map(|e| e.to_string()),
            "tokenizer": tokenizer_path.map(|p| p.display().to_string()),
            "tokenizer_note": tokenizer_note,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let mut lines = vec![("path".to_owned(), path.display().to_string())];
    lines.extend(model.describe());
    // DeepSeek's kv_b_proj rebuilt at load is held beside the mapping.
    let rebuilt = runs.as_ref().map_or(0, |(_, _, spec)| {
        moescope::model::gguf_spec::rebuilt_bytes(&model, spec)
    });
    lines.push((
        "memory".into(),
        format!(
            "on the CPU {}{}",
            moescope::engine::memory::cpu_residency_note(size_bytes + rebuilt),
            if rebuilt > 0 {
                format!(
                    " (with {} of kv_b_proj rebuilt in f32 from attn_k_b/attn_v_b)",
                    moescope::units::human_bytes(rebuilt)
                )
            } else {
                String::new()
            }
        ),
    ));
    match &runs {
        Ok((family, _, spec)) => {
            lines.push(("runs as".into(), family.name.to_owned()));
            lines.extend(
                moescope::model::describe::describe(spec)
                    .into_iter()
                    .map(|(label, text)| (label.to_owned(), text)),
            );
        }
        Err(e) => lines.push(("runs as".into(), format!("does not run: {e}"))),
    }
    lines.push(("prompts".into(), tokenizer_note));
    // Architecture keys are long (`attention.layer_norm_rms_epsilon`): one column for all.
    let width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    for (label, text) in lines {
        println!("{label:<width$}{text}");
    }
    Ok(())
}

fn trace(args: TraceArgs) -> Result<()> {
    let options = args.run.options()?;
    let mut engine = Engine::load(&args.model, options)?;
    let ids = match (&args.input.prompt, &args.input.token_ids) {
        (Some(text), _) => engine.checkpoint.encode(text)?,
        (None, Some(ids)) => ids.clone(),
        (None, None) => bail!("give --prompt TEXT or --token-ids 1,2,3"),
    };
    let trace = engine.run(&ids)?;
    match args.out.extension().and_then(|e| e.to_str()) {
        Some("json") => trace.write_json(&args.out)?,
        _ => bail!(
            "unsupported output format for {}: use a .json file",
            args.out.display()
        ),
    }
    eprintln!(
        "traced {} tokens through {} MoE layers in {:.1} ms → {}",
        trace.num_tokens(),
        trace.moe_layers.len(),
        trace.forward_ms,
        args.out.display()
    );
    Ok(())
}

#[derive(Args)]
// A trace file needs no input, so `--prompt`/`--token-ids` are optional here; `stats` asks for one
// when it runs a model.
#[command(mut_group("InputArgs", |g| g.required(false)))]
pub struct StatsArgs {
    /// Trace files (.json; several are pooled as one batch), or one checkpoint to run (a folder,
    /// its config.json, a .safetensors file or a .gguf file).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub input: Option<InputArgs>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Capacity factor CF: each expert takes C = ceil(T·k/E·CF) assignments.
    #[arg(long, default_value_t = DEFAULT_CAPACITY_FACTOR)]
    pub capacity_factor: f64,
    /// Leave out the first N tokens of every trace (e.g. BOS).
    #[arg(long, value_name = "N", conflicts_with = "tokens")]
    pub skip_first: Option<usize>,
    /// Analyse only tokens A..B (end exclusive, clamped to each trace).
    #[arg(long, value_name = "A..B", value_parser = parse_token_range)]
    pub tokens: Option<Range<usize>>,
    /// Print the metrics as JSON (names in docs/metrics.md) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// When running a model: run it again in this dtype (e.g. f32) and report the tokens whose
    /// expert set or top-1 expert differs (routing flips from precision).
    #[arg(long, value_name = "DTYPE", conflicts_with = "compare_model")]
    pub compare_dtype: Option<String>,
    /// When running a model: run the same tokens through this second checkpoint (an FP8 or bf16
    /// version of the same model, say) and report routing flips, the weight change on experts
    /// both chose, and the KL of the last position's next-token distributions.
    #[arg(long, value_name = "MODEL_B")]
    pub compare_model: Option<PathBuf>,
}

fn parse_token_range(text: &str) -> Result<Range<usize>, String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("expected A..B, got {text:?}"))?;
    let start = a.trim().parse().map_err(|e| format!("start {a:?}: {e}"))?;
    let end = b.trim().parse().map_err(|e| format!("end {b:?}: {e}"))?;
    Ok(start..end)
}

/// A trace file rather than a checkpoint: a `.json` file that is not a checkpoint's config.json
/// or safetensors index.
fn is_trace_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    path.is_file()
        && path.extension().and_then(|e| e.to_str()) == Some("json")
        && name != "config.json"
        && !name.ends_with(".index.json")
}

fn stats(args: StatsArgs) -> Result<()> {
    let options = AnalysisOptions {
        capacity_factor: args.capacity_factor,
        token_range: match (args.skip_first, &args.tokens) {
            (Some(n), _) => Some(n..usize::MAX),
            (None, Some(range)) => Some(range.clone()),
            (None, None) => None,
        },
    };
    let given_input = args
        .input
        .as_ref()
        .is_some_and(|i| i.prompt.is_some() || i.token_ids.is_some());
    let mut flips = None;
    let metrics = if args.inputs.iter().all(|p| is_trace_file(p)) {
        if given_input {
            bail!("--prompt and --token-ids run a model; trace files already hold their tokens");
        }
        if args.compare_dtype.is_some() || args.compare_model.is_some() {
            bail!("--compare-dtype and --compare-model run models; give a checkpoint, not trace files");
        }
        let traces = args
            .inputs
            .iter()
            .map(|p| Trace::read_json(p))
            .collect::<moescope::Result<Vec<_>>>()?;
        let refs: Vec<&Trace> = traces.iter().collect();
        analysis::aggregate(&refs, &options).map_err(|e| name_trace(e, &args.inputs))?
    } else {
        let [model] = args.inputs.as_slice() else {
            bail!(
                "stats takes trace files (.json) or one checkpoint, not several: {}",
                args.inputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let mut engine = Engine::load(model, args.run.options()?)?;
        let ids = match args.input.as_ref().map(|i| (&i.prompt, &i.token_ids)) {
            Some((Some(text), _)) => engine.checkpoint.encode(text)?,
            Some((None, Some(ids))) => ids.clone(),
            _ => bail!(
                "give --prompt TEXT or --token-ids 1,2,3 to run {}",
                model.display()
            ),
        };
        let trace = engine.run(&ids)?.clone();
        if let Some(dtype) = &args.compare_dtype {
            let reference_options = EngineOptions {
                dtype: parse_dtype(dtype)?,
                ..engine.options().clone()
            };
            drop(engine);
            let mut reference = Engine::load(model, reference_options)?;
            flips = Some(analysis::routing_flips(&trace, reference.run(&ids)?)?);
        } else if let Some(other) = &args.compare_model {
            let reference_options = engine.options().clone();
            let vocab = engine.checkpoint.spec.vocab_size;
            drop(engine);
            let mut reference = Engine::load(other, reference_options)?;
            if reference.checkpoint.spec.vocab_size != vocab {
                bail!(
                    "--compare-model needs the same vocabulary: {} has {} tokens, {} has {vocab}",
                    other.display(),
                    reference.checkpoint.spec.vocab_size,
                    model.display()
                );
            }
            let mut f = analysis::routing_flips(&trace, reference.run(&ids)?)
                .map_err(|e| anyhow!("{e}: {}", other.display()))?;
            f.run = model.display().to_string();
            f.reference = other.display().to_string();
            flips = Some(f);
        }
        analysis::analyze(&trace, &options).map_err(|e| name_trace(e, &args.inputs))?
    };
    if args.json {
        let mut value = serde_json::to_value(&metrics)?;
        if let (Some(flips), Some(object)) = (&flips, value.as_object_mut()) {
            object.insert("routing_flips".into(), serde_json::to_value(flips)?);
        }
        println!("{}", serde_json::to_string(&value)?);
    } else {
        print_table(&metrics);
        if let Some(flips) = &flips {
            print_flips(flips);
        }
    }
    Ok(())
}

fn print_flips(f: &analysis::RoutingFlips) {
    println!(
        "\nrouting flips, {} against {}: {} of {} tokens change experts in some layer",
        f.run, f.reference, f.tokens_with_any_flip, f.num_tokens
    );
    if let Some(kl) = f.last_logits_kl {
        println!(
            "last position: KL(reference ‖ run) of the next-token distributions {kl:.3e} nats"
        );
    }
    println!("layer  set-flips  top1-flips  changed-choices  Δweight mean/max  tokens");
    for l in &f.moe_layers {
        let mut tokens: Vec<String> = l.set_flips.iter().take(12).map(|t| t.to_string()).collect();
        if l.set_flips.len() > 12 {
            tokens.push("…".into());
        }
        println!(
            "{:>5} {:>10} {:>11} {:>15.2}%  {:>7.1e}/{:<7.1e}  {}",
            l.layer,
            l.set_flips.len(),
            l.top1_flips.len(),
            l.changed_choice_fraction * 100.0,
            l.agreeing_weight_diff_mean,
            l.agreeing_weight_diff_max,
            tokens.join(",")
        );
    }
}

/// The analysis error with the file it concerns (path last).
fn name_trace(err: AnalysisError, paths: &[PathBuf]) -> anyhow::Error {
    let index = match &err {
        AnalysisError::EmptyTokenRange { trace, .. }
        | AnalysisError::Mismatch { trace, .. }
        | AnalysisError::Malformed { trace, .. }
        | AnalysisError::Invalid { trace, .. } => *trace,
        AnalysisError::NoTraces | AnalysisError::CapacityFactor(_) => return err.into(),
    };
    match paths.get(index) {
        Some(path) => anyhow!("{err}: {}", path.display()),
        None => err.into(),
    }
}

/// One row per MoE layer with the main metrics; `-` where a metric needs logits the trace lacks.
fn print_table(m: &Metrics) {
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    println!(
        "{:>5} {:>4} {:>6} {:>7} {:>6} {:>6} {:>7} {:>7} {:>8} {:>7} {:>7} {:>6} {:>7}",
        "layer",
        "dead",
        "cv",
        "max_vio",
        "gini",
        "jain",
        "balance",
        "band",
        "entropy",
        "switch",
        "z_loss",
        "drop%",
        "repeat1"
    );
    for l in &m.moe_layers {
        println!(
            "{:>5} {:>4} {:>6.3} {:>7.3} {:>6.3} {:>6.3} {:>7.3} {:>7} {:>8} {:>7} {:>7} {:>6.1} {:>7}",
            l.layer,
            l.dead_experts,
            l.cv,
            l.max_vio,
            l.gini,
            l.jain,
            l.utilization_balance,
            format!("{:?}", l.utilization_band).to_lowercase(),
            num(l.router_entropy_mean),
            num(l.switch_loss),
            num(l.z_loss),
            100.0 * l.dropped_fraction,
            num(l.repeat_top1),
        );
    }
    println!(
        "hf_aux_loss {} (k = {} at balance) · {} token(s) in {} trace(s) · {} experts, top-{}, {} · capacity factor {}",
        num(m.hf_aux_loss),
        m.top_k,
        m.num_tokens,
        m.num_traces,
        m.num_experts,
        m.top_k,
        if m.scoring.is_empty() { "unknown scoring" } else { &m.scoring },
        m.capacity_factor
    );
    println!("{}", m.probability_meaning);
}

/// `moescope [MODEL]`: the desktop app, on the bundled sample model when no model is named.
#[cfg(feature = "gui")]
fn open_app(model: Option<PathBuf>) -> Result<()> {
    moescope::gui::run(model).map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

#[cfg(not(feature = "gui"))]
fn open_app(_model: Option<PathBuf>) -> Result<()> {
    bail!("this is the headless build (--no-default-features): use a subcommand such as `moescope trace` (see --help)")
}

#[derive(Args)]
#[command(mut_group("InputArgs", |g| g.required(false)))]
pub struct ExportArgs {
    /// A trace file (.json) or a checkpoint to run (with --prompt or --token-ids).
    pub input: PathBuf,
    #[command(flatten)]
    pub prompt: Option<InputArgs>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Which figure: routing-map (layers × tokens), layer-heatmap (experts × tokens of --layer),
    /// load-heatmap (layers × experts).
    #[arg(long, default_value = "routing-map", value_parser = ["routing-map", "layer-heatmap", "load-heatmap"])]
    pub figure: String,
    /// Transformer block index of the MoE layer for layer-heatmap (default: the first MoE layer).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Colour the layer heatmap by applied weight instead of router probability.
    #[arg(long)]
    pub weights: bool,
    /// Write the figure as PNG.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Write the figure as SVG.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Write long-format CSV: layer,token_index,token,rank,expert,weight,prob.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write the trace JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn export(args: ExportArgs) -> Result<()> {
    use moescope::export::{write_data, write_figure, FigureKind};
    if args.png.is_none() && args.svg.is_none() && args.csv.is_none() && args.json.is_none() {
        bail!("nothing to write: give --png, --svg, --csv and/or --json FILE");
    }
    let trace = if is_trace_file(&args.input) {
        Trace::read_json(&args.input)?
    } else {
        let mut engine = Engine::load(&args.input, args.run.options()?)?;
        let ids = match args.prompt.as_ref().map(|i| (&i.prompt, &i.token_ids)) {
            Some((Some(text), _)) => engine.checkpoint.encode(text)?,
            Some((None, Some(ids))) => ids.clone(),
            _ => bail!(
                "give --prompt TEXT or --token-ids 1,2,3 to run {}",
                args.input.display()
            ),
        };
        engine.run(&ids)?.clone()
    };
    let kind = match args.figure.as_str() {
        "layer-heatmap" => {
            let moe_layer = match args.layer {
                None => 0,
                Some(block) => trace
                    .moe_layers
                    .iter()
                    .position(|l| l.layer == block)
                    .ok_or_else(|| {
                        anyhow!(
                            "layer {block} is not a MoE layer; MoE layers are {}",
                            trace
                                .moe_layers
                                .iter()
                                .map(|l| l.layer.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?,
            };
            FigureKind::LayerHeatmap {
                moe_layer,
                probabilities: !args.weights,
            }
        }
        "load-heatmap" => FigureKind::LoadHeatmap,
        _ => FigureKind::RoutingMap,
    };
    for path in [&args.png, &args.svg].into_iter().flatten() {
        write_figure(&trace, &kind, path)?;
        eprintln!("wrote {}", path.display());
    }
    for path in [&args.csv, &args.json].into_iter().flatten() {
        write_data(&trace, path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn bench(args: BenchArgs) -> Result<()> {
    let mut options = args.run.options()?;
    // Throughput figures: phase boundaries still synchronize, single experts are not timed.
    options.time_experts = false;
    if args.no_capture {
        options.capture = CaptureLevel::Off;
    }
    let started = std::time::Instant::now();
    let mut engine = Engine::load(&args.model, options)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let ids = match (&args.prompt, args.tokens) {
        (Some(text), _) => engine.checkpoint.encode(text)?,
        (None, Some(n)) => bench::synthetic_ids(n, engine.checkpoint.spec.vocab_size),
        (None, None) => bail!("give --tokens N or --prompt TEXT"),
    };
    let report = bench::run(
        &mut engine,
        &ids,
        load_ms,
        &BenchOptions {
            repeat: args.repeat,
            measure_capture_overhead: !args.no_capture,
        },
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_bench(&report);
    }
    Ok(())
}

fn print_bench(r: &BenchReport) {
    println!(
        "{} ({}), {} tokens, {} {} ({} threads), expert kernel {}, capture {:?}",
        r.model,
        r.architecture,
        r.tokens,
        r.device,
        r.dtype,
        r.threads,
        r.implementation,
        r.capture
    );
    println!(
        "prefill        {:.1} ms median of {} (min {:.1}, max {:.1}), {:.0} tokens/s; load {:.0} ms",
        r.prefill_ms.median, r.repeat, r.prefill_ms.min, r.prefill_ms.max, r.tokens_per_s, r.load_ms
    );
    let p = &r.phases_ms;
    println!(
        "phases (all layers)  attention {:.1} ms, router {:.1} ms, experts {:.1} ms, shared/dense {:.1} ms",
        p.attention, p.router, p.experts, p.shared
    );
    println!("MoE layer      {:.2} ms per layer", r.moe_layer_ms);
    println!(
        "experts        {:.2} GFLOP per layer at {:.1} GFLOP/s; dense matmul of equal FLOPs {:.2} ms → {:.0} % of its rate",
        r.expert_gflop,
        r.expert_gflops_per_s,
        r.dense_equivalent_ms,
        r.moe_flop_efficiency * 100.0
    );
    if let (Some(off), Some(overhead)) = (r.prefill_no_capture_ms, r.capture_overhead) {
        println!(
            "capture        {:.1} ms without capture → overhead {:+.1} %",
            off,
            overhead * 100.0
        );
    }
    let mb = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.0} MB"));
    println!(
        "memory         weights {:.0} MB on disk; resident {} after load, {} after runs, peak {}",
        r.weights_mb,
        mb(r.rss_after_load_mb),
        mb(r.rss_mb),
        mb(r.peak_rss_mb)
    );
}

fn devices(json: bool) -> Result<()> {
    let devices = available_devices();
    if json {
        println!("{}", serde_json::to_string_pretty(&devices)?);
        return Ok(());
    }
    for d in &devices {
        println!("{:<8} {}", d.name, d.description);
    }
    if let Some(reason) = moescope::engine::device::cuda_unavailable_reason() {
        println!("(no CUDA: {reason})");
    }
    Ok(())
}
