//! The desktop app (eframe/egui). The UI thread only draws and sends commands; the model lives on
//! the engine worker thread ([`worker`]). Views are small files under [`views`], each drawing one
//! figure from the latest [`run_data::RunData`].

pub mod app;
pub mod command;
pub mod dialogs;
pub mod generation;
pub mod intervention;
pub mod run_data;
pub mod settings;
pub mod theme;
pub mod views;
pub mod worker;

use std::path::{Path, PathBuf};

/// Sample models bundled with the repository, searched beside the working directory and the
/// source tree (where `cargo run` builds from).
pub fn sample_models_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("sample_models")];
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models");
    if !dirs.contains(&built) {
        dirs.push(built);
    }
    dirs
}

/// Checkpoint folders among the bundled sample models, sorted by name.
pub fn bundled_models() -> Vec<PathBuf> {
    for dir in sample_models_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("config.json").is_file())
            .collect();
        if !found.is_empty() {
            found.sort();
            return found;
        }
    }
    Vec::new()
}

/// The model opened when none is named: deepseek-tiny, else the first bundled model.
pub fn default_model() -> Option<PathBuf> {
    let models = bundled_models();
    models
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "deepseek-tiny"))
        .or(models.first())
        .cloned()
}

/// Opens the main window; returns when it closes.
pub fn run(model: Option<PathBuf>) -> eframe::Result {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("moescope")
            .with_inner_size([1400.0, 900.0])
            .with_min_inner_size([800.0, 500.0])
            .with_drag_and_drop(true),
        // OpenGL (glow) draws this app several times faster than wgpu on software rasterizers
        // (remote desktops, VMs, Xvfb: ~50 vs ~10 frames/s measured), and as fast on real GPUs.
        renderer: eframe::Renderer::Glow,
        ..Default::default()
    };
    eframe::run_native(
        "moescope",
        options,
        Box::new(move |cc| {
            let dialogs: Box<dyn dialogs::FileDialogs> = Box::new(dialogs::NativeDialogs);
            Ok(Box::new(app::MoescopeApp::new(cc, model, dialogs)))
        }),
    )
}
