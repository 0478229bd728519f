//! One run's results as the views consume them: the trace plus everything derived from it
//! (metrics, per-token router statistics), computed once on the worker thread, never in `ui()`.

use crate::analysis::{self, AnalysisOptions, Metrics, TokenMetrics};
use crate::trace::token_text::{axis_label, token_texts, TokenText};
use crate::trace::Trace;
use std::sync::Arc;

#[derive(Clone)]
pub struct RunData {
    /// Increases with every run; views key their caches (textures) on it.
    pub run_id: u64,
    pub trace: Arc<Trace>,
    /// `None` when the analysis refused the trace (the message says why).
    pub metrics: Result<Metrics, String>,
    /// Per MoE layer, per token; `None` for a layer without captured logits.
    pub token_metrics: Vec<Option<Vec<TokenMetrics>>>,
    /// Tokenization and forward pass as the worker measured it.
    pub elapsed_ms: f64,
    /// Each token as shown (characters split over byte-level tokens put back together).
    pub texts: Vec<TokenText>,
    /// For an intervened run: its effect against the unmodified run of the same tokens.
    pub effect: Option<crate::analysis::InterventionEffect>,
    /// For an intervened run: the unmodified run of the same tokens, shown beside it.
    pub baseline: Option<Box<RunData>>,
}

impl RunData {
    pub fn new(run_id: u64, trace: Arc<Trace>, elapsed_ms: f64) -> Self {
        let metrics =
            analysis::analyze(&trace, &AnalysisOptions::default()).map_err(|e| e.to_string());
        let token_metrics = trace
            .moe_layers
            .iter()
            .map(|layer| analysis::token_metrics(layer, &trace.model.router))
            .collect();
        Self {
            run_id,
            texts: token_texts(&trace.tokens),
            trace,
            metrics,
            token_metrics,
            elapsed_ms,
            effect: None,
            baseline: None,
        }
    }

    /// What views key their caches on: a generation streams one run whose trace grows, so the
    /// run alone does not say whether a cached texture or layout is current.
    pub fn view_key(&self) -> (u64, usize) {
        (self.run_id, self.num_tokens())
    }

    /// Where generated tokens start, in a generated trace.
    pub fn generated_from(&self) -> Option<usize> {
        self.trace.prompt_tokens.filter(|&n| n < self.num_tokens())
    }

    pub fn num_tokens(&self) -> usize {
        self.trace.tokens.len()
    }

    pub fn num_moe_layers(&self) -> usize {
        self.trace.moe_layers.len()
    }

    /// Top-1 expert of `token` at MoE layer `moe_layer` and its share of the token's weights.
    pub fn top1(&self, moe_layer: usize, token: usize) -> Option<(usize, f32)> {
        self.trace.moe_layers.get(moe_layer)?.top1_share(token)
    }

    /// Router probabilities of one token (softmax, or sigmoid scores normalized), if logits exist.
    pub fn probabilities(&self, moe_layer: usize, token: usize) -> Option<Vec<f64>> {
        let layer = self.trace.moe_layers.get(moe_layer)?;
        let scoring = analysis::token::scoring(&self.trace.model.router)?;
        if layer.router_logits.rows() <= token {
            return None;
        }
        Some(analysis::token::probabilities(
            layer.router_logits.row(token),
            scoring,
        ))
    }

    /// The run in a few words, to name it in a comparison: the checkpoint, its dtype, the start
    /// of the text and the interventions.
    pub fn describe(&self) -> String {
        let model = &self.trace.model;
        let name = std::path::Path::new(&model.path).file_name().map_or_else(
            || model.architecture.clone(),
            |n| n.to_string_lossy().into_owned(),
        );
        let text: String = self.trace.tokens.iter().map(|t| t.text.as_str()).collect();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        const SHOWN_CHARS: usize = 32;
        let excerpt: String = text.chars().take(SHOWN_CHARS).collect();
        let more = if text.chars().count() > SHOWN_CHARS {
            "…"
        } else {
            ""
        };
        let mut label = format!(
            "{name} · {} · {} tokens «{excerpt}{more}»",
            model.dtype,
            self.num_tokens()
        );
        if let Some(interventions) = self.trace.interventions.as_ref().filter(|i| !i.is_empty()) {
            label.push_str(&format!(" · {}", interventions.describe()));
        }
        label
    }

    /// Token text for display: whitespace made visible.
    pub fn token_label(&self, token: usize) -> String {
        axis_label(&self.texts[token].text, 40)
    }

    /// For a token that shares a character with its neighbours: the bytes it holds and how.
    pub fn span_note(&self, token: usize) -> Option<String> {
        let shown = &self.texts[token];
        let bytes = shown.bytes.as_deref()?;
        let mut parts = vec![format!("holds bytes {bytes}")];
        if let Some(from) = shown.continues_from {
            parts.push(format!(
                "finishes “{}” of token {from}",
                self.texts[from].text.chars().last().unwrap_or(' ')
            ));
        }
        if shown.opens_span {
            parts.push("its last character ends in the next token".to_owned());
        }
        Some(parts.join(" · "))
    }
}
