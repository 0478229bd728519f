//! A figure as data: a grid of coloured cells with labelled axes, a title and a legend. Built once
//! from a trace and drawn by both backends ([`super::png`], [`super::svg`]), so a PNG and an SVG of
//! the same figure agree cell for cell.

use super::palette::{self, Rgb};
use super::FigureKind;
use crate::analysis;
use crate::trace::token_text::{axis_label, token_texts};
use crate::trace::Trace;

#[derive(Clone, Debug, PartialEq)]
pub enum Legend {
    /// Categorical swatches for these experts (routing map).
    Experts(Vec<usize>),
    /// A sequential colour bar from `low` to `high` (labels), with a caption.
    ColorBar {
        caption: String,
        low: String,
        high: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub title: String,
    pub x_title: String,
    pub y_title: String,
    pub rows: usize,
    pub cols: usize,
    /// Row-major colours, `rows * cols`.
    pub cells: Vec<Rgb>,
    pub row_labels: Vec<String>,
    pub col_labels: Vec<String>,
    /// Cells to outline (row, col): the chosen experts in a layer heatmap.
    pub outlined: Vec<(usize, usize)>,
    pub legend: Legend,
}

/// The model folder's name, for titles.
fn model_name(trace: &Trace) -> String {
    std::path::Path::new(&trace.model.path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| trace.model.architecture.clone())
}

pub fn build(trace: &Trace, kind: &FigureKind) -> Result<Figure, String> {
    let tokens = trace.tokens.len();
    let name = model_name(trace);
    let token_labels: Vec<String> = token_texts(&trace.tokens)
        .iter()
        .map(|t| axis_label(&t.text, 12))
        .collect();
    if trace.moe_layers.is_empty() || tokens == 0 {
        return Err("the trace has no MoE layers or no tokens".into());
    }
    match kind {
        FigureKind::RoutingMap => {
            let rows = trace.moe_layers.len();
            let mut cells = Vec::with_capacity(rows * tokens);
            let mut used = std::collections::BTreeSet::new();
            for cell in analysis::grid::top1_cells(trace, 0..tokens) {
                let (expert, share) = cell.unwrap_or((0, 0.0));
                used.insert(expert);
                cells.push(palette::expert_color(expert, share));
            }
            Ok(Figure {
                title: format!(
                    "{name}: top-1 expert per token and MoE layer (paler = lower weight share)"
                ),
                x_title: "token".into(),
                y_title: "layer".into(),
                rows,
                cols: tokens,
                cells,
                row_labels: trace
                    .moe_layers
                    .iter()
                    .map(|l| l.layer.to_string())
                    .collect(),
                col_labels: token_labels,
                outlined: Vec::new(),
                legend: Legend::Experts(used.into_iter().collect()),
            })
        }
        FigureKind::LayerHeatmap {
            moe_layer,
            probabilities,
        } => {
            let layer = trace
                .moe_layers
                .get(*moe_layer)
                .ok_or_else(|| format!("MoE layer index {moe_layer} is out of range"))?;
            let experts = trace.model.num_experts;
            let heatmap = analysis::grid::layer_heatmap(trace, *moe_layer, *probabilities)
                .ok_or_else(|| format!("MoE layer index {moe_layer} is out of range"))?;
            let (values, outlined, use_probs) = (
                &heatmap.values,
                heatmap.chosen.clone(),
                heatmap.probabilities,
            );
            let max = heatmap.max();
            let what = if use_probs {
                "router probability"
            } else {
                "applied weight"
            };
            Ok(Figure {
                title: format!(
                    "{name}: layer {} {what} per token and expert (outlined: chosen)",
                    layer.layer
                ),
                x_title: "token".into(),
                y_title: "expert".into(),
                rows: experts,
                cols: tokens,
                cells: values
                    .iter()
                    .map(|v| palette::sequential(v / max))
                    .collect(),
                row_labels: (0..experts).map(|e| e.to_string()).collect(),
                col_labels: token_labels,
                outlined,
                legend: Legend::ColorBar {
                    caption: what.into(),
                    low: "0".into(),
                    high: format!("{max:.3}"),
                },
            })
        }
        FigureKind::LoadHeatmap => {
            let metrics = analysis::analyze(trace, &analysis::AnalysisOptions::default())
                .map_err(|e| e.to_string())?;
            let experts = metrics.num_experts;
            let rows = metrics.moe_layers.len();
            let cells = analysis::grid::relative_load(&metrics)
                .into_iter()
                .map(palette::sequential)
                .collect();
            Ok(Figure {
                title: format!(
                    "{name}: expert load relative to uniform ({} tokens, top-{})",
                    metrics.num_tokens, metrics.top_k
                ),
                x_title: "expert".into(),
                y_title: "layer".into(),
                rows,
                cols: experts,
                cells,
                row_labels: metrics
                    .moe_layers
                    .iter()
                    .map(|l| l.layer.to_string())
                    .collect(),
                col_labels: (0..experts).map(|e| e.to_string()).collect(),
                outlined: Vec::new(),
                legend: Legend::ColorBar {
                    caption: "load / uniform load".into(),
                    low: "0×".into(),
                    high: "≥ 2×".into(),
                },
            })
        }
    }
}

/// A corpus layer's domains × experts: each domain's share of its assignments per expert
/// (Mixtral's domain-routing figure).
pub fn corpus_domains(
    report: &crate::analysis::corpus::CorpusReport,
    moe_layer: usize,
) -> Result<Figure, String> {
    let layer = report
        .moe_layers
        .get(moe_layer)
        .ok_or_else(|| format!("MoE layer index {moe_layer} is out of range"))?;
    let (rows, cols) = (report.domains.len(), report.model.num_experts);
    if rows == 0 || cols == 0 {
        return Err("the corpus has no domains or no experts".into());
    }
    let max = layer
        .domain_distribution
        .iter()
        .flatten()
        .copied()
        .fold(f64::EPSILON, f64::max);
    let name = std::path::Path::new(&report.model.path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| report.model.architecture.clone());
    Ok(Figure {
        title: format!(
            "{name}: layer {} expert share per domain ({} tokens, top-{})",
            layer.layer, report.tokens, report.model.top_k
        ),
        x_title: "expert".into(),
        y_title: "domain".into(),
        rows,
        cols,
        cells: layer
            .domain_distribution
            .iter()
            .flatten()
            .map(|v| palette::sequential((v / max) as f32))
            .collect(),
        row_labels: report
            .domains
            .iter()
            .map(|d| axis_label(&d.name, 12))
            .collect(),
        col_labels: (0..cols).map(|e| e.to_string()).collect(),
        outlined: Vec::new(),
        legend: Legend::ColorBar {
            caption: "share of the domain's assignments".into(),
            low: "0".into(),
            high: format!("{max:.2}"),
        },
    })
}
