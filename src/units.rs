//! Quantities as people read them, shared by the CLI, the app and file descriptions.

/// `1.03 MB`, `2.09 GB` (decimal units, as file sizes are shown).
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}
