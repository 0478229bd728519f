//! The trace: the one contract between the engine and everything downstream (analysis, views,
//! export, CLI). Its JSON form is specified in DESIGN.md ("Trace JSON contract", version 1); fields
//! beyond the contract may be added, none may be removed or renamed without bumping
//! [`FORMAT_VERSION`].

mod matrix;
pub mod token_text;

pub use matrix::Matrix;

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Version of the JSON layout written by [`Trace::write_json`].
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Trace {
    pub format_version: u32,
    pub model: ModelInfo,
    pub tokens: Vec<Token>,
    pub moe_layers: Vec<MoeLayerTrace>,
    /// LM-head logits at the last position (empty when the capture level skipped them).
    #[serde(default)]
    pub last_logits: Vec<f32>,
    /// Wall time of the whole forward pass that produced this trace.
    #[serde(default)]
    pub forward_ms: f64,
    /// In a generated trace, how many of `tokens` were the prompt (the rest were generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<usize>,
    /// The interventions the run applied (absent for an unmodified run). `model.top_k` is then
    /// the k the layers routed with; `router_logits` are the gate's output before logit-level
    /// interventions (ablation masks, Gumbel noise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interventions: Option<crate::routing::Interventions>,
}

/// What ran: enough to label a figure and to interpret the numbers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub path: String,
    pub architecture: String,
    pub num_layers: usize,
    pub num_experts: usize,
    pub top_k: usize,
    pub device: String,
    pub dtype: String,
    /// How router logits turn into scores; analysis needs it to compute probabilities.
    #[serde(default)]
    pub router: RouterInfo,
}

/// The parts of the routing rule that downstream consumers need to reinterpret raw logits.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RouterInfo {
    /// How the logits read as probabilities P_e: `softmax` or `sigmoid` (normalized to sum 1).
    /// For rules that select on raw logits (`topk_softmax`, `topk_sigmoid`, `sparsemixer`) this
    /// is the softmax/sigmoid over all experts, whose top-k is the rule's selection.
    pub scoring: String,
    /// The routing rule (`softmax_topk`, `sigmoid_topk`, `topk_softmax`, `topk_sigmoid`,
    /// `sparsemixer`); empty in traces written before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rule: String,
    /// The rule in words (`moescope info`'s phrase), for captions and reports.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What the weights multiply: `output` (every family but one) or `input` (Llama-4).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub weights_on: String,
    /// Whether the chosen weights are normalized (to sum 1, or by a norm) before routed scaling.
    pub renormalize: bool,
    /// Factor the weights are multiplied by after renormalization (1 when the family has none).
    pub routed_scaling_factor: f32,
    /// Expert groups for group-limited selection (1 when not grouped).
    pub num_groups: usize,
    /// Groups kept per token in group-limited selection.
    pub topk_groups: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Token {
    pub id: u32,
    pub text: String,
    /// Produced by generation rather than given.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generated: bool,
    /// For a generated token: its log-probability (natural log) under the model's next-token
    /// distribution at the position before it, before temperature or top-p.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob: Option<f32>,
}

impl Token {
    /// A token that was given (prompt or ids), not generated.
    pub fn given(id: u32, text: String) -> Self {
        Self {
            id,
            text,
            generated: false,
            logprob: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MoeLayerTrace {
    /// Transformer block index (dense blocks have no entry).
    pub layer: usize,
    /// T×E raw gate output, before softmax/sigmoid and before any bias; 0×0 when not captured.
    pub router_logits: Matrix<f32>,
    /// T×k experts used, in descending weight order.
    pub topk_ids: Matrix<u32>,
    /// T×k weights multiplied into the experts' outputs — or, for Llama-4 (`weights_on: input`),
    /// into their inputs — after normalization and scaling.
    pub topk_weights: Matrix<f32>,
    /// The selection-only bias (DeepSeek-V3 `e_score_correction_bias`), when the router has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_bias: Option<Vec<f32>>,
    pub timings_ms: LayerTimings,
    /// Compute time of each routed expert in ms, summed over the forward calls of this trace
    /// (`[experts]`; absent when not recorded, e.g. the fused GPU kernel runs all experts at once).
    /// Wall time of each expert's own work: experts with few rows run side by side on the CPU, so
    /// the entries can add up to more than `timings_ms.experts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expert_timings_ms: Vec<f64>,
    /// `[token, expert]` assignments that skipped their expert because it was over capacity
    /// (`--drop-over-capacity`; their weight above is what the router gave, the expert's output
    /// was not added), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_dropped: Vec<[usize; 2]>,
}

/// Wall time of each phase of one transformer block, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LayerTimings {
    pub attention: f64,
    pub router: f64,
    pub experts: f64,
    pub shared: f64,
    pub total: f64,
}

impl MoeLayerTrace {
    /// Top-1 expert of `token` and its share of the token's applied weights (weights over their
    /// sum, so routed scaling factors do not wash out colours); `None` past the last token.
    pub fn top1_share(&self, token: usize) -> Option<(usize, f32)> {
        if token >= self.topk_ids.rows() {
            return None;
        }
        let ids = self.topk_ids.row(token);
        let weights = self.topk_weights.row(token);
        let sum: f32 = weights.iter().sum();
        let share = if sum > 0.0 { weights[0] / sum } else { 1.0 };
        Some((ids[0] as usize, share))
    }
}

impl Trace {
    pub fn num_tokens(&self) -> usize {
        self.tokens.len()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a trace always serializes")
    }

    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }

    /// Writes the trace as JSON, atomically (a failed write leaves an older file intact).
    pub fn write_json(&self, path: &Path) -> Result<()> {
        crate::atomic::write_with(path, |w| {
            serde_json::to_writer(w, self).map_err(std::io::Error::other)
        })
    }

    /// Reads a trace file and checks it is one this build understands and that it is
    /// consistent ([`Trace::validate`]), so every consumer — stats, export, the app — may index
    /// it without checking again.
    pub fn read_json(path: &Path) -> Result<Self> {
        let bad = |problem: String| Error::Trace {
            path: path.to_owned(),
            problem,
        };
        let size = std::fs::metadata(path)
            .map_err(|source| Error::Io {
                path: path.to_owned(),
                source,
            })?
            .len();
        if size > MAX_JSON_BYTES {
            return Err(bad(format!(
                "{size} bytes is more than the {MAX_JSON_BYTES} a JSON trace may have"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(bad)
    }

    /// Parses and validates trace JSON (what [`Trace::read_json`] does after reading the file).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let trace = Self::from_json(text).map_err(|e| e.to_string())?;
        if trace.format_version != FORMAT_VERSION {
            return Err(format!(
                "format_version {} is not supported (this build reads {FORMAT_VERSION})",
                trace.format_version
            ));
        }
        trace.validate()?;
        Ok(trace)
    }

    /// Why this trace is inconsistent, if it is: every MoE layer's matrices have one row per
    /// token and the model's expert count or top-k columns, expert ids are below the expert
    /// count and distinct within a row, weights and logits are finite, layer indices increase and
    /// lie below the layer count, per-expert vectors have one entry per expert.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let e = self.model.num_experts;
        let t = self.tokens.len();
        if e == 0 && !self.moe_layers.is_empty() {
            return Err("model.num_experts is 0".into());
        }
        let mut previous: Option<usize> = None;
        for layer in &self.moe_layers {
            let at = |problem: String| format!("layer {}: {problem}", layer.layer);
            if previous.is_some_and(|p| layer.layer <= p) {
                return Err(at("layer indices must increase".into()));
            }
            previous = Some(layer.layer);
            if self.model.num_layers > 0 && layer.layer >= self.model.num_layers {
                return Err(at(format!(
                    "index out of the model's {} layers",
                    self.model.num_layers
                )));
            }
            let ids = &layer.topk_ids;
            let k = ids.cols();
            if ids.rows() != t {
                return Err(at(format!(
                    "topk_ids has {} rows for {t} tokens",
                    ids.rows()
                )));
            }
            if t > 0 && (k == 0 || k > e) {
                return Err(at(format!("top-k {k} is not within 1..={e}")));
            }
            check_values("topk_weights", &layer.topk_weights, t, k).map_err(at)?;
            check_values("router_logits", &layer.router_logits, t, e).map_err(at)?;
            for (token, row) in ids.iter_rows().enumerate() {
                if let Some(&bad) = row.iter().find(|&&x| x as usize >= e) {
                    return Err(at(format!("token {token} uses expert {bad} of {e}")));
                }
                if let Some(twice) = row
                    .iter()
                    .enumerate()
                    .find_map(|(i, x)| row[..i].contains(x).then_some(x))
                {
                    return Err(at(format!("token {token} lists expert {twice} twice")));
                }
            }
            if layer.selection_bias.as_ref().is_some_and(|b| b.len() != e) {
                return Err(at(format!("selection_bias does not have {e} entries")));
            }
            if let Some([t, x]) = layer
                .capacity_dropped
                .iter()
                .find(|[t, x]| *t >= self.tokens.len() || *x >= e)
            {
                return Err(at(format!(
                    "capacity_dropped names token {t}, expert {x}, outside {} tokens × {e} experts",
                    self.tokens.len()
                )));
            }
            if !layer.expert_timings_ms.is_empty() && layer.expert_timings_ms.len() != e {
                return Err(at(format!("expert_timings_ms does not have {e} entries")));
            }
        }
        if self.last_logits.iter().any(|v| !v.is_finite()) {
            return Err("last_logits are not finite".into());
        }
        Ok(())
    }
}

/// An optional `[rows, cols]` matrix of values (empty when not captured): its shape, and finite
/// values only.
fn check_values(
    name: &str,
    m: &Matrix<f32>,
    rows: usize,
    cols: usize,
) -> std::result::Result<(), String> {
    if m.is_empty() {
        return Ok(());
    }
    if m.rows() != rows || m.cols() != cols {
        return Err(format!(
            "{name} is {}×{}, expected {rows}×{cols}",
            m.rows(),
            m.cols()
        ));
    }
    match m.as_slice().iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format!("{name} of token {} is not finite", i / cols.max(1))),
        None => Ok(()),
    }
}

/// The largest JSON trace read (a million tokens of a DeepSeek-V3-sized model, ids only, is ~1 GB
/// of JSON; beyond this the binary trace is the format).
pub const MAX_JSON_BYTES: u64 = 4 << 30;
