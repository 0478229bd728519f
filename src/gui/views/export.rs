//! Export menu entries: which figures exist and the file names proposed for them.

pub use crate::export::FigureKind;

/// File name proposed in the save dialog.
pub fn default_file_name(kind: &FigureKind, model_name: &str) -> String {
    match kind {
        FigureKind::RoutingMap => format!("{model_name}-routing-map.png"),
        FigureKind::LayerHeatmap { moe_layer, .. } => {
            format!("{model_name}-layer{moe_layer}-heatmap.png")
        }
        FigureKind::LoadHeatmap => format!("{model_name}-load-heatmap.png"),
    }
}

pub fn label(kind: &FigureKind) -> &'static str {
    match kind {
        FigureKind::RoutingMap => "Routing map",
        FigureKind::LayerHeatmap { .. } => "Layer heatmap (selected layer)",
        FigureKind::LoadHeatmap => "Load heatmap",
    }
}
