//! Colours as egui types, from the palette the exporters share.

use crate::export::palette;
use egui::Color32;

pub fn expert_color(expert: usize, weight: f32) -> Color32 {
    let [r, g, b] = palette::expert_color(expert, weight);
    Color32::from_rgb(r, g, b)
}

pub fn sequential(value: f32) -> Color32 {
    let [r, g, b] = palette::sequential(value);
    Color32::from_rgb(r, g, b)
}

/// Health bands of the seed's monitoring metrics.
pub const BAND_NORMAL: Color32 = Color32::from_rgb(46, 160, 67);
pub const BAND_WARNING: Color32 = Color32::from_rgb(210, 153, 34);
pub const BAND_ALARM: Color32 = Color32::from_rgb(218, 54, 51);

/// Text colour readable on `background`.
pub fn text_on(background: Color32) -> Color32 {
    let [r, g, b, _] = background.to_array();
    let luma = 0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32;
    if luma > 140.0 {
        Color32::BLACK
    } else {
        Color32::WHITE
    }
}
