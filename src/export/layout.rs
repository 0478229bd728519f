//! Where everything of a [`Figure`] goes, in pixels; both backends draw from this one layout.

use super::figure::{Figure, Legend};
use super::palette::Rgb;

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
            let per_column = (grid_h.max(200.0) / LEGEND_ROW).floor().max(1.0) as usize;
            let columns = experts.len().div_ceil(per_column).max(1);
            columns as f32 * LEGEND_COLUMN
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

/// Where along a text its anchor point lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

/// What a backend draws. Both backends render the same list, so a PNG and an SVG of one figure
/// place every mark identically.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// The figure's cell grid, top-left at (x, y), each cell `cell_w × cell_h`.
    Cells {
        x: f32,
        y: f32,
        cell_w: f32,
        cell_h: f32,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        color: Rgb,
    },
    /// A one-pixel frame (chosen cells of a heatmap).
    Outline {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        color: Rgb,
    },
    /// Text whose vertical centre passes through (x, y), positioned by `anchor` along its length;
    /// `rotated` turns it a quarter counter-clockwise about (x, y), so it reads bottom-up.
    Text {
        text: String,
        x: f32,
        y: f32,
        px: f32,
        anchor: Anchor,
        rotated: bool,
    },
    /// A vertical sequential colour bar, the high end at the top.
    ColorBar { x: f32, y: f32, w: f32, h: f32 },
}

const OUTLINE_COLOR: Rgb = [255, 255, 255];
/// Legend rows are this tall; legend columns this wide.
const LEGEND_ROW: f32 = 20.0;
const LEGEND_COLUMN: f32 = 110.0;

fn text(text: impl Into<String>, x: f32, y: f32, px: f32, anchor: Anchor, rotated: bool) -> Shape {
    Shape::Text {
        text: text.into(),
        x,
        y,
        px,
        anchor,
        rotated,
    }
}

/// Every mark of `fig` under `lay`, in drawing order.
pub fn shapes(fig: &Figure, lay: &Layout) -> Vec<Shape> {
    let mut out = vec![
        text(
            &fig.title,
            MARGIN,
            MARGIN + TITLE_PX * 0.5,
            TITLE_PX,
            Anchor::Start,
            false,
        ),
        Shape::Cells {
            x: lay.grid_x,
            y: lay.grid_y,
            cell_w: lay.cell_w,
            cell_h: lay.cell_h,
        },
    ];
    if lay.cell_w >= 4.0 && lay.cell_h >= 4.0 {
        out.extend(fig.outlined.iter().map(|&(r, c)| Shape::Outline {
            x: lay.grid_x + c as f32 * lay.cell_w,
            y: lay.grid_y + r as f32 * lay.cell_h,
            w: lay.cell_w,
            h: lay.cell_h,
            color: OUTLINE_COLOR,
        }));
    }
    for (r, label) in fig
        .row_labels
        .iter()
        .enumerate()
        .step_by(lay.row_label_step)
    {
        let y = lay.grid_y + (r as f32 + 0.5) * lay.cell_h;
        out.push(text(
            label,
            lay.grid_x - 6.0,
            y,
            LABEL_PX,
            Anchor::End,
            false,
        ));
    }
    let grid_w = fig.cols as f32 * lay.cell_w;
    let grid_h = fig.rows as f32 * lay.cell_h;
    let grid_bottom = lay.grid_y + grid_h;
    for (c, label) in fig
        .col_labels
        .iter()
        .enumerate()
        .step_by(lay.col_label_step)
    {
        let x = lay.grid_x + (c as f32 + 0.5) * lay.cell_w;
        out.push(if lay.col_labels_rotated {
            text(label, x, grid_bottom + 6.0, LABEL_PX, Anchor::End, true)
        } else {
            text(
                label,
                x,
                grid_bottom + 6.0 + LABEL_PX * 0.5,
                LABEL_PX,
                Anchor::Middle,
                false,
            )
        });
    }
    out.push(text(
        &fig.x_title,
        lay.grid_x + grid_w / 2.0,
        grid_bottom + lay.col_label_band + AXIS_TITLE_PX,
        AXIS_TITLE_PX,
        Anchor::Middle,
        false,
    ));
    out.push(text(
        &fig.y_title,
        MARGIN + AXIS_TITLE_PX * 0.5,
        lay.grid_y + grid_h / 2.0,
        AXIS_TITLE_PX,
        Anchor::Middle,
        true,
    ));
    let legend_h = grid_h.max(200.0);
    match &fig.legend {
        Legend::Experts(experts) => {
            let per_column = (legend_h / LEGEND_ROW).floor().max(1.0) as usize;
            for (i, &e) in experts.iter().enumerate() {
                let x = lay.legend_x + (i / per_column) as f32 * LEGEND_COLUMN;
                let y = lay.grid_y + (i % per_column) as f32 * LEGEND_ROW;
                out.push(Shape::Rect {
                    x,
                    y: y + 3.0,
                    w: 14.0,
                    h: 14.0,
                    color: super::palette::expert_color(e, 1.0),
                });
                out.push(text(
                    format!("expert {e}"),
                    x + 20.0,
                    y + 10.0,
                    LABEL_PX,
                    Anchor::Start,
                    false,
                ));
            }
        }
        Legend::ColorBar { caption, low, high } => {
            let bar_h = legend_h - 30.0;
            out.push(Shape::ColorBar {
                x: lay.legend_x,
                y: lay.grid_y,
                w: 18.0,
                h: bar_h,
            });
            let label_x = lay.legend_x + 24.0;
            out.push(text(
                high,
                label_x,
                lay.grid_y + 6.0,
                LABEL_PX,
                Anchor::Start,
                false,
            ));
            out.push(text(
                low,
                label_x,
                lay.grid_y + bar_h - 6.0,
                LABEL_PX,
                Anchor::Start,
                false,
            ));
            out.push(text(
                caption,
                lay.legend_x,
                lay.grid_y + bar_h + 18.0,
                LABEL_PX,
                Anchor::Start,
                false,
            ));
        }
    }
    out
}
