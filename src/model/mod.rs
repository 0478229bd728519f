//! Checkpoints and model families. `checkpoint` opens a folder; `registry` maps its config to a
//! family; each family file turns config.json into a [`spec::ModelSpec`]; `causal_lm` builds the
//! network from that spec over the shared `layers`; `router` holds the one routing rule.

pub mod causal_lm;
pub mod checkpoint;
pub mod config;
pub mod cpu_experts;
pub mod deepseek;
pub mod expert_gemm;
pub mod layers;
pub mod mixtral;
pub mod moe;
pub mod olmoe;
pub mod qwen_moe;
pub mod registry;
pub mod router;
pub mod spec;
pub mod weights;

use crate::error::Result;
use config::ModelConfig;

/// All supported families use SwiGLU experts; refuse other activations rather than compute wrong.
fn check_silu(cfg: &ModelConfig) -> Result<()> {
    match cfg.opt_str("hidden_act")?.as_deref() {
        None | Some("silu") | Some("swish") => Ok(()),
        Some(other) => Err(cfg.bad(format!(
            "hidden_act '{other}' is not supported (the supported families use silu)"
        ))),
    }
}

fn architecture_or(cfg: &ModelConfig, default: &str) -> String {
    cfg.architecture
        .clone()
        .unwrap_or_else(|| default.to_owned())
}
