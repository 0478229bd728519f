//! Corpus mode: the user's own texts through the model, aggregated into which experts serve which
//! domain and vocabulary ([`crate::analysis::corpus`]). Documents stream through one at a time,
//! cut into sequences of at most `max_seq_tokens`, each a forward pass that records routing only
//! (no router logits): memory stays flat in the size of the corpus.

pub mod documents;

use crate::analysis::corpus::{CorpusCounts, CorpusReport, VocabularyOptions};
use crate::engine::Engine;
use crate::error::{Error, Result};
use documents::{ReadLog, Source};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Default longest sequence of one forward pass; longer documents are split.
pub const DEFAULT_MAX_SEQ_TOKENS: usize = 2048;

#[derive(Clone, Debug)]
pub struct CorpusOptions {
    /// The text field of `.jsonl` lines.
    pub field: String,
    pub max_seq_tokens: usize,
    pub vocabulary: VocabularyOptions,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        Self {
            field: "text".into(),
            max_seq_tokens: DEFAULT_MAX_SEQ_TOKENS,
            vocabulary: VocabularyOptions::default(),
        }
    }
}

/// Where a corpus run stands, reported after every sequence.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub bytes_read: u64,
    pub bytes_total: u64,
    pub documents: u64,
    pub tokens: u64,
    pub elapsed_s: f64,
}

impl Progress {
    pub fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.elapsed_s.max(1e-9)
    }

    /// Seconds left, from the share of input bytes read.
    pub fn eta_s(&self) -> Option<f64> {
        (self.bytes_read > 0 && self.bytes_total >= self.bytes_read).then(|| {
            self.elapsed_s * (self.bytes_total - self.bytes_read) as f64 / self.bytes_read as f64
        })
    }
}

/// A finished (or cancelled) corpus run.
pub struct CorpusRun {
    pub report: CorpusReport,
    pub log: ReadLog,
}

/// Runs every document of `sources` through `engine` and aggregates their routing. `cancel`
/// stops it between sequences, keeping what was counted. An all-empty corpus is an error.
pub fn run_corpus(
    engine: &mut Engine,
    sources: &[Source],
    options: &CorpusOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<CorpusRun> {
    let started = Instant::now();
    let limit = engine
        .checkpoint
        .spec
        .max_position_embeddings
        .min(engine.options().max_tokens);
    let max_seq = options.max_seq_tokens.clamp(1, limit.max(1));
    let bytes_total: u64 = sources.iter().map(|s| s.bytes).sum();
    let mut log = ReadLog::default();
    log.summary.max_seq_tokens = max_seq;
    let mut counts: Option<CorpusCounts> = None;
    let mut failure: Option<Error> = None;
    let (mut bytes_before, mut documents) = (0u64, 0u64);
    for source in sources {
        let mut split_here = 0u64;
        let flow = documents::read_source(source, &options.field, &mut log, &mut |piece| {
            if cancel.load(Ordering::Relaxed) {
                return ControlFlow::Break(());
            }
            let ids = match engine
                .checkpoint
                .encode_with(&piece.text, piece.starts_document)
            {
                Ok(ids) => ids,
                Err(e) => {
                    failure = Some(e);
                    return ControlFlow::Break(());
                }
            };
            if ids.is_empty() {
                return ControlFlow::Continue(());
            }
            if piece.starts_document {
                documents += 1;
            }
            if piece.starts_document && ids.len() > max_seq {
                split_here += 1;
            }
            for (i, chunk) in ids.chunks(max_seq).enumerate() {
                if i > 0 && cancel.load(Ordering::Relaxed) {
                    return ControlFlow::Break(());
                }
                let trace = match engine.run(chunk) {
                    Ok(t) => t,
                    // Stopped mid-pass (the engine shares the cancel flag): keep the counts.
                    Err(Error::Cancelled) => return ControlFlow::Break(()),
                    Err(e) => {
                        failure = Some(e);
                        return ControlFlow::Break(());
                    }
                };
                let counts = counts.get_or_insert_with(|| CorpusCounts::new(trace));
                if let Err(e) = counts.add(&piece.domain, trace, piece.starts_document && i == 0) {
                    failure = Some(Error::Corpus {
                        path: source.path.clone(),
                        problem: e.to_string(),
                    });
                    return ControlFlow::Break(());
                }
                progress(&Progress {
                    bytes_read: bytes_before + piece.bytes_read,
                    bytes_total,
                    documents,
                    tokens: counts.num_tokens(),
                    elapsed_s: started.elapsed().as_secs_f64(),
                });
            }
            ControlFlow::Continue(())
        });
        log.summary.documents_split += split_here;
        if let Some(e) = failure.take() {
            return Err(e);
        }
        bytes_before += source.bytes;
        if flow.is_break() {
            log.summary.cancelled = true;
            break;
        }
    }
    let Some(counts) = counts else {
        let path = sources
            .first()
            .map(|s| s.path.clone())
            .unwrap_or_else(|| PathBuf::from("."));
        return Err(Error::Corpus {
            path,
            problem: "no document with any text to run (all were empty or skipped)".into(),
        });
    };
    let mut report = counts.report(options.vocabulary);
    report.input = log.summary.clone();
    Ok(CorpusRun { report, log })
}

/// Reads a corpus file written by `moescope corpus` (this format version only).
pub fn read_report(path: &std::path::Path) -> Result<CorpusReport> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let bad = |problem: String| Error::Corpus {
        path: path.to_owned(),
        problem,
    };
    let report: CorpusReport =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a corpus file: {e}")))?;
    if report.format_version != crate::analysis::corpus::CORPUS_FORMAT_VERSION {
        return Err(bad(format!(
            "corpus format version {} is not the {} this build reads",
            report.format_version,
            crate::analysis::corpus::CORPUS_FORMAT_VERSION
        )));
    }
    Ok(report)
}
