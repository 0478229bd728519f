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

fn io_error(path: &Path, err: std::io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        source: err,
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Writes `kind` as PNG or SVG, chosen by `path`'s extension.
pub fn write_figure(trace: &Trace, kind: &FigureKind, path: &Path) -> Result<()> {
    let figure = figure::build(trace, kind).map_err(|problem| Error::Trace {
        path: path.to_owned(),
        problem,
    })?;
    match extension(path).as_str() {
        "png" => png::render(&figure)
            .save_with_format(path, image::ImageFormat::Png)
            .map_err(|e| io_error(path, std::io::Error::other(e.to_string()))),
        "svg" => std::fs::write(path, svg::render(&figure)).map_err(|e| io_error(path, e)),
        other => Err(Error::Trace {
            path: path.to_owned(),
            problem: format!("unsupported figure format '.{other}': use .png or .svg"),
        }),
    }
}

/// Writes the trace as JSON (the trace contract) or long-format CSV, chosen by extension.
pub fn write_data(trace: &Trace, path: &Path) -> Result<()> {
    match extension(path).as_str() {
        "json" => trace.write_json(path),
        "csv" => std::fs::write(path, csv::long_format(trace)).map_err(|e| io_error(path, e)),
        other => Err(Error::Trace {
            path: path.to_owned(),
            problem: format!("unsupported data format '.{other}': use .json or .csv"),
        }),
    }
}
