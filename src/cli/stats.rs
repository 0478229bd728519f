//! `moescope stats`: routing metrics of trace files or of a model run, and routing flips between
//! two runs.

use super::intervene::{self, InterventionArgs};
use super::{DtypeArg, InputArgs, RunArgs};
use anyhow::{anyhow, bail, Result};
use clap::Args;
use moescope::analysis::{self, AnalysisError, AnalysisOptions, Metrics, DEFAULT_CAPACITY_FACTOR};
use moescope::engine::{Engine, EngineOptions};
use moescope::input::is_trace_file;
use moescope::trace::Trace;
use std::ops::Range;
use std::path::PathBuf;

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
    #[command(flatten)]
    pub intervene: InterventionArgs,
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
    pub compare_dtype: Option<DtypeArg>,
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

pub fn stats(args: StatsArgs) -> Result<()> {
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
    let interventions = args.intervene.interventions()?;
    let mut flips = None;
    let mut effect = None;
    let metrics = if args.inputs.iter().all(|p| is_trace_file(p)) {
        if given_input {
            bail!("--prompt and --token-ids run a model; trace files already hold their tokens");
        }
        if args.compare_dtype.is_some() || args.compare_model.is_some() {
            bail!("--compare-dtype and --compare-model run models; give a checkpoint, not trace files");
        }
        if !interventions.is_empty() {
            bail!("interventions change a model run; give a checkpoint, not trace files");
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
        let engine_options = EngineOptions {
            interventions,
            ..args.run.options()?
        };
        let mut engine = Engine::load(model, engine_options)?;
        let Some(tokens) = args.input.as_ref().and_then(InputArgs::tokens) else {
            bail!(
                "give --prompt TEXT or --token-ids 1,2,3 to run {}",
                model.display()
            );
        };
        let ids = tokens.ids(&engine.checkpoint)?;
        let trace = if engine.options().interventions.is_empty() {
            engine.run(&ids)?.clone()
        } else {
            intervene::check_forced_positions(&engine.options().interventions, ids.len())?;
            let (trace, e) = moescope::probe::intervened_run(&mut engine, &ids)?;
            effect = Some(e);
            trace
        };
        if let Some(dtype) = &args.compare_dtype {
            let reference_options = EngineOptions {
                dtype: dtype.dtype(),
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
    if let Some(effect) = &effect {
        intervene::report_effect(effect, args.intervene.report.as_deref())?;
    }
    if args.json {
        let mut value = serde_json::to_value(&metrics)?;
        if let (Some(flips), Some(object)) = (&flips, value.as_object_mut()) {
            object.insert("routing_flips".into(), serde_json::to_value(flips)?);
        }
        if let (Some(effect), Some(object)) = (&effect, value.as_object_mut()) {
            object.insert("intervention_effect".into(), serde_json::to_value(effect)?);
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
    let ks: Vec<String> = m.moe_layers.iter().map(|l| l.top_k.to_string()).collect();
    let top_k = if m.moe_layers.iter().all(|l| l.top_k == m.top_k) {
        format!("top-{}", m.top_k)
    } else {
        format!("top-k {} by layer", ks.join("/"))
    };
    println!(
        "hf_aux_loss {} (k = {} at balance) · {} token(s) in {} trace(s) · {} experts, {top_k}, {} · capacity factor {}",
        num(m.hf_aux_loss),
        m.top_k,
        m.num_tokens,
        m.num_traces,
        m.num_experts,
        if m.scoring.is_empty() { "unknown scoring" } else { &m.scoring },
        m.capacity_factor
    );
    println!("{}", m.probability_meaning);
}
