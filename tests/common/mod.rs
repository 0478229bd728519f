//! Helpers shared by integration tests: fixture discovery and the transformers reference format
//! written by tests/fixtures/make_fixtures.py.

#![allow(dead_code)]

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Runs the moescope binary: (success, stdout, stderr).
pub fn moescope(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moescope"))
        .args(args)
        .output()
        .expect("run moescope");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The bundled sample models (sample_models/).
pub fn sample_models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models")
}

/// Every fixture folder that has a reference.json, sorted by name.
pub fn fixture_dirs() -> Vec<PathBuf> {
    reference_dirs(&fixtures_dir())
}

/// Every folder under `root` that has a reference.json, sorted by name.
pub fn reference_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("reference.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[derive(Deserialize)]
pub struct RefLayer {
    pub layer: usize,
    pub router_logits: Vec<Vec<f32>>,
    pub topk_ids: Vec<Vec<u32>>,
    pub topk_weights: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
pub struct Reference {
    pub name: String,
    pub family: String,
    pub model_type: String,
    pub config_layout: String,
    pub weights_layout: String,
    pub weights_dtype: String,
    pub input_ids: Vec<u32>,
    pub moe_layers: Vec<RefLayer>,
    pub last_logits: Vec<f32>,
    pub aux_loss: Option<f64>,
    pub prompt: Option<String>,
    pub prompt_ids: Option<Vec<u32>>,
    pub prompt_moe_layers: Option<Vec<RefLayer>>,
    pub prompt_last_logits: Option<Vec<f32>>,
}

pub fn reference(dir: &Path) -> Reference {
    let text = std::fs::read_to_string(dir.join("reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("reference.json parses")
}

/// Largest |a - b| over two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
