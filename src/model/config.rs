//! config.json, read once into a [`ModelConfig`]: the raw JSON object with typed lookups whose
//! errors name the file and the field, plus the handful of fields every family shares.
//!
//! Layouts differ and all must work:
//! - transformers 4 (most hub checkpoints): `rope_theta` + `rope_scaling`, `torch_dtype`;
//! - transformers 5: `rope_parameters` (holding `rope_theta` and the scaling), `dtype`;
//! - families with their own vocabulary: DBRX's `d_model` / `n_heads` and nested `attn_config` /
//!   `ffn_config`, Llama-4's multimodal wrapper with a nested `text_config`.
//!
//! Families also rename fields across versions (`num_experts`, `num_local_experts`,
//! `n_routed_experts`, `moe_num_experts`). Every lookup tries each known name in turn, so a family
//! file reads its fields in one place ([`CoreConfig`] for the common ones) and builds its spec.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Rotary position embedding variant with its parameters (transformers' `rope_type`).
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
    /// Llama 3.1's frequency-band scaling (`_compute_llama3_parameters`; Llama-4).
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
    /// LongRoPE (Phi-3.5-MoE): per-dimension frequency factors and a magnitude scale chosen by
    /// whether the sequence is longer than `original_max_position_embeddings`.
    LongRope {
        short_factor: Vec<f64>,
        long_factor: Vec<f64>,
        short_mscale: Option<f64>,
        long_mscale: Option<f64>,
        attention_factor: Option<f64>,
        factor: Option<f64>,
        original_max_position_embeddings: usize,
    },
    /// Each frequency divided by its own factor: a GGUF file's `rope_freqs` tensor, the form
    /// llama.cpp's converter gives llama3 scaling (Llama-4 Scout), one factor per rotated pair.
    FrequencyFactors { factors: Vec<f64> },
    /// Gemma-4's proportional rope (`_compute_proportional_rope_parameters`): the whole head
    /// rotates in halves pairing with the default frequencies `base^(−2i/head_dim) / factor`,
    /// but only the first `⌊rotated_fraction · head_dim / 2⌋` are nonzero (the rest leave their
    /// pairs unrotated).
    Proportional { factor: f64, rotated_fraction: f64 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    pub scaling: RopeScaling,
    /// Share of each head's dimensions that rotate (GLM-4-MoE: 0.5); 1 for all.
    pub partial_rotary_factor: f64,
}

impl RopeConfig {
    /// The rope type's transformers name, for `info`.
    pub fn kind(&self) -> &'static str {
        match self.scaling {
            RopeScaling::Default => "default",
            RopeScaling::Linear { .. } => "linear",
            RopeScaling::Yarn { .. } => "yarn",
            RopeScaling::Llama3 { .. } => "llama3",
            RopeScaling::LongRope { .. } => "longrope",
            RopeScaling::FrequencyFactors { .. } => "rope_freqs",
            RopeScaling::Proportional { .. } => "proportional",
        }
    }
}

/// Storage dtype declared by the checkpoint (informational: tensors carry their own dtype).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeclaredDtype {
    F32,
    Bf16,
    F16,
}

impl DeclaredDtype {
    pub fn label(self) -> &'static str {
        match self {
            DeclaredDtype::F32 => "float32",
            DeclaredDtype::Bf16 => "bfloat16",
            DeclaredDtype::F16 => "float16",
        }
    }
}

/// config.json (or one nested object of it) with typed lookups.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub path: PathBuf,
    pub raw: Map<String, Value>,
    /// Where `raw` sits in the file, for messages: empty at the top level, `text_config.` inside.
    prefix: String,
    pub architecture: Option<String>,
    pub model_type: Option<String>,
    pub dtype: Option<DeclaredDtype>,
}

impl ModelConfig {
    /// Reads `path` (a config.json).
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
        let mut cfg = ModelConfig {
            path: path.to_owned(),
            raw,
            prefix: String::new(),
            architecture: None,
            model_type: None,
            dtype: None,
        };
        cfg.architecture = cfg
            .value("architectures")
            .and_then(|v| v.as_array()?.first()?.as_str().map(str::to_owned));
        cfg.model_type = cfg.opt_str("model_type")?;
        cfg.dtype = cfg.declared_dtype()?;
        Ok(cfg)
    }

    /// The nested object `name` (`text_config`, `attn_config`), read like a config of its own;
    /// messages name the field as `name.field`. `None` when absent or null.
    pub fn sub(&self, name: &str) -> Result<Option<ModelConfig>> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(ModelConfig {
                path: self.path.clone(),
                raw: m.clone(),
                prefix: format!("{}{name}.", self.prefix),
                architecture: self.architecture.clone(),
                model_type: self.model_type.clone(),
                dtype: self.dtype,
            })),
            Some(v) => Err(self.bad(format!(
                "'{}' must be an object, found {v}",
                self.field(name)
            ))),
        }
    }

    /// A `BadConfig` error for this file.
    pub fn bad(&self, problem: impl Into<String>) -> Error {
        Error::BadConfig {
            path: self.path.clone(),
            problem: problem.into(),
        }
    }

    /// `name` as it appears in the file (with the nesting prefix).
    pub fn field(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub(crate) fn value(&self, name: &str) -> Option<&Value> {
        self.raw.get(name).filter(|v| !v.is_null())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.value(name).is_some()
    }

    /// A required non-negative integer field, looked up under each of `names` in turn.
    pub fn usize_any(&self, names: &[&str]) -> Result<usize> {
        self.opt_usize_any(names)?.ok_or_else(|| {
            let names: Vec<String> = names.iter().map(|n| self.field(n)).collect();
            self.bad(format!("missing field '{}'", names.join("' or '")))
        })
    }

    pub fn opt_usize_any(&self, names: &[&str]) -> Result<Option<usize>> {
        for name in names {
            if let Some(v) = self.opt_usize(name)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// A required integer that must be positive.
    pub fn positive_any(&self, names: &[&str]) -> Result<usize> {
        let v = self.usize_any(names)?;
        if v == 0 {
            let name = names.iter().find(|n| self.contains(n)).unwrap_or(&names[0]);
            return Err(self.bad(format!("'{}' must be positive, found 0", self.field(name))));
        }
        Ok(v)
    }

    /// The layer count under the first of `names` present: positive and at most [`MAX_LAYERS`],
    /// checked before a family builds its per-layer specs (a count of 10¹² would abort on the
    /// allocation rather than fail).
    pub fn layer_count(&self, names: &[&str]) -> Result<usize> {
        let n = self.positive_any(names)?;
        if n > MAX_LAYERS {
            let name = names.iter().find(|n| self.contains(n)).unwrap_or(&names[0]);
            return Err(self.bad(format!(
                "'{}' is {n}, more layers than any model has (at most {MAX_LAYERS})",
                self.field(name)
            )));
        }
        Ok(n)
    }

    pub fn opt_usize(&self, name: &str) -> Result<Option<usize>> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                self.bad(format!(
                    "'{}' must be a non-negative integer, found {v}",
                    self.field(name)
                ))
            }),
        }
    }

    /// A signed integer (ERNIE's `moe_layer_end_index: -1`).
    pub fn opt_i64(&self, name: &str) -> Result<Option<i64>> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                self.bad(format!(
                    "'{}' must be an integer, found {v}",
                    self.field(name)
                ))
            }),
        }
    }

    pub fn opt_f64(&self, name: &str) -> Result<Option<f64>> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                self.bad(format!(
                    "'{}' must be a number, found {v}",
                    self.field(name)
                ))
            }),
        }
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| {
                self.bad(format!(
                    "'{}' must be true or false, found {v}",
                    self.field(name)
                ))
            }),
        }
    }

    /// A flag written as a boolean or, as Meta's Llama-4 configs write
    /// `attn_temperature_tuning: 4`, as a number (non-zero is true).
    pub fn opt_flag(&self, name: &str) -> Result<Option<bool>> {
        match self.value(name) {
            Some(Value::Number(n)) => Ok(Some(n.as_f64().is_some_and(|v| v != 0.0))),
            _ => self.opt_bool(name),
        }
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<String>> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => v.as_str().map(|s| Some(s.to_owned())).ok_or_else(|| {
                self.bad(format!(
                    "'{}' must be a string, found {v}",
                    self.field(name)
                ))
            }),
        }
    }

    /// A list of integers (`mlp_only_layers`); missing or null reads as empty.
    pub fn usize_list(&self, name: &str) -> Result<Vec<usize>> {
        self.list(name, |v| v.as_u64().map(|n| n as usize), "integers")
    }

    /// A list of strings (`layer_types`); missing or null reads as empty.
    pub fn str_list(&self, name: &str) -> Result<Vec<String>> {
        self.list(name, |v| v.as_str().map(str::to_owned), "strings")
    }

    fn list<T>(
        &self,
        name: &str,
        item: impl Fn(&Value) -> Option<T>,
        what: &str,
    ) -> Result<Vec<T>> {
        let wrong = || self.bad(format!("'{}' must be a list of {what}", self.field(name)));
        match self.value(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(|v| item(v).ok_or_else(wrong)).collect(),
            Some(_) => Err(wrong()),
        }
    }

    /// `hidden_act` (or another activation field) must be SwiGLU's silu: every supported family's
    /// experts use it, so anything else is refused rather than computed wrong.
    pub fn require_silu(&self, name: &str) -> Result<()> {
        match self.opt_str(name)?.as_deref() {
            None | Some("silu") | Some("swish") => Ok(()),
            Some(other) => Err(self.bad(format!(
                "'{}' = '{other}' is not supported (the supported families use silu)",
                self.field(name)
            ))),
        }
    }

    /// `num_experts_per_tok` (or the family's name for it), checked to be in 1..=`num_experts`.
    pub fn top_k(
        &self,
        names: &[&str],
        default: Option<usize>,
        num_experts: usize,
    ) -> Result<usize> {
        let k = match (self.opt_usize_any(names)?, default) {
            (Some(k), _) | (None, Some(k)) => k,
            (None, None) => return self.usize_any(names),
        };
        if k == 0 || k > num_experts {
            let name = names.iter().find(|n| self.contains(n)).unwrap_or(&names[0]);
            return Err(self.bad(format!(
                "'{}' = {k} must be in 1..={num_experts} (the number of experts)",
                self.field(name)
            )));
        }
        Ok(k)
    }

    fn declared_dtype(&self) -> Result<Option<DeclaredDtype>> {
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

    /// Whether the config names a `partial_rotary_factor` (at the top or in `rope_parameters`):
    /// families whose config class defaults it (GLM 0.5, Qwen3-Next 0.25) apply theirs otherwise.
    pub fn names_partial_rotary(&self) -> Result<bool> {
        Ok(self.contains("partial_rotary_factor")
            || self
                .sub("rope_parameters")?
                .is_some_and(|p| p.contains("partial_rotary_factor")))
    }

    /// Rope settings from `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (4),
    /// with `default_theta` when neither names a theta (each family has its own default, as its
    /// transformers config class does).
    pub fn rope(&self, default_theta: f64) -> Result<RopeConfig> {
        let params = self.object("rope_parameters")?;
        let scaling = self.object("rope_scaling")?;
        self.rope_from(params, scaling, default_theta)
    }

    /// Rope settings of the layers of `layer_type` from `rope_parameters` keyed by layer type
    /// (Gemma-4: `{"sliding_attention": {...}, "full_attention": {...}}`); `None` when the config
    /// has no entry for it.
    pub fn layer_type_rope(
        &self,
        layer_type: &str,
        default_theta: f64,
    ) -> Result<Option<RopeConfig>> {
        let Some(params) = self.sub("rope_parameters")? else {
            return Ok(None);
        };
        match params.object(layer_type)? {
            None => Ok(None),
            Some(m) => Ok(Some(params.rope_from(Some(m), None, default_theta)?)),
        }
    }

    /// The object `name`, `None` when absent or null.
    fn object(&self, name: &str) -> Result<Option<&Map<String, Value>>> {
        match self.value(name) {
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(v) => Err(self.bad(format!(
                "'{}' must be an object, found {v}",
                self.field(name)
            ))),
            None => Ok(None),
        }
    }

    fn rope_from(
        &self,
        params: Option<&Map<String, Value>>,
        scaling: Option<&Map<String, Value>>,
        default_theta: f64,
    ) -> Result<RopeConfig> {
        let theta = params
            .and_then(|m| m.get("rope_theta"))
            .and_then(Value::as_f64)
            .or(self.opt_f64("rope_theta")?)
            .unwrap_or(default_theta);
        let partial_rotary_factor = params
            .and_then(|m| m.get("partial_rotary_factor"))
            .and_then(Value::as_f64)
            .or(self.opt_f64("partial_rotary_factor")?)
            .unwrap_or(1.0);
        if partial_rotary_factor.is_nan()
            || partial_rotary_factor <= 0.0
            || partial_rotary_factor > 1.0
        {
            return Err(self.bad(format!(
                "partial_rotary_factor {partial_rotary_factor} must be in (0, 1]"
            )));
        }
        if theta.is_nan() || theta <= 0.0 {
            return Err(self.bad(format!("rope_theta {theta} must be positive")));
        }
        // transformers 5 folds the scaling into rope_parameters; 4 keeps a separate rope_scaling.
        let mut scaling = match scaling.or(params) {
            None => RopeScaling::Default,
            Some(s) => self.rope_scaling(s)?,
        };
        // Proportional rope rotates the whole head; the factor says how many of its
        // frequencies are nonzero.
        let partial_rotary_factor = match &mut scaling {
            RopeScaling::Proportional {
                rotated_fraction, ..
            } => {
                *rotated_fraction = partial_rotary_factor;
                1.0
            }
            _ => partial_rotary_factor,
        };
        Ok(RopeConfig {
            theta,
            scaling,
            partial_rotary_factor,
        })
    }

    fn rope_scaling(&self, s: &Map<String, Value>) -> Result<RopeScaling> {
        let kind = s
            .get("rope_type")
            .or_else(|| s.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let num = |k: &str| s.get(k).and_then(Value::as_f64);
        let need = |k: &str| {
            num(k).ok_or_else(|| self.bad(format!("rope scaling '{kind}' needs a numeric '{k}'")))
        };
        let original = || -> Result<usize> {
            num("original_max_position_embeddings")
                .map(|v| v as usize)
                .or(self.opt_usize("original_max_position_embeddings")?)
                .or(self.opt_usize("max_position_embeddings")?)
                .ok_or_else(|| {
                    self.bad(format!(
                        "{kind} rope needs 'original_max_position_embeddings'"
                    ))
                })
        };
        let factors = |k: &str| -> Result<Vec<f64>> {
            s.get(k)
                .and_then(Value::as_array)
                .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
                .ok_or_else(|| self.bad(format!("longrope scaling needs a list of numbers '{k}'")))
        };
        Ok(match kind {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear {
                factor: need("factor")?,
            },
            "yarn" => RopeScaling::Yarn {
                // Without `factor`, transformers derives it as max_position / original_max_position.
                factor: num("factor").unwrap_or(0.0),
                original_max_position_embeddings: original()?,
                beta_fast: num("beta_fast").unwrap_or(32.0),
                beta_slow: num("beta_slow").unwrap_or(1.0),
                mscale: num("mscale"),
                mscale_all_dim: num("mscale_all_dim"),
                attention_factor: num("attention_factor"),
                truncate: s.get("truncate").and_then(Value::as_bool).unwrap_or(true),
            },
            "llama3" => RopeScaling::Llama3 {
                factor: need("factor")?,
                low_freq_factor: need("low_freq_factor")?,
                high_freq_factor: need("high_freq_factor")?,
                original_max_position_embeddings: original()?,
            },
            // "su" is the name early Phi-3 configs used for LongRoPE.
            "longrope" | "su" => RopeScaling::LongRope {
                short_factor: factors("short_factor")?,
                long_factor: factors("long_factor")?,
                short_mscale: num("short_mscale"),
                long_mscale: num("long_mscale"),
                attention_factor: num("attention_factor"),
                factor: num("factor"),
                original_max_position_embeddings: original()?,
            },
            "proportional" => RopeScaling::Proportional {
                factor: num("factor").unwrap_or(1.0),
                rotated_fraction: 1.0,
            },
            other => {
                return Err(self.bad(format!(
                    "rope type '{other}' is not supported (supported: default, linear, yarn, llama3, longrope, proportional)"
                )))
            }
        })
    }
}

/// Most transformer blocks a config may declare: ten times the deepest released MoE.
pub const MAX_LAYERS: usize = 1024;

/// The fields of a Llama-style decoder config most families share, read under their usual names.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// `None` when absent or 0 (Qwen configs write 0 when windows are off).
    pub sliding_window: Option<usize>,
}

impl CoreConfig {
    /// Reads the shared fields; `defaults` supplies what the family's config class defaults.
    pub fn read(cfg: &ModelConfig, defaults: CoreDefaults) -> Result<Self> {
        let num_attention_heads = cfg.positive_any(&["num_attention_heads"])?;
        let hidden_size = cfg.positive_any(&["hidden_size"])?;
        let num_key_value_heads = cfg
            .opt_usize("num_key_value_heads")?
            .unwrap_or(num_attention_heads);
        if num_key_value_heads == 0 || !num_attention_heads.is_multiple_of(num_key_value_heads) {
            return Err(cfg.bad(format!(
                "'{}' ({num_attention_heads}) is not a multiple of '{}' ({num_key_value_heads})",
                cfg.field("num_attention_heads"),
                cfg.field("num_key_value_heads")
            )));
        }
        let head_dim = match cfg.opt_usize("head_dim")? {
            Some(0) | None => hidden_size / num_attention_heads,
            Some(d) => d,
        };
        if head_dim == 0 {
            return Err(cfg.bad(format!(
                "hidden_size {hidden_size} is smaller than num_attention_heads {num_attention_heads}"
            )));
        }
        Ok(Self {
            vocab_size: cfg.positive_any(&["vocab_size"])?,
            hidden_size,
            intermediate_size: cfg.opt_usize("intermediate_size")?.unwrap_or(0),
            num_hidden_layers: cfg.layer_count(&["num_hidden_layers"])?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: cfg
                .opt_f64("rms_norm_eps")?
                .unwrap_or(defaults.rms_norm_eps),
            max_position_embeddings: cfg
                .opt_usize("max_position_embeddings")?
                .unwrap_or(defaults.max_position_embeddings),
            tie_word_embeddings: cfg
                .opt_bool("tie_word_embeddings")?
                .unwrap_or(defaults.tie_word_embeddings),
            sliding_window: cfg.opt_usize("sliding_window")?.filter(|w| *w > 0),
        })
    }
}

/// A family config class's defaults for [`CoreConfig`] fields a checkpoint may omit.
#[derive(Clone, Copy, Debug)]
pub struct CoreDefaults {
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

impl Default for CoreDefaults {
    fn default() -> Self {
        Self {
            rms_norm_eps: 1e-6,
            max_position_embeddings: 4096,
            tie_word_embeddings: false,
        }
    }
}
