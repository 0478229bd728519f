//! SVG backend: the same layout as the PNG, with real text (selectable, editable in Inkscape).
//! Large grids are embedded as one nearest-neighbour PNG image instead of a rect per cell.

use super::figure::Figure;
use super::layout::{self, Anchor, Shape};
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
    let font = "font-family=\"DejaVu Sans, Droid Sans Fallback, Arial, sans-serif\"";
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" {font} fill=\"#1e1e1e\">",
        w = lay.width,
        h = lay.height
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>");
    for shape in layout::shapes(fig, &lay) {
        match shape {
            Shape::Cells {
                x,
                y,
                cell_w,
                cell_h,
            } => cells(&mut s, fig, x, y, cell_w, cell_h),
            Shape::Rect { x, y, w, h, color } => {
                let _ = writeln!(
                    s,
                    "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"{}\"/>",
                    hex(color)
                );
            }
            Shape::Outline { x, y, w, h, color } => {
                let _ = writeln!(
                    s,
                    "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1\"/>",
                    x + 0.5,
                    y + 0.5,
                    w - 1.0,
                    h - 1.0,
                    hex(color)
                );
            }
            Shape::Text {
                text,
                x,
                y,
                px,
                anchor,
                rotated,
            } => {
                let anchor = match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                let rotate = if rotated {
                    format!(" transform=\"rotate(-90 {x} {y})\"")
                } else {
                    String::new()
                };
                let _ = writeln!(
                    s,
                    "<text x=\"{x}\" y=\"{y}\" font-size=\"{px}\" text-anchor=\"{anchor}\" dominant-baseline=\"middle\"{rotate}>{}</text>",
                    escape(&text)
                );
            }
            Shape::ColorBar { x, y, w, h } => {
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
                    "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"url(#bar)\"/>"
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The cell grid: a rect per cell, or one embedded nearest-neighbour PNG for large grids.
fn cells(s: &mut String, fig: &Figure, x: f32, y: f32, cell_w: f32, cell_h: f32) {
    if fig.rows * fig.cols <= MAX_RECT_CELLS {
        let _ = writeln!(s, "<g shape-rendering=\"crispEdges\">");
        for r in 0..fig.rows {
            for c in 0..fig.cols {
                let _ = writeln!(
                    s,
                    "<rect x=\"{}\" y=\"{}\" width=\"{cell_w}\" height=\"{cell_h}\" fill=\"{}\"/>",
                    x + c as f32 * cell_w,
                    y + r as f32 * cell_h,
                    hex(fig.cells[r * fig.cols + c])
                );
            }
        }
        let _ = writeln!(s, "</g>");
        return;
    }
    let mut raw = Vec::with_capacity(fig.cells.len() * 3);
    fig.cells.iter().for_each(|c| raw.extend_from_slice(c));
    let mut png = Vec::new();
    let encoded = image::RgbImage::from_raw(fig.cols as u32, fig.rows as u32, raw)
        .map(|img| img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png));
    if matches!(encoded, Some(Ok(()))) {
        let _ = writeln!(
            s,
            "<image x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" preserveAspectRatio=\"none\" style=\"image-rendering:pixelated\" href=\"data:image/png;base64,{}\"/>",
            fig.cols as f32 * cell_w,
            fig.rows as f32 * cell_h,
            base64(&png)
        );
    }
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
