//! GGUF headers: moescope's reader against gguf-py's (the library llama.cpp's converter writes
//! with) on the fixtures `tests/fixtures/make_gguf.py` wrote, split sets, and one refusal per rule
//! on files built byte by byte.

mod common;

use common::moescope;
use moescope::model::gguf::{GgufFile, GgufModel, MetaValue};
use serde_json::Value;
use std::path::PathBuf;

fn gguf_dir() -> PathBuf {
    common::fixtures_dir().join("gguf")
}

#[test]
fn header_equals_what_gguf_py_reads() {
    let path = gguf_dir().join("tiny-qwen3moe.gguf");
    let file = GgufFile::open(&path).unwrap();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(gguf_dir().join("tiny-qwen3moe.expected.json")).unwrap(),
    )
    .unwrap();
    let want = expected["metadata"].as_object().unwrap();
    assert_eq!(file.metadata.len(), want.len());
    for (key, value) in &file.metadata {
        let w = &want[key];
        match value {
            MetaValue::Uint(v) => assert_eq!(w.as_u64(), Some(*v), "{key}"),
            MetaValue::Int(v) => assert_eq!(w.as_i64(), Some(*v), "{key}"),
            MetaValue::Float(v) => assert_eq!(w.as_f64(), Some(*v), "{key}"),
            MetaValue::Float32(v) => assert_eq!(w.as_f64(), Some(f64::from(*v)), "{key}"),
            MetaValue::Bool(v) => assert_eq!(w.as_bool(), Some(*v), "{key}"),
            MetaValue::Str(v) => assert_eq!(w.as_str(), Some(v.as_str()), "{key}"),
            MetaValue::Array(a) => {
                assert_eq!(w["array_of"], a.element_name(), "{key}");
                assert_eq!(w["len"], a.len, "{key}");
                if let Some(values) = w.get("values") {
                    let strings = file.array_strings(a).unwrap();
                    let values: Vec<&str> = values
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap())
                        .collect();
                    assert_eq!(strings, values, "{key}");
                } else {
                    assert_eq!(file.array_numbers(a).unwrap().len() as u64, a.len, "{key}");
                }
            }
        }
    }
    let tensors = expected["tensors"].as_array().unwrap();
    assert_eq!(file.tensors.len(), tensors.len());
    for (got, want) in file.tensors.iter().zip(tensors) {
        assert_eq!(want["name"], got.name.as_str());
        assert_eq!(
            want["type"],
            got.ggml_type.to_string().as_str(),
            "{}",
            got.name
        );
        assert_eq!(want["dims"], serde_json::json!(got.dims), "{}", got.name);
        assert_eq!(want["offset"], got.file_offset, "{}", got.name);
        assert_eq!(want["bytes"], got.size_bytes, "{}", got.name);
        assert_eq!(file.tensor_bytes(got).len() as u64, got.size_bytes);
    }
    let scores = match file.get("tokenizer.ggml.scores") {
        Some(MetaValue::Array(a)) => file.array_numbers(a).unwrap(),
        other => panic!("scores: {other:?}"),
    };
    assert_eq!(scores, [0.0, -1.5, -2.0, -3.25, -4.0, 0.5]);
    assert_eq!(file.architecture(), Some("qwen3moe"));
}

#[test]
fn a_split_set_opens_from_any_part_and_holds_every_tensor() {
    let single = GgufModel::open(&gguf_dir().join("tiny-qwen3moe.gguf")).unwrap();
    let mut want: Vec<(String, Vec<u64>)> = single
        .tensors()
        .map(|t| (t.name.clone(), t.dims.clone()))
        .collect();
    want.sort();
    for part in ["split-00001-of-00002.gguf", "split-00002-of-00002.gguf"] {
        let model = GgufModel::open(&gguf_dir().join(part)).unwrap();
        assert_eq!(model.parts.len(), 2);
        assert_eq!(model.metadata().architecture(), Some("qwen3moe"));
        let mut got: Vec<(String, Vec<u64>)> = model
            .tensors()
            .map(|t| (t.name.clone(), t.dims.clone()))
            .collect();
        got.sort();
        assert_eq!(got, want, "{part}");
    }
    let dir = scratch("split-missing");
    std::fs::copy(
        gguf_dir().join("split-00001-of-00002.gguf"),
        dir.join("split-00001-of-00002.gguf"),
    )
    .unwrap();
    let err = GgufModel::open(&dir.join("split-00001-of-00002.gguf"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("split-00002-of-00002.gguf is missing"),
        "{err}"
    );
}

#[test]
fn info_describes_a_gguf_and_a_broken_one_fails_to_trace_by_name() {
    let path = gguf_dir().join("tiny-qwen3moe.gguf");
    let (ok, stdout, stderr) = moescope(&["info", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    for needle in [
        "GGUF v3, 1 file, 7 tensors",
        "qwen3moe (tiny-qwen3moe)",
        "Q4_K_M",
        "Q4_K 1",
        "Q6_K 1",
        "F32 2",
        "expert_count                     8\n",
        "expert_used_count                2\n",
        "attention.layer_norm_rms_epsilon 1e-6\n",
        "gpt2, 6 tokens",
        "runs as                          Qwen3-MoE\n",
    ] {
        assert!(stdout.contains(needle), "{needle} not in:\n{stdout}");
    }
    let (ok, stdout, stderr) = moescope(&["info", path.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["metadata"]["qwen3moe.expert_count"], 8);
    assert_eq!(json["tensors"][3]["type"], "Q4_K");
    assert_eq!(json["family"], "Qwen3-MoE");
    // Its tensors are random bytes in shapes no model has: tracing names the file and a tensor.
    let out = scratch("gguf-trace").join("out.json");
    let (ok, _, stderr) = moescope(&[
        "trace",
        path.to_str().unwrap(),
        "--token-ids",
        "1,2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("tiny-qwen3moe.gguf") && stderr.contains("tensor"),
        "{stderr}"
    );
}

/// Every ggml block type decodes to what gguf-py's reference dequantizer gives for the same
/// bytes (random blocks with finite scales; quant-types.gguf holds both).
#[test]
fn block_types_decode_like_gguf_py() {
    use moescope::model::host::{BlockQuant, Bytes, Format, HostMatrix};
    let model = GgufModel::open(&gguf_dir().join("quant-types.gguf")).unwrap();
    let file = model.metadata();
    let mut checked = Vec::new();
    for t in file.tensors.iter().filter(|t| t.name.starts_with("q.")) {
        let q = BlockQuant::from_ggml_id(t.ggml_type.0).expect("a block type moescope decodes");
        let name = &t.name[2..];
        assert_eq!(q.label(), name);
        let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
        let m = HostMatrix {
            bytes: Bytes::Owned(file.tensor_bytes(t).to_vec().into()),
            format: Format::Block(q),
            rows,
            cols,
        };
        let expected = file
            .tensors
            .iter()
            .find(|e| e.name == format!("expected.{name}"))
            .unwrap();
        let want: Vec<f32> = file
            .tensor_bytes(expected)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let got = m.to_f32();
        let scale = want.iter().fold(1f32, |a, v| a.max(v.abs()));
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-6 * scale,
            "{name}: differs by {worst} (scale {scale})"
        );
        // A middle row on its own, from an offset inside a block, reads the same values.
        let mut part = vec![0f32; 100];
        m.decode_row(1, 37, &mut part);
        assert_eq!(part, got[cols + 37..cols + 137], "{name}: partial row");
        checked.push(name.to_owned());
    }
    assert_eq!(
        checked,
        ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "MXFP4"]
    );
}

/// Quantization's effect on routing: a Q8_0 conversion against its safetensors original, per
/// layer, through the same `stats --compare-model` as any two checkpoints.
#[test]
fn a_quantized_gguf_is_compared_with_its_original() {
    let q8 = gguf_dir().join("models/olmoe-q8_0.gguf");
    let original = common::fixtures_dir().join("olmoe");
    let (ok, stdout, stderr) = moescope(&[
        "stats",
        q8.to_str().unwrap(),
        "--compare-model",
        original.to_str().unwrap(),
        "--token-ids",
        "106,116,115,39,108,10,112,28,49,103,7,20",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("routing flips, ") && stdout.contains("of 12 tokens change experts"),
        "{stdout}"
    );
    assert!(stdout.contains("KL(reference ‖ run)"), "{stdout}");
}

/// `bytes` with the first `from` replaced by `to` (same length), written to a scratch file.
fn patched(case: &str, source: &str, from: &[u8], to: &[u8]) -> PathBuf {
    let mut bytes = std::fs::read(gguf_dir().join("models").join(source)).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern in the file");
    bytes[at..at + to.len()].copy_from_slice(to);
    let path = scratch(case).join(source);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn trace_error(path: &std::path::Path) -> String {
    let out = path.with_extension("trace.json");
    let (ok, _, stderr) = moescope(&[
        "trace",
        path.to_str().unwrap(),
        "--token-ids",
        "1,2,3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok, "{} traced", path.display());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!out.exists());
    stderr
}

/// A model whose tensor is in a type moescope cannot decode is refused naming the tensor and the
/// type; an architecture it does not run is refused naming it and listing those it does; `info`
/// still describes both.
#[test]
fn undecodable_types_and_unknown_architectures_are_refused_by_name() {
    // olmoe-q8_0 keeps its down experts in F16 (rows of 16 are not Q8_0 blocks): make them I16
    // (same bytes per element), a type no weight uses.
    let mut from = b"blk.0.ffn_down_exps.weight".to_vec();
    from.extend(3u32.to_le_bytes());
    for d in [16u64, 32, 16] {
        from.extend(d.to_le_bytes());
    }
    let mut to = from.clone();
    from.extend(1u32.to_le_bytes()); // F16
    to.extend(25u32.to_le_bytes()); // I16
    let path = patched("i16", "olmoe-q8_0.gguf", &from, &to);
    let err = trace_error(&path);
    assert!(
        err.contains("blk.0.ffn_down_exps.weight") && err.contains("I16"),
        "{err}"
    );
    let (ok, stdout, stderr) = moescope(&["info", path.to_str().unwrap()]);
    assert!(ok && stdout.contains("I16 1"), "{stdout}{stderr}");

    let path = patched(
        "arch",
        "olmoe-f32.gguf",
        b"\x05\0\0\0\0\0\0\0olmoe",
        b"\x05\0\0\0\0\0\0\0olmo2",
    );
    let err = trace_error(&path);
    assert!(
        err.contains("'olmo2' GGUF file") && err.contains("qwen3moe"),
        "{err}"
    );
    let (ok, stdout, stderr) = moescope(&["info", path.to_str().unwrap()]);
    assert!(ok && stdout.contains("does not run"), "{stdout}{stderr}");
}

fn scratch(case: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moescope-gguf-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A GGUF file written byte by byte, so each test breaks exactly one field.
struct Builder {
    version: u32,
    kvs: Vec<Vec<u8>>,
    kv_count: Option<u64>,
    tensors: Vec<(String, Vec<u64>, u32, u64)>,
    tensor_count: Option<u64>,
    data_bytes: usize,
}

fn string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend(s.as_bytes());
    out
}

impl Builder {
    /// Two F32 tensors of 32 values, the first at offset 0, the second at 128.
    fn good() -> Self {
        let mut arch = string("general.architecture");
        arch.extend(8u32.to_le_bytes());
        arch.extend(string("qwen3moe"));
        Self {
            version: 3,
            kvs: vec![arch],
            kv_count: None,
            tensors: vec![
                ("a.weight".into(), vec![32], 0, 0),
                ("b.weight".into(), vec![32], 0, 128),
            ],
            tensor_count: None,
            data_bytes: 256,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(
            self.tensor_count
                .unwrap_or(self.tensors.len() as u64)
                .to_le_bytes(),
        );
        out.extend(self.kv_count.unwrap_or(self.kvs.len() as u64).to_le_bytes());
        for kv in &self.kvs {
            out.extend(kv);
        }
        for (name, dims, ggml_type, offset) in &self.tensors {
            out.extend(string(name));
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ggml_type.to_le_bytes());
            out.extend(offset.to_le_bytes());
        }
        out.resize(out.len().div_ceil(32) * 32 + self.data_bytes, 0);
        out
    }
}

fn refused(case: &str, bytes: &[u8], needle: &str) {
    let path = scratch(case).join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    let err = match GgufFile::open(&path) {
        Ok(_) => panic!("{case}: the file opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(needle), "{case}: {err}");
    assert!(err.contains("model.gguf"), "{case}: {err}");
    let (ok, _, stderr) = moescope(&["info", path.to_str().unwrap()]);
    assert!(!ok, "{case}");
    assert_eq!(stderr.trim().lines().count(), 1, "{case}: {stderr}");
    assert!(stderr.contains(needle), "{case}: {stderr}");
}

#[test]
fn every_broken_header_field_is_refused_by_name() {
    let good = Builder::good();
    let path = scratch("good").join("model.gguf");
    std::fs::write(&path, good.bytes()).unwrap();
    assert_eq!(GgufFile::open(&path).unwrap().tensors.len(), 2);

    refused("magic", b"GGML\x03\0\0\0", "does not start with \"GGUF\"");
    let with = |edit: &dyn Fn(&mut Builder)| {
        let mut b = Builder::good();
        edit(&mut b);
        b.bytes()
    };
    refused("v1", &with(&|b| b.version = 1), "GGUF version 1");
    refused(
        "big-endian",
        &with(&|b| b.version = 3u32.swap_bytes()),
        "big-endian",
    );
    refused(
        "kv-count",
        &with(&|b| b.kv_count = Some(u64::MAX)),
        "metadata entries, more than",
    );
    refused(
        "tensor-count",
        &with(&|b| b.tensor_count = Some(1 << 40)),
        "tensors, more than",
    );
    refused(
        "string-length",
        &with(&|b| b.kvs[0][..8].copy_from_slice(&u64::MAX.to_le_bytes())),
        "metadata entry 0",
    );
    refused(
        "value-type",
        &with(&|b| b.kvs[0][28..32].copy_from_slice(&77u32.to_le_bytes())),
        "value type 77",
    );
    refused(
        "array-length",
        &with(&|b| {
            let mut kv = string("x.pattern");
            kv.extend(9u32.to_le_bytes());
            kv.extend(0u32.to_le_bytes());
            kv.extend((1u64 << 50).to_le_bytes());
            b.kvs.push(kv);
        }),
        "does not fit",
    );
    refused(
        "bool",
        &with(&|b| {
            let mut kv = string("x.flag");
            kv.extend(7u32.to_le_bytes());
            kv.push(2);
            b.kvs.push(kv);
        }),
        "boolean byte 2",
    );
    refused(
        "duplicate-key",
        &with(&|b| b.kvs.push(b.kvs[0].clone())),
        "appears twice",
    );
    refused(
        "alignment",
        &with(&|b| {
            let mut kv = string("general.alignment");
            kv.extend(4u32.to_le_bytes());
            kv.extend(24u32.to_le_bytes());
            b.kvs.push(kv);
        }),
        "general.alignment 24 is not a power of two",
    );
    refused(
        "dims",
        &with(&|b| b.tensors[0].1 = vec![32, 1, 1, 1, 1]),
        "5 dimensions",
    );
    refused(
        "overflow",
        &with(&|b| b.tensors[0].1 = vec![1 << 32, 1 << 32, 1 << 32]),
        "too many elements",
    );
    refused(
        "bytes-overflow",
        &with(&|b| b.tensors[0].1 = vec![1 << 31, 1 << 31]),
        "is too large for any file",
    );
    refused(
        "zero-dimension",
        &with(&|b| b.tensors[0].1 = vec![0, 1 << 40]),
        "has a dimension of 1099511627776, more than a",
    );
    refused(
        "unknown-type",
        &with(&|b| b.tensors[0].2 = 31),
        "'a.weight': type 31, which this build does not know",
    );
    refused(
        "block",
        &with(&|b| {
            b.tensors[0].1 = vec![16];
            b.tensors[0].2 = 8;
        }),
        "first dimension 16 is not a multiple of Q8_0's block of 32",
    );
    refused(
        "past-end",
        &with(&|b| b.tensors[1].3 = 1 << 20),
        "end past the file's",
    );
    refused(
        "misaligned",
        &with(&|b| b.tensors[1].3 = 100),
        "not a multiple of the alignment 32",
    );
    refused("overlap", &with(&|b| b.tensors[1].3 = 64), "overlap");
    refused(
        "duplicate-tensor",
        &with(&|b| b.tensors[1].0 = "a.weight".into()),
        "'a.weight' appears twice",
    );
}

/// Every prefix of a real file is refused with an error, never a panic: truncation anywhere.
#[test]
fn every_truncation_of_a_real_header_is_an_error() {
    let bytes = std::fs::read(gguf_dir().join("tiny-qwen3moe.gguf")).unwrap();
    let file = GgufFile::open(&gguf_dir().join("tiny-qwen3moe.gguf")).unwrap();
    let header = file.data_offset as usize;
    let path = scratch("truncated").join("model.gguf");
    for len in (0..header).chain([header + 1, bytes.len() - 1]) {
        std::fs::write(&path, &bytes[..len]).unwrap();
        assert!(GgufFile::open(&path).is_err(), "{len} bytes opened");
    }
}

// Tokenizers rebuilt from GGUF vocabularies give the ids of the model's own tokenizer.
//
// `fixtures/gguf/vocab/` holds vocabulary-only GGUF files from llama.cpp's repository
// (`models/ggml-vocab-*.gguf`, written by its converter from each model's tokenizer) with their
// test texts (`.inp`, separated by `__ggml_vocab_test__` lines) and the ids transformers'
// tokenizer of the original model gives for each (`.out`, `encode(text, add_special_tokens=False)`):
// English, whitespace runs, digits, emoji, Cyrillic, Khmer, Chinese and code.

fn vocab(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf/vocab")
        .join(format!("ggml-vocab-{name}.gguf"))
}

/// (text, reference ids) pairs of a vocabulary's test files.
fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let path = vocab(name);
    let inputs = std::fs::read_to_string(path.with_extension("gguf.inp")).unwrap();
    let outputs = std::fs::read_to_string(path.with_extension("gguf.out")).unwrap();
    let texts: Vec<&str> = inputs.split("\n__ggml_vocab_test__\n").collect();
    let ids: Vec<Vec<u32>> = outputs
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    // The file ends with a separator, so the last split is empty.
    assert_eq!(texts.last(), Some(&""));
    assert_eq!(
        texts.len() - 1,
        ids.len(),
        "{name}: texts and ids do not pair up"
    );
    texts.into_iter().map(str::to_owned).zip(ids).collect()
}

/// Every test text of `name` encodes (without BOS/EOS, as the reference) to the reference ids.
fn check(name: &str, kind: &str) {
    let file = GgufFile::open(&vocab(name)).unwrap();
    let rebuilt = moescope::model::gguf_tokenizer::tokenizer_of(&file)
        .unwrap()
        .expect("the file has a vocabulary");
    assert!(
        rebuilt.description.starts_with(kind),
        "{}",
        rebuilt.description
    );
    let mut wrong = Vec::new();
    let cases = cases(name);
    for (text, expected) in &cases {
        let got = rebuilt.tokenizer.encode(text.as_str(), false).unwrap();
        if got.get_ids() != expected.as_slice() {
            wrong.push(format!(
                "{text:?}\n  expected {expected:?}\n  got      {:?}",
                got.get_ids()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{name}: {} of {} texts differ:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn sentencepiece_vocabulary_gives_the_llama_tokenizers_ids() {
    // Llama-2's vocabulary, which Mixtral uses.
    check("llama-spm", "llama SentencePiece BPE");
}

#[test]
fn byte_level_vocabulary_gives_gpt2s_ids() {
    check("gpt-2", "gpt2 byte-level BPE, pre-tokenizer gpt-2");
}

#[test]
fn qwen2_vocabulary_gives_qwens_ids() {
    // Qwen2-MoE's and Qwen3-MoE's vocabulary: digits split one by one, Chinese, code.
    check("qwen2", "gpt2 byte-level BPE, pre-tokenizer qwen2");
}

#[test]
fn bos_is_added_where_the_model_adds_it_and_pieces_decode() {
    let file = GgufFile::open(&vocab("llama-spm")).unwrap();
    let tokenizer = moescope::model::gguf_tokenizer::tokenizer_of(&file)
        .unwrap()
        .unwrap()
        .tokenizer;
    // Llama adds BOS (id 1); the reference ids of "Hello world" are 15043 3186.
    let ids = tokenizer.encode("Hello world", true).unwrap();
    assert_eq!(ids.get_ids(), [1, 15043, 3186]);
    assert_eq!(
        tokenizer.decode(&[15043, 3186], true).unwrap(),
        "Hello world"
    );
    // Control pieces in the text are matched as themselves, not spelled out.
    let ids = tokenizer.encode("</s>", false).unwrap();
    assert_eq!(ids.get_ids(), [2]);

    let file = GgufFile::open(&vocab("qwen2")).unwrap();
    let tokenizer = moescope::model::gguf_tokenizer::tokenizer_of(&file)
        .unwrap()
        .unwrap()
        .tokenizer;
    // Qwen adds nothing.
    let ids = tokenizer.encode("Hello world", true).unwrap();
    assert_eq!(ids.get_ids(), [9707, 1879]);
    assert_eq!(
        tokenizer.decode(&[9707, 1879], true).unwrap(),
        "Hello world"
    );
    let ids = tokenizer.encode("<|im_start|>user", false).unwrap();
    assert_eq!(ids.get_ids()[0], 151644);
    // Qwen's tokenizer.json composes characters first (NFC): a decomposed é is the composed one.
    let composed = tokenizer.encode("caf\u{e9}", false).unwrap();
    let decomposed = tokenizer.encode("cafe\u{301}", false).unwrap();
    assert_eq!(composed.get_ids(), decomposed.get_ids());
}

#[test]
fn a_gguf_with_a_vocabulary_takes_a_text_prompt() {
    // The mixtral conversions carry make_gguf_models.py's 128-piece SentencePiece vocabulary
    // (`▁Hello` is piece 40, `▁world` 45); no tokenizer.json lies beside them.
    let path = gguf_dir().join("models/mixtral-q8_0.gguf");
    let checkpoint = moescope::model::checkpoint::Checkpoint::open(&path).unwrap();
    assert_eq!(
        checkpoint.tokenizer_note,
        "from the file's vocabulary: llama SentencePiece BPE, 128 pieces"
    );
    assert_eq!(checkpoint.tokenizer_path.as_deref(), Some(path.as_path()));
    let ids = checkpoint.encode("Hello world").unwrap();
    assert_eq!(ids, [1, 40, 45]);
    assert_eq!(checkpoint.token_texts(&ids)[1..], ["Hello", "world"]);
    let out = scratch("gguf-prompt").join("trace.json");
    let (ok, _, stderr) = moescope(&[
        "trace",
        path.to_str().unwrap(),
        "--prompt",
        "Hello world",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let trace: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    let tokens: Vec<u64> = trace["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(tokens, [1, 40, 45]);

    // A vocabulary moescope cannot rebuild (no merges) leaves the file runnable by token ids and
    // says why a prompt is refused.
    let path = gguf_dir().join("tiny-qwen3moe.gguf");
    let (ok, stdout, stderr) = moescope(&["info", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("tokenizer.ggml.merges is missing"),
        "{stdout}"
    );
}

#[test]
fn rebuilt_kv_b_reads_the_same_after_every_copy() {
    // kv_b_proj of a deepseek2 file is rebuilt into an anonymous mapping (three layers of 5 KB:
    // they share pages). Copying one out (what a GPU load does) must not drop pages the next one
    // still needs: an anonymous page dropped reads back as zeros.
    use candle_core::{DType, Device};
    let path = gguf_dir().join("models/deepseek-v2-f32.gguf");
    let checkpoint = moescope::model::checkpoint::Checkpoint::open(&path).unwrap();
    let weights = checkpoint.weights(DType::F32, &Device::Cpu).unwrap();
    let shape = [4 * (8 + 12), 16];
    for layer in 0..3 {
        let name = format!("model.layers.{layer}.self_attn.kv_b_proj.weight");
        let copied: Vec<f32> = weights
            .get_as(&name, &shape, DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mapped = weights.host(&name, &shape).unwrap().to_f32();
        assert!(
            copied == mapped,
            "layer {layer}: the copy differs from the mapping"
        );
        assert!(
            copied.iter().any(|&v| v != 0.0),
            "layer {layer} is all zeros"
        );
    }
}

#[test]
fn a_tensor_the_spec_needs_and_the_file_lacks_is_named_with_the_blocks_own() {
    // olmoe-q8_0.gguf without blk.1.ffn_gate_inp.weight (make_gguf_models.py).
    let stderr = trace_error(&gguf_dir().join("broken/olmoe-no-router.gguf"));
    for needle in [
        "'model.layers.1.mlp.gate.weight'",
        "none of block 1's tensors",
        "olmoe-no-router.gguf",
        "blk.1 has attn_norm.weight, ffn_down_exps.weight",
    ] {
        assert!(stderr.contains(needle), "{needle} not in {stderr}");
    }
}
