//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`, minimized after the fuzzing runs
//! the README lists) through the same entry points the nightly fuzz targets call, so every input
//! that once reached new code — including each crash found and fixed — keeps passing on stable.

use moescope::fuzzing;
use moescope::model::checkpoint::Checkpoint;
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).expect("corpus file");
            (path, data)
        })
        .collect()
}

/// Runs `entry` on every input of `target`, naming the input that panics.
fn replay(target: &str, entry: impl Fn(&[u8])) {
    for (path, data) in corpus(target) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entry(&data)));
        assert!(outcome.is_ok(), "{target}: {} panicked", path.display());
    }
    let _ = std::fs::remove_dir_all(fuzzing::scratch_dir(target));
}

#[test]
fn config_json_corpus() {
    replay("config_json", fuzzing::config_json);
}

#[test]
fn safetensors_file_corpus() {
    replay("safetensors_file", fuzzing::safetensors_file);
}

#[test]
fn safetensors_index_corpus() {
    replay("safetensors_index", fuzzing::safetensors_index);
}

#[test]
fn gguf_file_corpus() {
    replay("gguf_file", fuzzing::gguf_file);
}

#[test]
fn trace_json_corpus() {
    replay("trace_json", fuzzing::trace_json);
}

#[test]
fn tokenize_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mixtral");
    let checkpoint = Checkpoint::open(&dir).expect("the Mixtral fixture opens");
    replay("tokenize", |data| fuzzing::tokenize(&checkpoint, data));
}
