//! `moescope export`: figures (PNG/SVG) and data (CSV/JSON) from a trace or a model run.

use super::{InputArgs, RunArgs};
use anyhow::{anyhow, bail, Result};
use clap::{Args, ValueEnum};
use moescope::engine::Engine;
use moescope::input::{is_corpus_file, is_trace_file};
use moescope::trace::Trace;
use std::path::PathBuf;

/// The figures `export` draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FigureArg {
    /// Layers × tokens, coloured by each token's top-1 expert.
    RoutingMap,
    /// Experts × tokens of one MoE layer (--layer).
    LayerHeatmap,
    /// Layers × experts: each expert's share of the assignments.
    LoadHeatmap,
    /// Of a corpus file: domains × experts of one MoE layer (--layer).
    Domains,
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
    #[arg(long, value_enum, default_value_t = FigureArg::RoutingMap)]
    pub figure: FigureArg,
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

pub fn export(args: ExportArgs) -> Result<()> {
    use moescope::export::{write_data, write_figure, FigureKind};
    if args.png.is_none() && args.svg.is_none() && args.csv.is_none() && args.json.is_none() {
        bail!("nothing to write: give --png, --svg, --csv and/or --json FILE");
    }
    if is_corpus_file(&args.input) || args.figure == FigureArg::Domains {
        return export_corpus(&args);
    }
    let trace = if is_trace_file(&args.input) {
        Trace::read_json(&args.input)?
    } else {
        let mut engine = Engine::load(&args.input, args.run.options()?)?;
        let Some(tokens) = args.prompt.as_ref().and_then(InputArgs::tokens) else {
            bail!(
                "give --prompt TEXT or --token-ids 1,2,3 to run {}",
                args.input.display()
            );
        };
        let ids = tokens.ids(&engine.checkpoint)?;
        engine.run(&ids)?.clone()
    };
    let kind = match args.figure {
        // Corpus files left above; this arm only keeps the match whole.
        FigureArg::Domains => bail!("--figure domains draws a corpus file"),
        FigureArg::LayerHeatmap => {
            let blocks: Vec<usize> = trace.moe_layers.iter().map(|l| l.layer).collect();
            let moe_layer = moe_layer_index(&blocks, args.layer)?;
            FigureKind::LayerHeatmap {
                moe_layer,
                probabilities: !args.weights,
            }
        }
        FigureArg::LoadHeatmap => FigureKind::LoadHeatmap,
        FigureArg::RoutingMap => FigureKind::RoutingMap,
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

/// A corpus file's domains × experts figure of one MoE layer.
fn export_corpus(args: &ExportArgs) -> Result<()> {
    if !is_corpus_file(&args.input) {
        bail!(
            "--figure domains draws a corpus file (moescope corpus --out), not {}",
            args.input.display()
        );
    }
    if args.csv.is_some() || args.json.is_some() {
        bail!("a corpus file is already JSON: export draws its figure (--png, --svg)");
    }
    if !matches!(args.figure, FigureArg::Domains | FigureArg::RoutingMap) {
        bail!("a corpus file has one figure: --figure domains");
    }
    let report = moescope::corpus::read_report(&args.input)?;
    let blocks: Vec<usize> = report.moe_layers.iter().map(|l| l.layer).collect();
    let moe_layer = moe_layer_index(&blocks, args.layer)
        .map_err(|e| anyhow!("{}: {e}", args.input.display()))?;
    for path in [&args.png, &args.svg].into_iter().flatten() {
        moescope::export::write_corpus_figure(&report, moe_layer, path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The index of transformer block `block` among the MoE layers `blocks` (the first without one).
fn moe_layer_index(blocks: &[usize], block: Option<usize>) -> Result<usize> {
    let Some(block) = block else { return Ok(0) };
    blocks.iter().position(|&b| b == block).ok_or_else(|| {
        let listed: Vec<String> = blocks.iter().map(usize::to_string).collect();
        anyhow!(
            "layer {block} is not a MoE layer; MoE layers are {}",
            listed.join(", ")
        )
    })
}
