//! Entry points for the fuzz targets (`fuzz/`, nightly `cargo fuzz`) and for the corpus replay
//! test that runs on stable (`tests/fuzz_corpus.rs`). Each function takes untrusted bytes the way
//! the CLI and the app receive them and drives them through the same boundary the tool uses:
//! errors are the expected outcome, a panic, abort or hang is a bug.
//!
//! Not an API: hidden from the docs and free to change with the targets.

use crate::analysis::{self, AnalysisOptions};
use crate::export::{figure, FigureKind};
use crate::model::checkpoint::Checkpoint;
use crate::model::config::ModelConfig;
use crate::model::host::{self, Layout};
use crate::model::weights::{Quantization, Weights};
use crate::model::{describe, registry};
use crate::trace::Trace;
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};

/// config.json → family → spec → validated spec, then everything `info` derives from it.
pub fn config_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("config.json");
    let Ok(cfg) = ModelConfig::from_json_str(text, path) else {
        return;
    };
    let Ok(family) = registry::lookup(&cfg) else {
        return;
    };
    let Ok(spec) = (family.spec)(&cfg) else {
        return;
    };
    let _ = crate::model::checkpoint::quantization_of(&cfg);
    if spec.validate().is_ok() {
        let _ = describe::describe(&spec);
    }
}

/// The scratch directory of this process and `target`, for targets that must go through real
/// files (weights are memory-mapped): tmpfs where there is one.
pub fn scratch_dir(target: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("moescope-fuzz-{}-{target}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory for fuzzing");
    dir
}

/// Largest matrix the safetensors target multiplies, in elements (keeps executions fast).
const MAX_FUZZ_MATRIX: usize = 1 << 16;

/// One .safetensors file after a byte choosing the quantization config (none, FP8 with a block
/// size from the next two bytes, MXFP4): header parsing, then every tensor read the ways a model
/// reads it — stored tensor, widened tensor, host matrix — and each host matrix multiplied by a
/// few rows, so the dequantizing kernels read every scale the header claims.
pub fn safetensors_file(data: &[u8]) {
    let (quantization, file) = match data {
        [0, rest @ ..] => (Quantization::None, rest),
        [1, a, b, rest @ ..] => (
            Quantization::Fp8 {
                block: [*a as usize + 1, *b as usize + 1],
            },
            rest,
        ),
        [2, rest @ ..] => (Quantization::Mxfp4, rest),
        _ => return,
    };
    let path = scratch_dir("safetensors_file").join("model.safetensors");
    std::fs::write(&path, file).expect("scratch file for fuzzing");
    let Ok(weights) = Weights::open(
        std::slice::from_ref(&path),
        quantization,
        DType::F32,
        &Device::Cpu,
    ) else {
        return;
    };
    let names: Vec<String> = weights.names().map(str::to_owned).collect();
    let _ = weights.size_bytes();
    let _ = weights.device_bytes();
    for name in names {
        let shape = weights.shape_of(&name).expect("listed tensor").to_vec();
        let _ = weights.get_stored(&name, &shape);
        let _ = weights.get(&name, &shape);
        let projection = match (name.strip_suffix("_blocks"), shape.as_slice()) {
            (Some(base), &[experts, out_dim, groups, 16]) => weights.projection(
                base,
                Some(experts),
                out_dim,
                groups.saturating_mul(32),
                Layout::OutIn,
            ),
            (_, &[out_dim, in_dim]) => {
                weights.projection(&name, None, out_dim, in_dim, Layout::OutIn)
            }
            (_, &[experts, in_dim, out_dim]) => {
                weights.projection(&name, Some(experts), out_dim, in_dim, Layout::InOut)
            }
            _ => continue,
        };
        let Ok(projection) = projection else { continue };
        let (n, k) = (projection.out_dim(), projection.in_dim());
        if n.saturating_mul(k) > MAX_FUZZ_MATRIX {
            continue;
        }
        let _ = projection.matrix.to_f32();
        for m in [1, 3] {
            let x = vec![1.0f32; m * k];
            let mut y = vec![0.0f32; m * n];
            host::gemm::matmul(&x, m, &projection, &mut y, n);
        }
    }
}

/// A checkpoint folder whose `model.safetensors.index.json` is `data`: shard lookup must refuse
/// names that leave the folder and shards that are missing.
pub fn safetensors_index(data: &[u8]) {
    let dir = scratch_dir("safetensors_index");
    std::fs::write(dir.join("model.safetensors.index.json"), data).expect("scratch index");
    let _ = crate::model::checkpoint::weight_files(&dir);
}

/// A .gguf file: header, metadata and tensor directory, then what `info` derives from them,
/// every metadata array decoded, each tensor's bytes touched at both ends, the vocabulary rebuilt
/// as a tokenizer and a short text through it; and, where the
/// metadata makes a spec, the weights indexed under the spec's names and each matrix's first and
/// last rows decoded.
pub fn gguf_file(data: &[u8]) {
    use crate::model::gguf::{GgufModel, MetaValue};
    let path = scratch_dir("gguf_file").join("model.gguf");
    std::fs::write(&path, data).expect("scratch file for fuzzing");
    let Ok(model) = GgufModel::open(&path) else {
        return;
    };
    let _ = model.describe();
    let file = model.metadata();
    for (_, value) in &file.metadata {
        if let MetaValue::Array(array) = value {
            let _ = file.array_strings(array);
            let _ = file.array_numbers(array);
        }
    }
    for tensor in &file.tensors {
        let bytes = file.tensor_bytes(tensor);
        assert_eq!(bytes.len() as u64, tensor.size_bytes);
        std::hint::black_box((bytes.first(), bytes.last()));
    }
    if let Ok(Some(rebuilt)) = crate::model::gguf_tokenizer::tokenizer_of(file) {
        if let Ok(encoding) = rebuilt.tokenizer.encode("Hello, 世界 1234!", true) {
            let _ = rebuilt.tokenizer.decode(encoding.get_ids(), false);
        }
    }
    let Ok((_, _, spec)) = crate::model::gguf_spec::spec_of(&model) else {
        return;
    };
    let Ok(weights) = Weights::open_gguf(&model, &spec, DType::F32, &Device::Cpu) else {
        return;
    };
    let names: Vec<String> = weights.names().map(str::to_owned).collect();
    for name in names {
        let shape = weights.shape_of(&name).expect("listed").to_vec();
        if let Ok(m) = weights.host(&name, &shape) {
            let mut row = vec![0f32; m.cols];
            for r in [0, m.rows.saturating_sub(1)] {
                if r < m.rows {
                    m.decode_row(r, 0, &mut row);
                }
            }
        }
    }
}

/// Trace JSON as `stats`, `export` and the app read it: parse and validate, then analyse it and
/// build every figure, which must hold for any trace that validates.
pub fn trace_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(trace) = Trace::parse(text) else {
        return;
    };
    let _ = analysis::analyze(&trace, &AnalysisOptions::default());
    let _ = analysis::routing_flips(&trace, &trace);
    let _ = crate::export::csv::long_format(&trace);
    let _ = figure::build(&trace, &FigureKind::RoutingMap);
    let _ = figure::build(&trace, &FigureKind::LoadHeatmap);
    for moe_layer in 0..trace.moe_layers.len() {
        for probabilities in [false, true] {
            let _ = figure::build(
                &trace,
                &FigureKind::LayerHeatmap {
                    moe_layer,
                    probabilities,
                },
            );
        }
    }
}

/// Prompt text → token ids → display pieces with a real tokenizer (the fixture's): any bytes a
/// user can paste, including invalid UTF-8 (replaced, as the app's text box would).
pub fn tokenize(checkpoint: &Checkpoint, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(ids) = checkpoint.encode(&text) {
        let _ = checkpoint.token_texts(&ids);
    }
}
