//! `moescope compare`: two traces layer by layer — two prompts, two checkpoints, two dtypes or a
//! run and its intervention.

use anyhow::{anyhow, Result};
use clap::Args;
use moescope::analysis;
use moescope::corpus::read_report;
use moescope::input::is_corpus_file;
use moescope::trace::Trace;
use std::path::PathBuf;

#[derive(Args)]
pub struct CompareArgs {
    /// The first trace or corpus file (.json).
    pub a: PathBuf,
    /// The second, of the same kind.
    pub b: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn compare(args: CompareArgs) -> Result<()> {
    if is_corpus_file(&args.a) || is_corpus_file(&args.b) {
        return compare_corpora(&args);
    }
    let (a, b) = (Trace::read_json(&args.a)?, Trace::read_json(&args.b)?);
    let comparison = analysis::compare_runs(&a, &b).map_err(|e| match e {
        analysis::AnalysisError::Mismatch { problem, .. } => anyhow!(
            "cannot compare {} with {}: {problem}",
            args.a.display(),
            args.b.display()
        ),
        other => anyhow!("{other}: {}", args.b.display()),
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&comparison)?);
        return Ok(());
    }
    println!(
        "A {} ({} tokens) against B {} ({} tokens){}",
        args.a.display(),
        comparison.num_tokens_a,
        args.b.display(),
        comparison.num_tokens_b,
        if comparison.same_tokens {
            ", the same tokens"
        } else {
            ": different tokens, load only"
        }
    );
    println!("layer  load JSD (bits)  mean Jaccard  saturation  same top-1");
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    for l in &comparison.moe_layers {
        println!(
            "{:>5} {:>16.4} {:>13} {:>11} {:>11}",
            l.layer,
            l.load_jsd_bits,
            num(l.mean_jaccard),
            num(l.saturation),
            num(l.top1_agreement)
        );
    }
    Ok(())
}

/// Two corpus files: per MoE layer the JSD of the whole load and of each shared domain.
fn compare_corpora(args: &CompareArgs) -> Result<()> {
    let (a, b) = (read_report(&args.a)?, read_report(&args.b)?);
    let comparison = analysis::corpus::compare_corpora(&a, &b).map_err(|e| match e {
        analysis::AnalysisError::Mismatch { problem, .. } => anyhow!(
            "cannot compare {} with {}: {problem}",
            args.a.display(),
            args.b.display()
        ),
        other => anyhow!("{other}: {}", args.b.display()),
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&comparison)?);
        return Ok(());
    }
    println!(
        "corpus A {} ({} tokens) against B {} ({} tokens), {} shared domains",
        args.a.display(),
        a.tokens,
        args.b.display(),
        b.tokens,
        comparison.domains.len()
    );
    println!(
        "layer  load JSD (bits)  mean domain JSD  {}",
        comparison.domains.join("  ")
    );
    for l in &comparison.moe_layers {
        let domains: Vec<String> = l
            .domain_jsd_bits
            .iter()
            .map(|v| format!("{v:.4}"))
            .collect();
        println!(
            "{:>5} {:>16.4} {:>16} {}",
            l.layer,
            l.load_jsd_bits,
            l.mean_domain_jsd_bits
                .map_or("-".to_owned(), |v| format!("{v:.4}")),
            domains.join("  ")
        );
    }
    Ok(())
}
