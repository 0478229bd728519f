//! Mixtral (`MixtralForCausalLM`): softmax over all experts, top-k, renormalized; GQA with an
//! optional sliding window. Reference: transformers `models/mixtral/modeling_mixtral.py`
//! (`MixtralTopKRouter`, `MixtralSparseMoeBlock`).

use super::super::config::{CoreConfig, CoreDefaults, ModelConfig};
use super::super::spec::ModelSpec;
use crate::error::Result;
use crate::routing::{Normalization, RouterSpec, RoutingRule};

pub fn spec(cfg: &ModelConfig) -> Result<ModelSpec> {
    cfg.require_silu("hidden_act")?;
    let core = CoreConfig::read(cfg, CoreDefaults::default())?;
    let num_experts = cfg.positive_any(&["num_local_experts", "num_experts"])?;
    let top_k = cfg.top_k(&["num_experts_per_tok"], Some(2), num_experts)?;
    let mut spec = super::llama_like(
        "Mixtral",
        super::architecture_or(cfg, "MixtralForCausalLM"),
        &core,
        super::gqa(&core, cfg.rope(1e6)?),
        super::layers(core.num_hidden_layers, super::window_of(&core), |_| true),
        super::moe(
            RouterSpec {
                normalization: Normalization::Sum,
                ..RouterSpec::plain(num_experts, top_k, RoutingRule::SoftmaxTopK)
            },
            super::gate("gate"),
            super::per_expert(core.intermediate_size, "w1", "w3", "w2"),
        ),
    );
    // Hub checkpoints name the block `block_sparse_moe`; transformers 5 writes `mlp`.
    spec.names.moe = &["block_sparse_moe", "mlp"];
    Ok(spec)
}
