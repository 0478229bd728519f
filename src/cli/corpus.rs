//! `moescope corpus`: the user's texts through the model, aggregated into which experts serve
//! which domain and vocabulary, as a corpus JSON.

use super::RunArgs;
use anyhow::{bail, Result};
use clap::Args;
use moescope::analysis::corpus::{CorpusReport, VocabularyOptions};
use moescope::corpus::{self, documents, CorpusOptions, Progress};
use moescope::engine::capture::CaptureLevel;
use moescope::engine::{Engine, EngineOptions};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct CorpusArgs {
    pub model: PathBuf,
    /// `.txt` files (one document each), `.jsonl` files (one document per line) or folders of
    /// them; a folder's subfolders name their documents' domains.
    #[arg(required = true)]
    pub data: Vec<PathBuf>,
    /// The text field of `.jsonl` lines (a `domain` or `label` field names the line's domain).
    #[arg(long, default_value = "text")]
    pub field: String,
    /// Longest sequence of one forward pass; longer documents are split at this many tokens.
    #[arg(long, default_value_t = corpus::DEFAULT_MAX_SEQ_TOKENS)]
    pub max_seq_tokens: usize,
    /// Tokens listed per expert in the vocabulary tables.
    #[arg(long, default_value_t = VocabularyOptions::default().top_tokens)]
    pub top_tokens: usize,
    /// Occurrences a token needs before it is ranked in the vocabulary tables.
    #[arg(long, default_value_t = VocabularyOptions::default().min_occurrences)]
    pub min_token_count: u64,
    #[command(flatten)]
    pub run: RunArgs,
    /// Output corpus file (.json).
    #[arg(long)]
    pub out: PathBuf,
}

/// Set by the first Ctrl-C: the run stops after the sequence in flight and writes what it counted.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    // A second Ctrl-C ends the process as usual.
    // SAFETY: signal() is async-signal-safe; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
}

fn catch_interrupt() {
    #[cfg(unix)]
    // SAFETY: the handler only stores an atomic and restores the default disposition.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

pub fn corpus(args: CorpusArgs) -> Result<()> {
    if args.out.extension().and_then(|e| e.to_str()) != Some("json") {
        bail!(
            "unsupported output format for {}: use a .json file",
            args.out.display()
        );
    }
    if args.max_seq_tokens == 0 {
        bail!("--max-seq-tokens must be at least 1");
    }
    let sources = documents::sources(&args.data)?;
    let options = EngineOptions {
        capture: CaptureLevel::Routing,
        layer_progress: None,
        ..args.run.options()?
    };
    let mut engine = Engine::load(&args.model, options)?;
    let corpus_options = CorpusOptions {
        field: args.field.clone(),
        max_seq_tokens: args.max_seq_tokens,
        vocabulary: VocabularyOptions {
            top_tokens: args.top_tokens,
            min_occurrences: args.min_token_count,
        },
    };
    catch_interrupt();
    let mut line = ProgressLine::new();
    let run = corpus::run_corpus(
        &mut engine,
        &sources,
        &corpus_options,
        &INTERRUPTED,
        &mut |p| line.show(p),
    )?;
    line.finish();
    for warning in &run.log.warnings {
        eprintln!("warning: {warning}");
    }
    if run.log.warnings_dropped > 0 {
        eprintln!("warning: … and {} more", run.log.warnings_dropped);
    }
    let report = &run.report;
    moescope::atomic::write_bytes(&args.out, &serde_json::to_vec(report)?)?;
    print_summary(report, line.started.elapsed());
    eprintln!("→ {}", args.out.display());
    Ok(())
}

/// One progress line on stderr, redrawn at most 5 times a second; on a terminal only.
struct ProgressLine {
    started: Instant,
    drawn: Option<Instant>,
    terminal: bool,
}

impl ProgressLine {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            drawn: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, p: &Progress) {
        if !self.terminal
            || self
                .drawn
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.drawn = Some(Instant::now());
        let percent = 100.0 * p.bytes_read as f64 / p.bytes_total.max(1) as f64;
        let eta = p
            .eta_s()
            .map_or(String::new(), |s| format!(" · ETA {}", clock(s)));
        eprint!(
            "\r{percent:5.1} % · {} documents · {} tokens · {:.0} tok/s{eta}   ",
            p.documents,
            p.tokens,
            p.tokens_per_s()
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&self) {
        if self.drawn.is_some() {
            eprintln!();
        }
    }
}

fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn print_summary(report: &CorpusReport, elapsed: Duration) {
    let input = &report.input;
    let skipped = input.skipped_empty
        + input.skipped_invalid_utf8
        + input.skipped_without_field
        + input.skipped_unreadable;
    eprintln!(
        "corpus: {} documents ({} split at {} tokens, {skipped} skipped) from {} files, {} tokens, \
         {} domains in {:.1} s ({:.0} tok/s){}",
        report.documents,
        input.documents_split,
        input.max_seq_tokens,
        input.files,
        report.tokens,
        report.domains.len(),
        elapsed.as_secs_f64(),
        report.tokens as f64 / elapsed.as_secs_f64().max(1e-9),
        if input.cancelled {
            " — cancelled: the counts cover what was read"
        } else {
            ""
        }
    );
    let names: Vec<&str> = report.domains.iter().map(|d| d.name.as_str()).collect();
    println!(
        "layer  domain JSD (bits)  top experts per domain ({})",
        names.join(" · ")
    );
    for layer in &report.moe_layers {
        let tops: Vec<String> = layer
            .domain_distribution
            .iter()
            .map(|shares| {
                let mut order: Vec<usize> = (0..shares.len()).collect();
                order.sort_by(|&a, &b| shares[b].total_cmp(&shares[a]));
                order
                    .iter()
                    .take(2)
                    .map(|&e| format!("{e} ({:.0}%)", 100.0 * shares[e]))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect();
        let jsd = layer
            .mean_pairwise_jsd_bits
            .map_or("-".to_owned(), |v| format!("{v:.3}"));
        println!("{:>5} {:>18}  {}", layer.layer, jsd, tops.join(" · "));
    }
}
