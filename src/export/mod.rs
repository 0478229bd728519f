//! Figures and data files made from a trace. Shared by the CLI (`moescope export`) and the desktop
//! app, so both write identical files. No egui here.

pub mod csv;
pub mod figure;
pub mod layout;
pub mod palette;
pub mod png;
pub mod svg;

use crate::error::{Error, Result};
use crate::trace::Trace;
use std::path::Path;

/// Which figure to draw.
#[derive(Clone, Debug, PartialEq)]
pub enum FigureKind {
    /// MoE layers × tokens, top-1 expert colours.
    RoutingMap,
    /// Experts × tokens of one MoE layer (index into `trace.moe_layers`).
    LayerHeatmap {
        moe_layer: usize,
        probabilities: bool,
    },
    /// MoE layers × experts, load relative to uniform.
    LoadHeatmap,
}

fn export_error(path: &Path, problem: impl Into<String>) -> Error {
    Error::Export {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Writes `kind` as PNG or SVG, chosen by `path`'s extension, atomically (a failed export leaves
/// an older file of that name intact).
pub fn write_figure(trace: &Trace, kind: &FigureKind, path: &Path) -> Result<()> {
    let format = extension(path);
    if format != "png" && format != "svg" {
        return Err(export_error(
            path,
            format!("unsupported figure format '.{format}': use .png or .svg"),
        ));
    }
    trace
        .validate()
        .map_err(|problem| export_error(path, format!("the trace is malformed: {problem}")))?;
    let figure = figure::build(trace, kind).map_err(|problem| export_error(path, problem))?;
    write_rendered(&figure, path)
}

/// Writes a corpus layer's domain × expert figure as PNG or SVG, atomically.
pub fn write_corpus_figure(
    report: &crate::analysis::corpus::CorpusReport,
    moe_layer: usize,
    path: &Path,
) -> Result<()> {
    let format = extension(path);
    if format != "png" && format != "svg" {
        return Err(export_error(
            path,
            format!("unsupported figure format '.{format}': use .png or .svg"),
        ));
    }
    let figure =
        figure::corpus_domains(report, moe_layer).map_err(|problem| export_error(path, problem))?;
    write_rendered(&figure, path)
}

/// Renders `figure` as the PNG or SVG `path` names and writes it atomically.
fn write_rendered(figure: &figure::Figure, path: &Path) -> Result<()> {
    let format = extension(path);
    if format == "png" {
        let mut bytes = Vec::new();
        png::render(figure)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .map_err(|e| export_error(path, format!("PNG encoding failed: {e}")))?;
        crate::atomic::write_bytes(path, &bytes)
    } else {
        crate::atomic::write_bytes(path, svg::render(figure).as_bytes())
    }
}

/// Writes the trace as JSON (the trace contract) or long-format CSV, chosen by extension,
/// atomically.
pub fn write_data(trace: &Trace, path: &Path) -> Result<()> {
    match extension(path).as_str() {
        "json" => trace.write_json(path),
        "csv" => crate::atomic::write_bytes(path, csv::long_format(trace).as_bytes()),
        other => Err(export_error(
            path,
            format!("unsupported data format '.{other}': use .json or .csv"),
        )),
    }
}
