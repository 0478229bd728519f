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
    Compare,
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
    /// Where settings persist: `settings.json` in eframe's storage folder for the app
    /// (`~/.local/share/moescope` on Linux).
    pub fn default_path() -> Option<PathBuf> {
        eframe::storage_dir("moescope").map(|d| d.join("settings.json"))
    }

    /// Reads settings from `path`: `Ok(None)` when there is no file; an unreadable or corrupt
    /// file is an error the app shows while it starts with defaults.
    pub fn load(path: &std::path::Path) -> Result<Option<Self>, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                format!(
                    "settings file {} is corrupt ({e}): using defaults",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read settings file {}: {e}", path.display())),
        }
    }

    /// Writes settings to `path` atomically: a crash while saving keeps the previous settings.
    pub fn save(&self, path: &std::path::Path) -> crate::Result<()> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let text = serde_json::to_string_pretty(self).expect("settings serialize");
        crate::atomic::write_bytes(path, text.as_bytes())
    }

    /// Moves `path` to the front of the recent list.
    pub fn remember(&mut self, path: PathBuf) {
        self.recent.retain(|p| p != &path);
        self.recent.insert(0, path);
        self.recent.truncate(MAX_RECENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_corrupt_files_are_reported() {
        let dir = std::env::temp_dir().join(format!("moescope-settings-{}", std::process::id()));
        let path = dir.join("settings.json");
        assert_eq!(Settings::load(&path), Ok(None));
        let mut s = Settings::default();
        s.remember(PathBuf::from("/models/a"));
        s.dtype = "bf16".into();
        s.save(&path).unwrap();
        assert_eq!(Settings::load(&path), Ok(Some(s)));
        std::fs::write(&path, "{ not json").unwrap();
        let err = Settings::load(&path).unwrap_err();
        assert!(
            err.contains("corrupt") && err.contains("settings.json"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
