//! `moescope trace`: one prompt's routing as a trace file.

use super::{InputArgs, RunArgs};
use anyhow::{bail, Result};
use clap::Args;
use moescope::engine::Engine;
use std::path::PathBuf;

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

pub fn trace(args: TraceArgs) -> Result<()> {
    let options = args.run.options()?;
    let mut engine = Engine::load(&args.model, options)?;
    let Some(tokens) = args.input.tokens() else {
        bail!("give --prompt TEXT or --token-ids 1,2,3");
    };
    let ids = tokens.ids(&engine.checkpoint)?;
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
