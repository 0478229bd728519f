//! The library's error type. Every variant names the file (when there is one) and the problem in one
//! line, because the CLI prints `{err}` as its whole diagnosis and the GUI shows it in a banner.

use std::path::PathBuf;

/// Everything that can go wrong between a path on disk and a trace.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Writing an output file failed; the previous file, if any, is intact ([`crate::atomic`]).
    #[error("cannot write {path}: {source} (any previous file is unchanged)")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An output could not be made from what was asked (format, figure, layer).
    #[error("cannot export {path}: {problem}")]
    Export { path: PathBuf, problem: String },

    /// Corpus input that cannot be used at all (a missing path, no documents).
    #[error("corpus input {path}: {problem}")]
    Corpus { path: PathBuf, problem: String },

    #[error("bad config: {problem} in {path}")]
    BadConfig { path: PathBuf, problem: String },

    #[error(
        "unknown architecture '{name}' in {path}; supported: {supported}",
        supported = supported.join(", ")
    )]
    UnknownArchitecture {
        name: String,
        path: PathBuf,
        supported: Vec<&'static str>,
    },

    #[error("refusing pickle checkpoint {path}: moescope loads safetensors (and GGUF) only, never .bin/.pt pickles")]
    PickleRefused { path: PathBuf },

    #[error(
        "no weights found: expected model.safetensors or model.safetensors.index.json in {path}"
    )]
    NoWeights { path: PathBuf },

    #[error("bad GGUF file: {problem} in {path}")]
    Gguf { path: PathBuf, problem: String },

    /// The vocabulary a GGUF file carries cannot be rebuilt as its tokenizer (token ids still run).
    #[error("the vocabulary cannot be rebuilt as a tokenizer: {problem} in {path}")]
    GgufVocabulary { path: PathBuf, problem: String },

    /// A well-formed GGUF file of an architecture this build describes but does not run.
    #[error("{path} is a '{architecture}' GGUF file: `moescope info` describes it, but only {supported} GGUF models run; open the model's safetensors folder")]
    GgufNotRunnable {
        path: PathBuf,
        architecture: String,
        supported: String,
    },

    #[error("tensor '{name}' is {ggml_type}, a GGUF type moescope does not run (it runs F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K to Q6_K and MXFP4) in {path}")]
    GgufType {
        name: String,
        ggml_type: String,
        path: PathBuf,
    },

    #[error("corrupt safetensors file: {problem} in {path}")]
    CorruptWeights { path: PathBuf, problem: String },

    #[error("missing tensor '{name}' (looked in {path})")]
    MissingTensor { name: String, path: PathBuf },

    /// A tensor the spec needs that no tensor of a GGUF block maps to: the block's own tensors are
    /// listed, so a layout the converter changed can be recognized.
    #[error("missing tensor '{name}': none of block {block}'s tensors in {path} maps to it (blk.{block} has {present})")]
    MissingGgufTensor {
        name: String,
        block: usize,
        present: String,
        path: PathBuf,
    },

    #[error(
        "shape mismatch for tensor '{name}': expected {expected:?}, found {found:?} in {path}"
    )]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
        path: PathBuf,
    },

    #[error("unsupported dtype {dtype} for tensor '{name}' in {path}; expected f32, bf16 or f16")]
    UnsupportedDtype {
        name: String,
        dtype: String,
        path: PathBuf,
    },

    #[error("token id {id} at position {position} is out of range: the vocabulary has {vocab_size} entries")]
    TokenOutOfRange {
        id: u32,
        position: usize,
        vocab_size: usize,
    },

    #[error("tokenizer: {problem} in {path}")]
    Tokenizer { path: PathBuf, problem: String },

    #[error("the prompt is {bytes} bytes, more than the {limit} a prompt may have")]
    PromptTooLong { bytes: usize, limit: usize },

    #[error("no tokens to run: give a non-empty prompt or token ids")]
    EmptyInput,

    #[error("{tokens} tokens in context, more than the limit of {limit} (the model's maximum positions or the engine's token cap)")]
    TooManyTokens { tokens: usize, limit: usize },

    #[error("non-finite values (NaN or inf) in {what} at layer {layer}: the checkpoint's weights are probably corrupt")]
    NonFinite { what: &'static str, layer: usize },

    #[error("cancelled")]
    Cancelled,

    /// Generation options that cannot be honoured (a temperature of 0, top-p outside (0, 1]).
    #[error("cannot generate: {0}")]
    Generation(String),

    /// An intervention the model cannot run (from `Interventions::problem`).
    #[error("intervention: {0}")]
    Intervention(String),

    #[error("device: {0}")]
    Device(String),

    #[error("trace file {path}: {problem}")]
    Trace { path: PathBuf, problem: String },

    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
