//! File dialogs behind a trait, so tests inject paths and the app never blocks its UI thread:
//! native dialogs run on a named thread and answer through a channel.

use std::path::PathBuf;

/// What the app asks of the desktop.
pub trait FileDialogs: Send + Sync {
    /// A checkpoint folder (or a config.json / .safetensors file inside one).
    fn pick_checkpoint(&self) -> Option<PathBuf>;
    /// A GGUF model file (any part of a split set).
    fn pick_gguf(&self) -> Option<PathBuf>;
    /// A trace JSON file.
    fn pick_trace(&self) -> Option<PathBuf>;
    /// Where to save a file, proposing `default_name`, restricted to `extensions`.
    fn save_file(&self, default_name: &str, extensions: &[&str]) -> Option<PathBuf>;
    /// A folder of `.txt` / `.jsonl` documents for a corpus run.
    fn pick_corpus_data(&self) -> Option<PathBuf>;
}

/// rfd-backed dialogs (the xdg portal on Linux; no system libraries at build time).
pub struct NativeDialogs;

impl FileDialogs for NativeDialogs {
    fn pick_checkpoint(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open checkpoint folder")
            .pick_folder()
    }

    fn pick_gguf(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open GGUF model")
            .add_filter("GGUF", &["gguf"])
            .pick_file()
    }

    fn pick_trace(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open trace")
            .add_filter("trace JSON", &["json"])
            .pick_file()
    }

    fn pick_corpus_data(&self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Corpus folder (.txt and .jsonl documents; subfolders name domains)")
            .pick_folder()
    }

    fn save_file(&self, default_name: &str, extensions: &[&str]) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Save")
            .set_file_name(default_name)
            .add_filter(extensions.join(", "), extensions)
            .save_file()
    }
}

/// Dialogs that answer with fixed paths (tests, scripted runs).
#[derive(Default)]
pub struct FixedDialogs {
    pub checkpoint: Option<PathBuf>,
    pub trace: Option<PathBuf>,
    pub save: Option<PathBuf>,
    pub corpus_data: Option<PathBuf>,
}

impl FileDialogs for FixedDialogs {
    fn pick_checkpoint(&self) -> Option<PathBuf> {
        self.checkpoint.clone()
    }

    fn pick_gguf(&self) -> Option<PathBuf> {
        self.checkpoint.clone()
    }

    fn pick_trace(&self) -> Option<PathBuf> {
        self.trace.clone()
    }

    fn save_file(&self, _default_name: &str, _extensions: &[&str]) -> Option<PathBuf> {
        self.save.clone()
    }

    fn pick_corpus_data(&self) -> Option<PathBuf> {
        self.corpus_data.clone()
    }
}
