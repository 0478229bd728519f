//! The command line (`moescope info|trace ...`), exactly as DESIGN.md's CLI contract names it.

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use moescope::engine::capture::CaptureLevel;
use moescope::engine::device::{open_device, parse_dtype};
use moescope::engine::{Engine, EngineOptions};
use moescope::model::checkpoint::Checkpoint;
use moescope::model::spec::AttentionSpec;
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
    /// Checkpoint to open in the desktop app (a Hugging Face folder, its config.json or a .safetensors file).
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
}

impl RunArgs {
    pub fn options(&self) -> Result<EngineOptions> {
        Ok(EngineOptions {
            dtype: parse_dtype(&self.dtype)?,
            device: open_device(&self.device)?,
            capture: match self.capture.as_str() {
                "routing" => CaptureLevel::Routing,
                _ => CaptureLevel::Full,
            },
            synchronize_timings: true,
            ..EngineOptions::default()
        })
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Info { model, json }) => info(&model, json),
        Some(Command::Trace(args)) => trace(args),
        None => {
            bail!(
                "the desktop app is not part of this build yet; use `moescope info MODEL` or `moescope trace MODEL --prompt TEXT --out trace.json` (see --help)"
            )
        }
    }
}

fn info(model: &std::path::Path, json: bool) -> Result<()> {
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
            "declared_dtype": format!("{:?}", ckpt.config.dtype),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let r = &spec.moe.router;
    let moe_layers: Vec<String> = spec
        .moe_layers
        .iter()
        .enumerate()
        .filter(|(_, m)| **m)
        .map(|(i, _)| i.to_string())
        .collect();
    println!("path           {}", ckpt.dir.display());
    println!(
        "architecture   {} ({})",
        spec.architecture, ckpt.family.name
    );
    println!(
        "layers         {} ({} MoE: {})",
        spec.num_layers,
        moe_layers.len(),
        moe_layers.join(", ")
    );
    println!(
        "hidden         {}  vocab {}",
        spec.hidden_size, spec.vocab_size
    );
    println!(
        "experts        {} routed, top-{}, expert intermediate {}{}",
        r.num_experts,
        r.top_k,
        spec.moe.expert_intermediate_size,
        spec.moe
            .shared
            .as_ref()
            .map(|s| format!(", shared expert intermediate {}", s.intermediate_size))
            .unwrap_or_default()
    );
    println!(
        "router         {:?} scores, {:?} selection, renormalize {}, routed scaling {}, selection bias {}",
        r.scoring, r.selection, r.renormalize, r.routed_scaling_factor, r.selection_bias
    );
    match &spec.attention {
        AttentionSpec::Gqa { num_heads, num_kv_heads, head_dim, qk_norm, .. } => println!(
            "attention      GQA {num_heads} heads / {num_kv_heads} kv heads × {head_dim}, q/k norm {qk_norm:?}"
        ),
        AttentionSpec::Mla { num_heads, q_lora_rank, kv_lora_rank, .. } => println!(
            "attention      MLA {num_heads} heads, q_lora_rank {q_lora_rank:?}, kv_lora_rank {kv_lora_rank}"
        ),
    }
    println!(
        "weights        {} file(s), {:.2} MB, declared dtype {:?}",
        ckpt.weight_files.len(),
        size_bytes as f64 / 1e6,
        ckpt.config.dtype
    );
    println!(
        "tokenizer      {}",
        ckpt.tokenizer_path
            .as_ref()
            .map_or("none (give --token-ids)".into(), |p| p
                .display()
                .to_string())
    );
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
