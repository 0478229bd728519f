//! PNG backend: rasterizes a [`Figure`] with the bundled font (ab_glyph), no window or GPU.

use super::figure::Figure;
use super::layout::{self, Anchor, Shape};
use super::palette::{self, Rgb};
use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{Rgb as Px, RgbImage};

/// CJK-capable fallback font shared with the app (Apache-2.0; see assets/fonts/README.md).
pub static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DroidSansFallbackFull.ttf");
/// Latin font of exported figures (DejaVu Sans; see assets/fonts/README.md).
pub static LATIN_FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

const INK: Rgb = [30, 30, 30];
const BACKGROUND: Rgb = [255, 255, 255];

struct Canvas {
    image: RgbImage,
    latin: FontRef<'static>,
    fallback: FontRef<'static>,
}

impl Canvas {
    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, color: Rgb) {
        let (x0, y0) = (x.round().max(0.0) as u32, y.round().max(0.0) as u32);
        let x1 = ((x + w).round() as u32).min(self.image.width());
        let y1 = ((y + h).round() as u32).min(self.image.height());
        for py in y0..y1 {
            for px in x0..x1 {
                self.image.put_pixel(px, py, Px(color));
            }
        }
    }

    fn outline(&mut self, x: f32, y: f32, w: f32, h: f32, color: Rgb) {
        self.rect(x, y, w, 1.0, color);
        self.rect(x, y + h - 1.0, w, 1.0, color);
        self.rect(x, y, 1.0, h, color);
        self.rect(x + w - 1.0, y, 1.0, h, color);
    }

    fn blend(&mut self, x: i64, y: i64, coverage: f32, color: Rgb) {
        if x < 0 || y < 0 || x >= self.image.width() as i64 || y >= self.image.height() as i64 {
            return;
        }
        let p = self.image.get_pixel_mut(x as u32, y as u32);
        for (channel, ink) in p.0.iter_mut().zip(color) {
            *channel = (*channel as f32 * (1.0 - coverage) + ink as f32 * coverage).round() as u8;
        }
    }

    /// Draws `text` vertically centred on `y`, anchored at `x`; `rotated` turns it a quarter
    /// counter-clockwise (reading bottom-up) about (x, y).
    #[allow(clippy::too_many_arguments)] // a text call needs position, size, anchor, rotation, colour
    fn text(
        &mut self,
        text: &str,
        x: f32,
        y: f32,
        px: f32,
        anchor: Anchor,
        rotated: bool,
        color: Rgb,
    ) {
        // Each character from the Latin font when it has the glyph, else from the CJK fallback.
        let (latin, fallback) = (self.latin.clone(), self.fallback.clone());
        let pick = move |c: char| {
            let font = if latin.glyph_id(c).0 != 0 {
                &latin
            } else {
                &fallback
            };
            (font.clone(), font.glyph_id(c))
        };
        let width: f32 = text
            .chars()
            .map(|c| {
                let (font, id) = pick(c);
                font.as_scaled(PxScale::from(px)).h_advance(id)
            })
            .sum();
        let start = match anchor {
            Anchor::Start => 0.0,
            Anchor::Middle => -width / 2.0,
            Anchor::End => -width,
        };
        // Local coordinates: baseline at y = 0; shift so the text's vertical centre sits at 0.
        let metrics = self.latin.as_scaled(PxScale::from(px));
        let centre = (metrics.ascent() + metrics.descent()) / 2.0;
        let mut pen = start;
        for c in text.chars() {
            let (font, id) = pick(c);
            let scaled = font.as_scaled(PxScale::from(px));
            let glyph = id.with_scale_and_position(PxScale::from(px), ab_glyph::point(pen, 0.0));
            pen += scaled.h_advance(id);
            if let Some(outlined) = font.outline_glyph(glyph) {
                let bounds = outlined.px_bounds();
                let mut pixels = Vec::new();
                outlined.draw(|gx, gy, coverage| pixels.push((gx, gy, coverage)));
                for (gx, gy, coverage) in pixels {
                    let lx = bounds.min.x + gx as f32;
                    let ly = bounds.min.y + gy as f32 + centre;
                    let (dx, dy) = if rotated { (ly, -lx) } else { (lx, ly) };
                    self.blend(
                        (x + dx).round() as i64,
                        (y + dy).round() as i64,
                        coverage.min(1.0),
                        color,
                    );
                }
            }
        }
    }
}

pub fn render(fig: &Figure) -> RgbImage {
    let lay = layout::layout(fig);
    let mut canvas = Canvas {
        image: RgbImage::from_pixel(lay.width as u32, lay.height as u32, Px(BACKGROUND)),
        latin: FontRef::try_from_slice(LATIN_FONT_BYTES).expect("the bundled Latin font parses"),
        fallback: FontRef::try_from_slice(FONT_BYTES).expect("the bundled CJK font parses"),
    };
    for shape in layout::shapes(fig, &lay) {
        match shape {
            Shape::Cells {
                x,
                y,
                cell_w,
                cell_h,
            } => {
                for r in 0..fig.rows {
                    for c in 0..fig.cols {
                        let (cx, cy) = (x + c as f32 * cell_w, y + r as f32 * cell_h);
                        canvas.rect(cx, cy, cell_w, cell_h, fig.cells[r * fig.cols + c]);
                    }
                }
            }
            Shape::Rect { x, y, w, h, color } => canvas.rect(x, y, w, h, color),
            Shape::Outline { x, y, w, h, color } => canvas.outline(x, y, w, h, color),
            Shape::Text {
                text,
                x,
                y,
                px,
                anchor,
                rotated,
            } => canvas.text(&text, x, y, px, anchor, rotated, INK),
            Shape::ColorBar { x, y, w, h } => {
                let steps = h.max(1.0) as usize;
                for i in 0..steps {
                    let v = 1.0 - i as f32 / steps as f32;
                    canvas.rect(x, y + i as f32, w, 1.0, palette::sequential(v));
                }
            }
        }
    }
    canvas.image
}
