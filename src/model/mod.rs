//! Checkpoints and model families. `checkpoint` opens a folder; `registry` maps its config to a
//! family; each file in `family/` turns config.json into a [`spec::ModelSpec`]; `causal_lm` builds
//! the network from that spec over the shared `layers`, routing with [`crate::routing`].

pub mod causal_lm;
pub mod chat_template;
pub mod checkpoint;
pub mod config;
pub mod cpu_experts;
pub mod describe;
pub mod expert_gemm;
pub mod family;
pub mod gguf;
pub mod gguf_spec;
pub mod gguf_tokenizer;
pub mod host;
pub mod layers;
pub mod moe;
pub mod record;
pub mod registry;
pub mod spec;
pub mod stopwatch;
pub mod weights;
