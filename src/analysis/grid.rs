//! The numbers behind each figure, built once for the app's views and for `export`: the routing
//! map's top-1 cells, a layer heatmap's values and the load heatmap. Colours are applied by the
//! caller (egui's `Color32` in the app, the shared palette in exported files), so a view and its
//! exported file cannot drift apart.

use super::Metrics;
use crate::trace::Trace;
use std::ops::Range;

/// Routing map cells for `tokens`, row-major over MoE layers: each token's top-1 expert and its
/// share of the token's weights; `None` where a layer has no row for the token.
pub fn top1_cells(trace: &Trace, tokens: Range<usize>) -> Vec<Option<(usize, f32)>> {
    let mut cells = Vec::with_capacity(trace.moe_layers.len() * tokens.len());
    for layer in &trace.moe_layers {
        cells.extend(tokens.clone().map(|t| layer.top1_share(t)));
    }
    cells
}

/// One MoE layer's experts × tokens values.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerHeatmap {
    /// Row-major over experts: `values[expert * tokens + token]`.
    pub values: Vec<f32>,
    /// The chosen (expert, token) cells, outlined in the figures.
    pub chosen: Vec<(usize, usize)>,
    /// Whether `values` are router probabilities (else applied weights, 0 where not chosen).
    pub probabilities: bool,
}

impl LayerHeatmap {
    /// The largest value (at least ε), which the colour scale maps to its top.
    pub fn max(&self) -> f32 {
        self.values.iter().copied().fold(f32::EPSILON, f32::max)
    }
}

/// Layer heatmap of MoE layer `moe_layer`: router probabilities when asked for and the layer has
/// logits and a scoring the analysis can read, else the applied weights.
pub fn layer_heatmap(trace: &Trace, moe_layer: usize, probabilities: bool) -> Option<LayerHeatmap> {
    let layer = trace.moe_layers.get(moe_layer)?;
    let tokens = trace.tokens.len();
    let experts = trace.model.num_experts;
    let scoring = super::token::scoring(&trace.model.router)
        .filter(|_| probabilities && !layer.router_logits.is_empty());
    let mut values = vec![0f32; experts * tokens];
    let mut chosen = Vec::new();
    for t in 0..tokens.min(layer.topk_ids.rows()) {
        let probs = scoring
            .filter(|_| t < layer.router_logits.rows())
            .map(|s| super::token::probabilities(layer.router_logits.row(t), s));
        if let Some(probs) = &probs {
            for (e, p) in probs.iter().enumerate().take(experts) {
                values[e * tokens + t] = *p as f32;
            }
        }
        for (&id, &w) in layer.topk_ids.row(t).iter().zip(layer.topk_weights.row(t)) {
            if probs.is_none() {
                values[id as usize * tokens + t] = w;
            }
            chosen.push((id as usize, t));
        }
    }
    Some(LayerHeatmap {
        values,
        chosen,
        probabilities: scoring.is_some(),
    })
}

/// Load of each (MoE layer, expert), row-major, relative to uniform (1 = the uniform share),
/// clamped to [0, 2] and mapped to 0..1 for the colour scale.
pub fn relative_load(metrics: &Metrics) -> Vec<f32> {
    let e = metrics.num_experts as f64;
    metrics
        .moe_layers
        .iter()
        .flat_map(|l| {
            l.load_fraction
                .iter()
                .map(move |f| ((f * e) / 2.0).clamp(0.0, 1.0) as f32)
        })
        .collect()
}
