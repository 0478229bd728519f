//! SVG backend: the same layout as the PNG, with real text (selectable, editable in Inkscape).
//! Large grids are embedded as one nearest-neighbour PNG image instead of a rect per cell.

use super::figure::{Figure, Legend};
use super::layout::{self, AXIS_TITLE_PX, LABEL_PX, MARGIN, TITLE_PX};
use super::palette::{self, Rgb};
use std::fmt::Write;

/// Beyond this many cells the grid is embedded as an image (a rect each would be tens of MB).
const MAX_RECT_CELLS: usize = 100_000;

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn render(fig: &Figure) -> String {
    let lay = layout::layout(fig);
    let mut s = String::new();
    let font = "font-family=\"Droid Sans Fallback, DejaVu Sans, Arial, sans-serif\"";
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" {font} fill=\"#1e1e1e\">",
        w = lay.width,
        h = lay.height
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>");
    let _ = writeln!(s, "<text x=\"{MARGIN}\" y=\"{}\" font-size=\"{TITLE_PX}\" dominant-baseline=\"middle\">{}</text>", MARGIN + TITLE_PX * 0.5, escape(&fig.title));
    if fig.rows * fig.cols <= MAX_RECT_CELLS {
        let _ = writeln!(s, "<g shape-rendering=\"crispEdges\">");
        for r in 0..fig.rows {
            for c in 0..fig.cols {
                let _ = writeln!(
                    s,
                    "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>",
                    lay.grid_x + c as f32 * lay.cell_w,
                    lay.grid_y + r as f32 * lay.cell_h,
                    lay.cell_w,
                    lay.cell_h,
                    hex(fig.cells[r * fig.cols + c])
                );
            }
        }
        let _ = writeln!(s, "</g>");
    } else {
        let mut raw = Vec::with_capacity(fig.cells.len() * 3);
        fig.cells.iter().for_each(|c| raw.extend_from_slice(c));
        let mut png = Vec::new();
        let encoded = image::RgbImage::from_raw(fig.cols as u32, fig.rows as u32, raw)
            .map(|img| img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png));
        if matches!(encoded, Some(Ok(()))) {
            let _ = writeln!(
                s,
                "<image x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" preserveAspectRatio=\"none\" style=\"image-rendering:pixelated\" href=\"data:image/png;base64,{}\"/>",
                lay.grid_x,
                lay.grid_y,
                fig.cols as f32 * lay.cell_w,
                fig.rows as f32 * lay.cell_h,
                base64(&png)
            );
        }
    }
    if lay.cell_w >= 4.0 && lay.cell_h >= 4.0 && !fig.outlined.is_empty() {
        let _ = writeln!(s, "<g fill=\"none\" stroke=\"#ffffff\" stroke-width=\"1\">");
        for &(r, c) in &fig.outlined {
            let _ = writeln!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
                lay.grid_x + c as f32 * lay.cell_w + 0.5,
                lay.grid_y + r as f32 * lay.cell_h + 0.5,
                lay.cell_w - 1.0,
                lay.cell_h - 1.0
            );
        }
        let _ = writeln!(s, "</g>");
    }
    let _ = writeln!(s, "<g font-size=\"{LABEL_PX}\">");
    for (r, label) in fig
        .row_labels
        .iter()
        .enumerate()
        .step_by(lay.row_label_step)
    {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>",
            lay.grid_x - 6.0,
            lay.grid_y + (r as f32 + 0.5) * lay.cell_h,
            escape(label)
        );
    }
    let grid_bottom = lay.grid_y + fig.rows as f32 * lay.cell_h;
    for (c, label) in fig
        .col_labels
        .iter()
        .enumerate()
        .step_by(lay.col_label_step)
    {
        let x = lay.grid_x + (c as f32 + 0.5) * lay.cell_w;
        if lay.col_labels_rotated {
            let y = grid_bottom + 6.0;
            let _ = writeln!(s, "<text x=\"{x}\" y=\"{y}\" text-anchor=\"end\" dominant-baseline=\"middle\" transform=\"rotate(-90 {x} {y})\">{}</text>", escape(label));
        } else {
            let _ = writeln!(s, "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\" dominant-baseline=\"middle\">{}</text>", grid_bottom + 6.0 + LABEL_PX * 0.5, escape(label));
        }
    }
    let _ = writeln!(s, "</g>");
    let grid_w = fig.cols as f32 * lay.cell_w;
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"{AXIS_TITLE_PX}\" text-anchor=\"middle\">{}</text>",
        lay.grid_x + grid_w / 2.0,
        grid_bottom + lay.col_label_band + AXIS_TITLE_PX,
        escape(&fig.x_title)
    );
    let (yx, yy) = (
        MARGIN + AXIS_TITLE_PX * 0.5,
        lay.grid_y + fig.rows as f32 * lay.cell_h / 2.0,
    );
    let _ = writeln!(s, "<text x=\"{yx}\" y=\"{yy}\" font-size=\"{AXIS_TITLE_PX}\" text-anchor=\"middle\" dominant-baseline=\"middle\" transform=\"rotate(-90 {yx} {yy})\">{}</text>", escape(&fig.y_title));
    match &fig.legend {
        Legend::Experts(experts) => {
            let grid_h = (fig.rows as f32 * lay.cell_h).max(200.0);
            let per_column = (grid_h / 20.0).floor().max(1.0) as usize;
            for (i, &e) in experts.iter().enumerate() {
                let x = lay.legend_x + (i / per_column) as f32 * 110.0;
                let y = lay.grid_y + (i % per_column) as f32 * 20.0;
                let _ = writeln!(
                    s,
                    "<rect x=\"{x}\" y=\"{}\" width=\"14\" height=\"14\" fill=\"{}\"/>",
                    y + 3.0,
                    hex(palette::expert_color(e, 1.0))
                );
                let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" font-size=\"{LABEL_PX}\" dominant-baseline=\"middle\">expert {e}</text>", x + 20.0, y + 10.0);
            }
        }
        Legend::ColorBar { caption, low, high } => {
            let bar_h = (fig.rows as f32 * lay.cell_h).max(200.0) - 30.0;
            let _ = writeln!(
                s,
                "<defs><linearGradient id=\"bar\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">"
            );
            for i in 0..=8 {
                let v = i as f32 / 8.0;
                let _ = writeln!(
                    s,
                    "<stop offset=\"{v}\" stop-color=\"{}\"/>",
                    hex(palette::sequential(v))
                );
            }
            let _ = writeln!(s, "</linearGradient></defs>");
            let _ = writeln!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"18\" height=\"{bar_h}\" fill=\"url(#bar)\"/>",
                lay.legend_x, lay.grid_y
            );
            let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" font-size=\"{LABEL_PX}\" dominant-baseline=\"middle\">{}</text>", lay.legend_x + 24.0, lay.grid_y + 6.0, escape(high));
            let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" font-size=\"{LABEL_PX}\" dominant-baseline=\"middle\">{}</text>", lay.legend_x + 24.0, lay.grid_y + bar_h - 6.0, escape(low));
            let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" font-size=\"{LABEL_PX}\" dominant-baseline=\"middle\">{}</text>", lay.legend_x, lay.grid_y + bar_h + 18.0, escape(caption));
        }
    }
    s.push_str("</svg>\n");
    s
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_examples() {
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
    }
}
