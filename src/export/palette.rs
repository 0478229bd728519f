//! Colours shared by the desktop views and the exported figures, so a PNG matches the screen.
//!
//! Experts get categorical hues spaced by the golden angle, which keeps neighbours distinct for any
//! number of experts; every 16 experts the saturation steps down so 64+ experts stay separable.
//! The routing weight sets the lightness: a confident choice is vivid, a hesitant one pale.

/// An sRGB colour.
pub type Rgb = [u8; 3];

/// Golden-ratio conjugate: successive multiples mod 1 spread hues as evenly as possible.
const GOLDEN: f32 = 0.618_034;

/// Colour of `expert` drawn at routing weight `weight` (0..=1; values above 1 are clamped).
pub fn expert_color(expert: usize, weight: f32) -> Rgb {
    let hue = (expert as f32 * GOLDEN).fract();
    let tier = (expert / 16) % 3;
    let saturation = [0.78, 0.55, 0.92][tier];
    let base_value = [0.95, 0.80, 0.70][tier];
    let w = weight.clamp(0.0, 1.0);
    // Blend toward a light grey as the weight drops: the hue stays recognizable.
    let s = saturation * (0.35 + 0.65 * w);
    let v = base_value * (0.75 + 0.25 * w);
    hsv_to_rgb(hue, s, v)
}

/// Sequential colormap for probabilities and loads (0 → dark blue, 1 → yellow; viridis-like),
/// readable in dark and light themes and in greyscale print.
pub fn sequential(value: f32) -> Rgb {
    // Five viridis anchor colours, linearly interpolated.
    const STOPS: [[f32; 3]; 5] = [
        [68.0, 1.0, 84.0],
        [59.0, 82.0, 139.0],
        [33.0, 145.0, 140.0],
        [94.0, 201.0, 98.0],
        [253.0, 231.0, 37.0],
    ];
    let x = if value.is_finite() {
        value.clamp(0.0, 1.0)
    } else {
        0.0
    } * 4.0;
    let i = (x.floor() as usize).min(3);
    let t = x - i as f32;
    let mix = |c: usize| (STOPS[i][c] + (STOPS[i + 1][c] - STOPS[i][c]) * t).round() as u8;
    [mix(0), mix(1), mix(2)]
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> Rgb {
    let h6 = h * 6.0;
    let i = h6.floor() as i32;
    let f = h6 - i as f32;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    let (r, g, b) = match i.rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [
        (r * 255.0).round() as u8,
        (g * 255.0).round() as u8,
        (b * 255.0).round() as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_four_experts_have_distinct_colors() {
        let colors: std::collections::BTreeSet<Rgb> =
            (0..64).map(|e| expert_color(e, 1.0)).collect();
        assert_eq!(colors.len(), 64);
    }

    #[test]
    fn neighbouring_experts_differ_visibly() {
        for e in 0..127 {
            let (a, b) = (expert_color(e, 1.0), expert_color(e + 1, 1.0));
            let dist: i32 = (0..3).map(|c| (a[c] as i32 - b[c] as i32).abs()).sum();
            assert!(
                dist > 60,
                "experts {e} and {} too close: {a:?} {b:?}",
                e + 1
            );
        }
    }

    #[test]
    fn sequential_endpoints() {
        assert_eq!(sequential(0.0), [68, 1, 84]);
        assert_eq!(sequential(1.0), [253, 231, 37]);
        assert_eq!(sequential(f32::NAN), [68, 1, 84]);
    }
}
