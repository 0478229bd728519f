//! Settings that survive restarts (theme, recent files, defaults). Runtime state — traces, the
//! model — is never persisted.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How many recent checkpoints the File menu keeps.
pub const MAX_RECENT: usize = 10;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Settings {
    pub dark_mode: bool,
    pub recent: Vec<PathBuf>,
    /// `f32`, `bf16` or `f16`.
    pub dtype: String,
    /// `cpu` or `cuda:N`.
    pub device: String,
    pub capacity_factor: f64,
    pub prompt: String,
    /// Layer heatmap shows router probabilities (true) or applied weights (false).
    pub heatmap_probabilities: bool,
    pub bottom_tab: BottomTab,
    /// Milliseconds of typing quiet before the model re-runs.
    pub debounce_ms: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum BottomTab {
    LayerHeatmap,
    Text,
    Load,
    Balance,
    Timings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            dark_mode: true,
            recent: Vec::new(),
            dtype: "f32".into(),
            device: "cpu".into(),
            capacity_factor: crate::analysis::DEFAULT_CAPACITY_FACTOR,
            prompt: "The quick brown fox jumps over the lazy dog. 敏捷的棕色狐狸跳过了懒狗。\nfn main() { println!(\"{}\", 6 * 7); }".into(),
            heatmap_probabilities: true,
            bottom_tab: BottomTab::LayerHeatmap,
            debounce_ms: 10,
        }
    }
}

impl Settings {
    /// Moves `path` to the front of the recent list.
    pub fn remember(&mut self, path: PathBuf) {
        self.recent.retain(|p| p != &path);
        self.recent.insert(0, path);
        self.recent.truncate(MAX_RECENT);
    }
}
