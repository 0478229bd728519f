//! `moescope trace`: one prompt's routing as a trace file.

use super::intervene::{self, InterventionArgs};
use super::{InputArgs, RunArgs};
use anyhow::{bail, Result};
use clap::Args;
use moescope::engine::{Engine, EngineOptions};
use std::path::PathBuf;

#[derive(Args)]
pub struct TraceArgs {
    pub model: PathBuf,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub intervene: InterventionArgs,
    /// Output file; the format follows the extension (.json).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn trace(args: TraceArgs) -> Result<()> {
    if args.out.extension().and_then(|e| e.to_str()) != Some("json") {
        bail!(
            "unsupported output format for {}: use a .json file",
            args.out.display()
        );
    }
    let interventions = args.intervene.interventions()?;
    let options = EngineOptions {
        interventions,
        ..args.run.options()?
    };
    let mut engine = Engine::load(&args.model, options)?;
    let Some(tokens) = args.input.tokens() else {
        bail!("give --prompt TEXT or --token-ids 1,2,3");
    };
    let ids = tokens.ids(&engine.checkpoint)?;
    let trace = if engine.options().interventions.is_empty() {
        engine.run(&ids)?.clone()
    } else {
        intervene::check_forced_positions(&engine.options().interventions, ids.len())?;
        let (trace, effect) = moescope::probe::intervened_run(&mut engine, &ids)?;
        intervene::report_effect(&effect, args.intervene.report.as_deref())?;
        trace
    };
    trace.write_json(&args.out)?;
    eprintln!(
        "traced {} tokens through {} MoE layers in {:.1} ms → {}",
        trace.num_tokens(),
        trace.moe_layers.len(),
        trace.forward_ms,
        args.out.display()
    );
    Ok(())
}
