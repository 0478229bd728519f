//! Long-format CSV, one row per (layer, token, rank): `layer,token_index,token,rank,expert,weight,prob`
//! — the shape pandas and R plot from directly. `prob` is the router probability of that expert
//! (softmax, or sigmoid scores normalized to sum 1), empty when the trace has no logits.

use crate::analysis::token::{probabilities, scoring};
use crate::trace::Trace;
use std::fmt::Write;

/// Quotes a CSV field when it needs it (RFC 4180).
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) || text.starts_with(' ') || text.ends_with(' ') {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

pub fn long_format(trace: &Trace) -> String {
    let mut out = String::from("layer,token_index,token,rank,expert,weight,prob\n");
    let scoring = scoring(&trace.model.router);
    for layer in &trace.moe_layers {
        for (t, token) in trace.tokens.iter().enumerate().take(layer.topk_ids.rows()) {
            let probs = match scoring {
                Some(s) if !layer.router_logits.is_empty() => {
                    Some(probabilities(layer.router_logits.row(t), s))
                }
                _ => None,
            };
            for (rank, (&expert, &weight)) in layer
                .topk_ids
                .row(t)
                .iter()
                .zip(layer.topk_weights.row(t))
                .enumerate()
            {
                let prob = probs
                    .as_ref()
                    .map(|p| format!("{:.6}", p[expert as usize]))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{},{t},{},{rank},{expert},{weight},{prob}",
                    layer.layer,
                    field(&token.text)
                );
            }
        }
    }
    out
}
