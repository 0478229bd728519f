//! Opening a checkpoint: a Hugging Face folder (or its config.json, or one of its .safetensors
//! files), or a GGUF file → config, family, weight files and optional tokenizer. Weights are not
//! read here; the engine maps them in the dtype and on the device it runs with.

use super::config::ModelConfig;
use super::gguf::{is_gguf_path, GgufModel};
use super::gguf_spec;
use super::gguf_tokenizer;
use super::registry::{self, Family};
use super::spec::ModelSpec;
use super::weights::{Quantization, Weights};
use crate::error::{Error, Result};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest prompt text tokenized, in bytes: 1 MiB is ~250 k tokens of English, well past the
/// engine's token cap, so no prompt that could run is refused.
pub const MAX_PROMPT_BYTES: usize = 1 << 20;

/// Extensions of pickle-based checkpoints, which can run code when loaded: never opened.
const PICKLE_EXTENSIONS: &[&str] = &["bin", "pt", "pth", "ckpt", "pkl"];

pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub family: &'static Family,
    pub spec: ModelSpec,
    pub weight_files: Vec<PathBuf>,
    /// config.json's `quantization_config`, checked when the checkpoint opens.
    pub quantization: Quantization,
    pub tokenizer: Option<tokenizers::Tokenizer>,
    /// The tokenizer.json, or the .gguf whose vocabulary became the tokenizer.
    pub tokenizer_path: Option<PathBuf>,
    /// What the tokenizer is ("tokenizer.json", "gpt2 byte-level BPE, …") or, without one, why
    /// not: `info` prints it and a prompt without a tokenizer is refused with it.
    pub tokenizer_note: String,
    /// The GGUF model when the checkpoint is a .gguf file (or split set); `weight_files` are then
    /// its parts.
    pub gguf: Option<Arc<GgufModel>>,
}

impl Checkpoint {
    pub fn open(path: &Path) -> Result<Self> {
        if is_gguf_path(path) && path.is_file() {
            return Self::open_gguf(path);
        }
        let dir = checkpoint_dir(path)?;
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(Error::Io {
                path: config_path,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "config.json not found"),
            });
        }
        let config = ModelConfig::from_file(&config_path)?;
        let family = registry::lookup(&config)?;
        let spec = (family.spec)(&config)?;
        // The spec is checked once here, so no kernel sees an index or size it cannot use.
        spec.validate().map_err(|problem| config.bad(problem))?;
        let quantization = quantization_of(&config)?;
        let weight_files = weight_files(&dir)?;
        let (tokenizer, tokenizer_path) = tokenizer_in(&dir)?;
        let tokenizer_note = match tokenizer {
            Some(_) => "tokenizer.json".into(),
            None => {
                "no tokenizer.json in this checkpoint: give token ids instead of a prompt".into()
            }
        };
        Ok(Self {
            dir,
            config,
            family,
            spec,
            weight_files,
            quantization,
            tokenizer,
            tokenizer_path,
            tokenizer_note,
            gguf: None,
        })
    }

    /// A .gguf file (the first part of a split set, or any part): its metadata becomes the
    /// config and spec ([`super::gguf_spec`]); a tokenizer.json beside the file wins over the
    /// vocabulary the file carries ([`super::gguf_tokenizer`]).
    fn open_gguf(path: &Path) -> Result<Self> {
        let model = GgufModel::open(path)?;
        let (family, config, spec) = gguf_spec::spec_of(&model)?;
        let dir = path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        let (tokenizer, tokenizer_path, tokenizer_note) = gguf_tokenizer_of(&model, &dir)?;
        Ok(Self {
            weight_files: model.parts.iter().map(|p| p.path.clone()).collect(),
            dir,
            config,
            family,
            spec,
            quantization: Quantization::None,
            tokenizer,
            tokenizer_path,
            tokenizer_note,
            gguf: Some(Arc::new(model)),
        })
    }

    /// Maps the weights for compute in `dtype` on `device`.
    pub fn weights(&self, dtype: DType, device: &Device) -> Result<Weights> {
        match &self.gguf {
            Some(model) => Weights::open_gguf(model, &self.spec, dtype, device),
            None => Weights::open(&self.weight_files, self.quantization.clone(), dtype, device),
        }
    }

    /// Turns text into the ids the model sees (special tokens such as BOS included). Text over
    /// [`MAX_PROMPT_BYTES`] is refused before tokenizing: it could not run anyway (the engine caps
    /// tokens) and tokenizing it would stall the caller.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, true)
    }

    /// Tokenizes `text`, adding the tokenizer's special tokens (BOS) or not: a rendered chat
    /// template already holds them, and transformers tokenizes it without adding them again.
    pub fn encode_with(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let (Some(tok), Some(path)) = (&self.tokenizer, &self.tokenizer_path) else {
            let path = match &self.gguf {
                Some(model) => model.metadata().path.clone(),
                None => self.dir.join("tokenizer.json"),
            };
            return Err(Error::Tokenizer {
                path,
                problem: self.tokenizer_note.clone(),
            });
        };
        if text.len() > MAX_PROMPT_BYTES {
            return Err(Error::PromptTooLong {
                bytes: text.len(),
                limit: MAX_PROMPT_BYTES,
            });
        }
        let encoding = tok
            .encode(text, add_special_tokens)
            .map_err(|e| Error::Tokenizer {
                path: path.clone(),
                problem: e.to_string(),
            })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The checkpoint's chat template (see [`super::chat_template`]), if it has one.
    pub fn chat_template(&self) -> Result<Option<super::chat_template::ChatTemplate>> {
        let Some(model) = &self.gguf else {
            return super::chat_template::ChatTemplate::from_dir(&self.dir);
        };
        let meta = model.metadata();
        let Some(source) = meta.get("tokenizer.chat_template").and_then(|v| v.as_str()) else {
            return Ok(None);
        };
        let piece = |key: &str| {
            let id = meta.get(key)?.as_u64()?;
            self.tokenizer
                .as_ref()?
                .id_to_token(u32::try_from(id).ok()?)
        };
        Ok(Some(super::chat_template::ChatTemplate {
            source: source.to_owned(),
            path: meta.path.clone(),
            bos_token: piece("tokenizer.ggml.bos_token_id"),
            eos_token: piece("tokenizer.ggml.eos_token_id"),
            unk_token: piece("tokenizer.ggml.unknown_token_id"),
            pad_token: piece("tokenizer.ggml.padding_token_id"),
        }))
    }

    /// Text of `ids` as the tokenizer decodes them (special tokens left out), when there is a
    /// tokenizer: what a generated continuation reads as.
    pub fn decode(&self, ids: &[u32]) -> Option<String> {
        self.tokenizer.as_ref()?.decode(ids, true).ok()
    }

    /// Token ids that end generation, as transformers' `generate` takes them: `eos_token_id` of
    /// generation_config.json (a number or a list), else of config.json; for a GGUF file its
    /// `tokenizer.ggml.eos_token_id` and `eot_token_id`. Empty when the checkpoint names none.
    pub fn stop_token_ids(&self) -> Result<Vec<u32>> {
        if let Some(model) = &self.gguf {
            let meta = model.metadata();
            let mut ids: Vec<u32> = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
                .iter()
                .filter_map(|key| meta.get(key)?.as_u64())
                .filter_map(|id| u32::try_from(id).ok())
                .collect();
            ids.dedup();
            return Ok(ids);
        }
        for name in ["generation_config.json", "config.json"] {
            let path = self.dir.join(name);
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let bad = |problem: String| Error::BadConfig {
                path: path.clone(),
                problem,
            };
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
            let as_id = |v: &serde_json::Value| {
                v.as_u64()
                    .and_then(|id| u32::try_from(id).ok())
                    .ok_or_else(|| bad(format!("eos_token_id holds {v}, not a token id")))
            };
            match value.get("eos_token_id") {
                None | Some(serde_json::Value::Null) => continue,
                Some(serde_json::Value::Array(list)) => {
                    return list.iter().map(as_id).collect();
                }
                Some(one) => return Ok(vec![as_id(one)?]),
            }
        }
        Ok(Vec::new())
    }

    /// Display text of each token: its decoded piece; a piece that is only part of a UTF-8
    /// character (byte-level BPE splits CJK characters) is shown as its bytes, `‹e6 95›`, rather
    /// than as U+FFFD; `#id` without a tokenizer.
    pub fn token_texts(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&id| match &self.tokenizer {
                Some(tok) => {
                    let decoded = tok.decode(&[id], false).ok().filter(|s| !s.is_empty());
                    match decoded {
                        Some(text) if !text.contains('\u{FFFD}') => text,
                        _ => tok
                            .id_to_token(id)
                            .map(|piece| byte_level_display(&piece))
                            .unwrap_or_else(|| format!("#{id}")),
                    }
                }
                None => format!("#{id}"),
            })
            .collect()
    }
}

/// A GGUF model's tokenizer: a tokenizer.json in `dir` wins over the vocabulary the file carries;
/// the note says which one it is, or why there is none (an unreadable tokenizer.json is an
/// error; a vocabulary that cannot be rebuilt is not, as token ids still run).
pub fn gguf_tokenizer_of(
    model: &GgufModel,
    dir: &Path,
) -> Result<(Option<tokenizers::Tokenizer>, Option<PathBuf>, String)> {
    let (mut tokenizer, mut tokenizer_path) = tokenizer_in(dir)?;
    let tokenizer_note = if tokenizer.is_some() {
        "tokenizer.json beside the file (it wins over the file's vocabulary)".to_owned()
    } else {
        let first = model.metadata();
        match gguf_tokenizer::tokenizer_of(first) {
            Ok(Some(rebuilt)) => {
                tokenizer = Some(rebuilt.tokenizer);
                tokenizer_path = Some(first.path.clone());
                format!("from the file's vocabulary: {}", rebuilt.description)
            }
            Ok(None) => "the file carries no vocabulary and no tokenizer.json is beside it: \
                         give token ids instead of a prompt"
                .to_owned(),
            Err(Error::GgufVocabulary { problem, .. }) => {
                format!("the vocabulary cannot be rebuilt: {problem}")
            }
            Err(other) => other.to_string(),
        }
    };
    Ok((tokenizer, tokenizer_path, tokenizer_note))
}

/// `dir/tokenizer.json`, when there is one.
fn tokenizer_in(dir: &Path) -> Result<(Option<tokenizers::Tokenizer>, Option<PathBuf>)> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Ok((None, None));
    }
    let tokenizer = tokenizers::Tokenizer::from_file(&path).map_err(|e| Error::Tokenizer {
        path: path.clone(),
        problem: e.to_string(),
    })?;
    Ok((Some(tokenizer), Some(path)))
}

/// A name without directory parts, safe to join onto the checkpoint folder.
fn is_plain_file_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    ) && !name.contains('\\')
}

/// GPT-2 byte-level BPE maps each byte to a printable character; undo that and show the bytes.
/// Pieces that are not byte-level strings are returned unchanged.
fn byte_level_display(piece: &str) -> String {
    let byte_of = |c: char| -> Option<u8> {
        let c = c as u32;
        match c {
            0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => Some(c as u8),
            0x100..=0x143 => {
                // The 68 unprintable bytes, in order, were mapped to U+0100.. .
                let unprintable = (0u8..=0x20).chain(0x7F..=0xA0).chain(std::iter::once(0xAD));
                unprintable.into_iter().nth((c - 0x100) as usize)
            }
            _ => None,
        }
    };
    let bytes: Option<Vec<u8>> = piece.chars().map(byte_of).collect();
    match bytes {
        Some(bytes) => match std::str::from_utf8(&bytes) {
            Ok(text) => text.to_owned(),
            Err(_) => format!(
                "‹{}›",
                bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        },
        None => piece.to_owned(),
    }
}

/// config.json's `quantization_config`: FP8 (e4m3, block-scaled) and MXFP4 open; any other
/// method is refused by name rather than computed wrong.
pub fn quantization_of(cfg: &ModelConfig) -> Result<Quantization> {
    let Some(q) = cfg.sub("quantization_config")? else {
        return Ok(Quantization::None);
    };
    let method = q.opt_str("quant_method")?.unwrap_or_default();
    match method.as_str() {
        "fp8" => {
            if let Some(fmt) = q.opt_str("fmt")? {
                if fmt != "e4m3" {
                    return Err(q.bad(format!(
                        "'{}' = '{fmt}' is not supported (FP8 checkpoints open in e4m3)",
                        q.field("fmt")
                    )));
                }
            }
            let block = q.usize_list("weight_block_size")?;
            let block = match block.as_slice() {
                [] => [128, 128],
                [r, c] if *r > 0 && *c > 0 => [*r, *c],
                _ => {
                    return Err(q.bad(format!(
                        "'{}' must be two positive integers",
                        q.field("weight_block_size")
                    )))
                }
            };
            Ok(Quantization::Fp8 { block })
        }
        "mxfp4" => Ok(Quantization::Mxfp4),
        other => Err(q.bad(format!(
            "'{}' = '{other}' is not supported (supported: fp8, mxfp4; unquantized checkpoints need no quantization_config)",
            q.field("quant_method")
        ))),
    }
}

fn is_pickle(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| PICKLE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The checkpoint folder for a folder, a config.json or a .safetensors path.
fn checkpoint_dir(path: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    if meta.is_dir() {
        return Ok(path.to_owned());
    }
    if is_pickle(path) {
        return Err(Error::PickleRefused {
            path: path.to_owned(),
        });
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match (path.file_name().and_then(|n| n.to_str()), ext) {
        (Some("config.json"), _)
        | (_, "safetensors")
        | (Some("model.safetensors.index.json"), _) => Ok(path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."))),
        _ => Err(Error::BadConfig {
            path: path.to_owned(),
            problem: "expected a checkpoint folder, its config.json or a .safetensors file".into(),
        }),
    }
}

/// Safetensors files of the checkpoint in `dir`: the index's shards, `model.safetensors`, or every
/// `*.safetensors`. Pickle-only folders are refused by name.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|source| Error::Io {
            path: index.clone(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::CorruptWeights {
                path: index.clone(),
                problem: format!("invalid JSON ({e})"),
            })?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::CorruptWeights {
                path: index.clone(),
                problem: "no 'weight_map' object".into(),
            })?;
        let mut files: Vec<PathBuf> = Vec::new();
        for shard in map.values() {
            let name = shard.as_str().ok_or_else(|| Error::CorruptWeights {
                path: index.clone(),
                problem: "'weight_map' values must be file names".into(),
            })?;
            // Shards live beside the index: a name with a directory part (`../x`, `/etc/x`)
            // would read a file the user never chose.
            if !is_plain_file_name(name) {
                return Err(Error::CorruptWeights {
                    path: index.clone(),
                    problem: format!(
                        "shard name '{}' is not a file name in this folder",
                        name.escape_debug()
                    ),
                });
            }
            let file = dir.join(name);
            if !files.contains(&file) {
                files.push(file);
            }
        }
        files.sort();
        for file in &files {
            if !file.is_file() {
                return Err(Error::Io {
                    path: file.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "shard listed in model.safetensors.index.json is missing",
                    ),
                });
            }
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut safetensors = Vec::new();
    let mut pickle = None;
    for entry in entries.flatten() {
        let p = entry.path();
        if p.extension().and_then(|e| e.to_str()) == Some("safetensors") {
            safetensors.push(p);
        } else if is_pickle(&p) {
            pickle = Some(p);
        }
    }
    safetensors.sort();
    match (safetensors.is_empty(), pickle) {
        (false, _) => Ok(safetensors),
        (true, Some(p)) => Err(Error::PickleRefused { path: p }),
        (true, None) => Err(Error::NoWeights {
            path: dir.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_level_pieces_show_their_bytes() {
        // "敏" is e6 95 8f; GPT-2's byte map turns e6 → 'æ', 95 → 'ķ' (0x95 is unprintable).
        assert_eq!(super::byte_level_display("æķ"), "‹e6 95›");
        assert_eq!(super::byte_level_display("Ġquick"), " quick");
        assert_eq!(super::byte_level_display("plain"), "plain");
    }
}
