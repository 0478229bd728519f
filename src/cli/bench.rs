//! `moescope bench`: prefill speed, phase times, capture overhead and memory of a checkpoint.

use super::RunArgs;
use anyhow::{bail, Result};
use clap::Args;
use moescope::engine::bench::{self, BenchOptions, BenchReport};
use moescope::engine::capture::CaptureLevel;
use moescope::engine::Engine;
use std::path::PathBuf;

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

pub fn bench(args: BenchArgs) -> Result<()> {
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
        "{} ({}), {} tokens, {} {} ({} threads), expert kernel {}, capture {}",
        r.model,
        r.architecture,
        r.tokens,
        r.device,
        r.dtype,
        r.threads,
        r.implementation,
        r.capture.label()
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
