//! Where everything of a [`Figure`] goes, in pixels; both backends draw from this one layout.

use super::figure::{Figure, Legend};

pub const MARGIN: f32 = 28.0;
pub const TITLE_PX: f32 = 22.0;
pub const LABEL_PX: f32 = 14.0;
pub const AXIS_TITLE_PX: f32 = 16.0;
/// Labels are drawn only when cells are at least this big; otherwise every n-th.
const MIN_LABEL_SPACING: f32 = 16.0;

#[derive(Clone, Debug)]
pub struct Layout {
    pub width: f32,
    pub height: f32,
    pub cell_w: f32,
    pub cell_h: f32,
    /// Top-left of the cell grid.
    pub grid_x: f32,
    pub grid_y: f32,
    /// Column labels are rotated (vertical) when columns are narrow or labels long.
    pub col_labels_rotated: bool,
    pub col_label_band: f32,
    pub row_label_band: f32,
    /// Draw every n-th row / column label.
    pub row_label_step: usize,
    pub col_label_step: usize,
    pub legend_x: f32,
    pub legend_w: f32,
}

/// Rough text width for layout (proportional fonts average ~0.6 em; CJK glyphs are ~1 em).
pub fn text_width(text: &str, px: f32) -> f32 {
    text.chars()
        .map(|c| if (c as u32) > 0x2E80 { px } else { px * 0.6 })
        .sum()
}

pub fn layout(fig: &Figure) -> Layout {
    // Aim for ~2000 px of grid width (a full-width figure at 300 dpi), within readable cell sizes.
    let cell_w = (2000.0 / fig.cols as f32).clamp(2.0, 40.0).floor();
    let cell_h = (1000.0 / fig.rows as f32)
        .clamp(2.0, 36.0)
        .floor()
        .max(cell_w.min(24.0));
    let longest_col = fig
        .col_labels
        .iter()
        .map(|l| text_width(l, LABEL_PX))
        .fold(0.0, f32::max);
    let col_labels_rotated = longest_col > cell_w * 0.9;
    let col_label_band = if col_labels_rotated {
        longest_col + 8.0
    } else {
        LABEL_PX + 8.0
    };
    let row_label_band = fig
        .row_labels
        .iter()
        .map(|l| text_width(l, LABEL_PX))
        .fold(0.0, f32::max)
        + 10.0;
    let step = |cell: f32| ((MIN_LABEL_SPACING / cell).ceil() as usize).max(1);
    let grid_x = MARGIN + AXIS_TITLE_PX + 10.0 + row_label_band;
    let grid_y = MARGIN + TITLE_PX + 16.0;
    let grid_w = fig.cols as f32 * cell_w;
    let grid_h = fig.rows as f32 * cell_h;
    let legend_w = match &fig.legend {
        Legend::Experts(experts) => {
            let per_column = ((grid_h.max(200.0)) / 20.0).floor().max(1.0) as usize;
            let columns = experts.len().div_ceil(per_column).max(1);
            columns as f32 * 110.0
        }
        Legend::ColorBar { caption, .. } => 90.0f32.max(text_width(caption, LABEL_PX) * 0.6),
    };
    let legend_x = grid_x + grid_w + 24.0;
    let title_w = MARGIN * 2.0 + text_width(&fig.title, TITLE_PX);
    Layout {
        width: (legend_x + legend_w + MARGIN).max(title_w).ceil(),
        height: (grid_y + grid_h.max(200.0) + col_label_band + AXIS_TITLE_PX + 16.0 + MARGIN)
            .ceil(),
        cell_w,
        cell_h,
        grid_x,
        grid_y,
        col_labels_rotated,
        col_label_band,
        row_label_band,
        row_label_step: step(cell_h),
        col_label_step: if col_labels_rotated {
            step(cell_w)
        } else {
            step(cell_w).max(((longest_col + 6.0) / cell_w).ceil() as usize)
        },
        legend_x,
        legend_w,
    }
}
