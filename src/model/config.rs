//! config.json, read once into one normalized [`ModelConfig`] whatever its layout.
//!
//! Two layouts are common in the wild and both must work:
//! - transformers 4 (most hub checkpoints): `rope_theta` + `rope_scaling`, `torch_dtype`;
//! - transformers 5: `rope_parameters` (holding `rope_theta` and the scaling), `dtype`.
//!
//! Families also rename fields across versions (`num_experts`, `num_local_experts`,
//! `n_routed_experts`). Rather than one serde struct per family and version, every field is looked up
//! under each of its known names here, so family files see one vocabulary.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Rotary position embedding variant with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    Default,
    /// Positions divided by `factor`.
    Linear { factor: f64 },
    /// YaRN (Peng et al. 2023) as transformers' `_compute_yarn_parameters` implements it.
    Yarn {
        factor: f64,
        original_max_position_embeddings: usize,
        beta_fast: f64,
        beta_slow: f64,
        mscale: Option<f64>,
        mscale_all_dim: Option<f64>,
        attention_factor: Option<f64>,
        truncate: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    pub scaling: RopeScaling,
}

/// Storage dtype declared by the checkpoint (informational: tensors carry their own dtype).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeclaredDtype {
    F32,
    Bf16,
    F16,
}

/// Every config.json field any supported family reads, under one name each.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub path: PathBuf,
    pub raw: Map<String, Value>,
    pub architecture: Option<String>,
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub rope: RopeConfig,
    pub tie_word_embeddings: bool,
    pub sliding_window: Option<usize>,
    pub dtype: Option<DeclaredDtype>,
}

impl ModelConfig {
    /// Reads and normalizes `path` (a config.json).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json_str(&text, path)
    }

    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::BadConfig {
            path: path.to_owned(),
            problem: format!("invalid JSON ({e})"),
        })?;
        let Value::Object(raw) = value else {
            return Err(Error::BadConfig {
                path: path.to_owned(),
                problem: "top level is not a JSON object".into(),
            });
        };
        let r = Reader { raw: &raw, path };
        let num_attention_heads = r.usize("num_attention_heads")?;
        let rope = r.rope()?;
        let cfg = ModelConfig {
            architecture: r
                .opt_value("architectures")
                .and_then(|v| v.as_array()?.first()?.as_str().map(str::to_owned)),
            model_type: r.opt_str("model_type")?,
            vocab_size: r.usize("vocab_size")?,
            hidden_size: r.usize("hidden_size")?,
            intermediate_size: r.opt_usize("intermediate_size")?.unwrap_or(0),
            num_hidden_layers: r.usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads: r
                .opt_usize("num_key_value_heads")?
                .unwrap_or(num_attention_heads),
            head_dim: r.opt_usize("head_dim")?,
            rms_norm_eps: r.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            max_position_embeddings: r.opt_usize("max_position_embeddings")?.unwrap_or(4096),
            rope,
            tie_word_embeddings: r.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            // Qwen configs write `sliding_window: 0` when windows are off.
            sliding_window: r.opt_usize("sliding_window")?.filter(|w| *w > 0),
            dtype: r.dtype()?,
            path: path.to_owned(),
            raw: raw.clone(),
        };
        if cfg.hidden_size == 0 || cfg.num_attention_heads == 0 || cfg.vocab_size == 0 {
            return Err(cfg.bad("hidden_size, num_attention_heads and vocab_size must be positive"));
        }
        if !cfg
            .num_attention_heads
            .is_multiple_of(cfg.num_key_value_heads.max(1))
        {
            return Err(cfg.bad(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                cfg.num_attention_heads, cfg.num_key_value_heads
            )));
        }
        Ok(cfg)
    }

    /// Head dimension: explicit `head_dim` when present (Qwen3 sets it ≠ hidden/heads).
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// A `BadConfig` error for this file.
    pub fn bad(&self, problem: impl Into<String>) -> Error {
        Error::BadConfig {
            path: self.path.clone(),
            problem: problem.into(),
        }
    }

    fn reader(&self) -> Reader<'_> {
        Reader {
            raw: &self.raw,
            path: &self.path,
        }
    }

    /// A required positive integer field, looked up under each of `names` in turn.
    pub fn usize_any(&self, names: &[&str]) -> Result<usize> {
        self.opt_usize_any(names)?
            .ok_or_else(|| self.bad(format!("missing field '{}'", names.join("' or '"))))
    }

    pub fn opt_usize_any(&self, names: &[&str]) -> Result<Option<usize>> {
        let r = self.reader();
        for name in names {
            if let Some(v) = r.opt_usize(name)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    pub fn opt_usize(&self, name: &str) -> Result<Option<usize>> {
        self.reader().opt_usize(name)
    }

    pub fn opt_f64(&self, name: &str) -> Result<Option<f64>> {
        self.reader().opt_f64(name)
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>> {
        self.reader().opt_bool(name)
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<String>> {
        self.reader().opt_str(name)
    }

    /// A list of integers (`mlp_only_layers`); missing or null reads as empty.
    pub fn usize_list(&self, name: &str) -> Result<Vec<usize>> {
        match self.raw.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .map(|n| n as usize)
                        .ok_or_else(|| self.bad(format!("'{name}' must be a list of integers")))
                })
                .collect(),
            Some(_) => Err(self.bad(format!("'{name}' must be a list of integers"))),
        }
    }
}

/// Typed lookups over the raw JSON object that name the field in their errors.
struct Reader<'a> {
    raw: &'a Map<String, Value>,
    path: &'a Path,
}

impl Reader<'_> {
    fn bad(&self, problem: String) -> Error {
        Error::BadConfig {
            path: self.path.to_owned(),
            problem,
        }
    }

    fn opt_value(&self, name: &str) -> Option<&Value> {
        self.raw.get(name).filter(|v| !v.is_null())
    }

    fn usize(&self, name: &str) -> Result<usize> {
        self.opt_usize(name)?
            .ok_or_else(|| self.bad(format!("missing field '{name}'")))
    }

    fn opt_usize(&self, name: &str) -> Result<Option<usize>> {
        match self.opt_value(name) {
            None => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                self.bad(format!(
                    "'{name}' must be a non-negative integer, found {v}"
                ))
            }),
        }
    }

    fn opt_f64(&self, name: &str) -> Result<Option<f64>> {
        match self.opt_value(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(format!("'{name}' must be a number, found {v}"))),
        }
    }

    fn opt_bool(&self, name: &str) -> Result<Option<bool>> {
        match self.opt_value(name) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.bad(format!("'{name}' must be true or false, found {v}"))),
        }
    }

    fn opt_str(&self, name: &str) -> Result<Option<String>> {
        match self.opt_value(name) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| self.bad(format!("'{name}' must be a string, found {v}"))),
        }
    }

    fn dtype(&self) -> Result<Option<DeclaredDtype>> {
        let name = match self.opt_str("dtype")? {
            Some(s) => Some(s),
            None => self.opt_str("torch_dtype")?,
        };
        Ok(match name.as_deref() {
            None => None,
            Some("float32") | Some("float") => Some(DeclaredDtype::F32),
            Some("bfloat16") => Some(DeclaredDtype::Bf16),
            Some("float16") | Some("half") => Some(DeclaredDtype::F16),
            Some(other) => return Err(self.bad(format!("unsupported dtype '{other}'"))),
        })
    }

    /// Rope settings from either `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling`.
    fn rope(&self) -> Result<RopeConfig> {
        let params = match self.opt_value("rope_parameters") {
            Some(Value::Object(m)) => Some(m),
            Some(v) => {
                return Err(self.bad(format!("'rope_parameters' must be an object, found {v}")))
            }
            None => None,
        };
        let scaling = match self.opt_value("rope_scaling") {
            Some(Value::Object(m)) => Some(m),
            Some(v) => return Err(self.bad(format!("'rope_scaling' must be an object, found {v}"))),
            None => None,
        };
        let theta = params
            .and_then(|m| m.get("rope_theta"))
            .and_then(Value::as_f64)
            .or(self.opt_f64("rope_theta")?)
            .unwrap_or(10_000.0);
        // transformers 5 folds the scaling into rope_parameters; 4 keeps a separate rope_scaling.
        let Some(s) = scaling.or(params) else {
            return Ok(RopeConfig {
                theta,
                scaling: RopeScaling::Default,
            });
        };
        let kind = s
            .get("rope_type")
            .or_else(|| s.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let num = |k: &str| s.get(k).and_then(Value::as_f64);
        let factor = || {
            num("factor").ok_or_else(|| self.bad(format!("rope scaling '{kind}' needs a 'factor'")))
        };
        let scaling = match kind {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear { factor: factor()? },
            "yarn" => RopeScaling::Yarn {
                // Without `factor`, transformers derives it as max_position / original_max_position.
                factor: num("factor").unwrap_or(0.0),
                original_max_position_embeddings: num("original_max_position_embeddings")
                    .map(|v| v as usize)
                    .or(self.opt_usize("max_position_embeddings")?)
                    .ok_or_else(|| {
                        self.bad("yarn rope needs 'original_max_position_embeddings'".into())
                    })?,
                beta_fast: num("beta_fast").unwrap_or(32.0),
                beta_slow: num("beta_slow").unwrap_or(1.0),
                mscale: num("mscale"),
                mscale_all_dim: num("mscale_all_dim"),
                attention_factor: num("attention_factor"),
                truncate: s.get("truncate").and_then(Value::as_bool).unwrap_or(true),
            },
            other => {
                return Err(self.bad(format!(
                    "rope type '{other}' is not supported (supported: default, linear, yarn)"
                )))
            }
        };
        Ok(RopeConfig { theta, scaling })
    }
}
