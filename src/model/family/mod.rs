//! One file per family: each reads config.json into a [`ModelSpec`] and holds no tensor code.
//! The helpers here are the defaults most families share (Llama-style GQA, one attention kind
//! for every layer, a plain SwiGLU MLP), so a family file states only where it differs.

pub mod dbrx;
pub mod deepseek;
pub mod ernie;
pub mod glm4_moe;
pub mod gpt_oss;
pub mod granite;
pub mod llama4;
pub mod mixtral;
pub mod olmoe;
pub mod phimoe;
pub mod qwen_moe;

use super::config::{CoreConfig, ModelConfig, RopeConfig};
use super::spec::{
    Activation, AttentionSpec, AttentionWindow, DenseSpec, ExpertLayout, ExpertSpec, FfnKind,
    GateSpec, GqaSpec, LayerAttention, LayerSpec, ModelSpec, MoeSpec, Multipliers, NormKind,
    NormSpec, QkNormKind, QkvProjections, RopePairing, TensorNames, WeightTarget,
};
use crate::routing::RouterSpec;

/// `architectures[0]` of the config, or the family's class name when the config has none.
fn architecture_or(cfg: &ModelConfig, default: &str) -> String {
    cfg.architecture
        .clone()
        .unwrap_or_else(|| default.to_owned())
}

/// Llama-style GQA over the config's heads: separate projections without biases, no q/k norm,
/// `head_dim^-0.5` scale, halves-paired rotary.
fn gqa(core: &CoreConfig, rope: RopeConfig) -> GqaSpec {
    GqaSpec {
        num_heads: core.num_attention_heads,
        num_kv_heads: core.num_key_value_heads,
        head_dim: core.head_dim,
        projections: QkvProjections::Separate,
        qkv_bias: false,
        o_bias: false,
        qk_norm: QkNormKind::None,
        clip_qkv: None,
        sinks: false,
        scale: (core.head_dim as f64).powf(-0.5),
        rope,
        rope_pairing: RopePairing::Halves,
    }
}

/// Every layer with the same attention window; `moe(layer)` says which are MoE.
fn layers(n: usize, window: AttentionWindow, moe: impl Fn(usize) -> bool) -> Vec<LayerSpec> {
    (0..n)
        .map(|i| LayerSpec {
            attention: LayerAttention {
                window,
                ..LayerAttention::FULL
            },
            ffn: if moe(i) { FfnKind::Moe } else { FfnKind::Dense },
        })
        .collect()
}

/// The window of a config's optional `sliding_window` (every layer).
fn window_of(core: &CoreConfig) -> AttentionWindow {
    core.sliding_window
        .map_or(AttentionWindow::Full, AttentionWindow::Sliding)
}

/// Experts stored one tensor per projection under `experts.N`, SwiGLU, no biases.
fn per_expert(
    intermediate_size: usize,
    gate: &'static str,
    up: &'static str,
    down: &'static str,
) -> ExpertSpec {
    ExpertSpec {
        intermediate_size,
        module: "experts",
        layout: ExpertLayout::PerExpert { gate, up, down },
        activation: Activation::SwiGlu,
        bias: false,
    }
}

/// A router linear under `module`, no bias, in the model dtype.
fn gate(module: &'static str) -> GateSpec {
    GateSpec {
        module,
        bias: false,
        in_f32: false,
        selection_bias: None,
    }
}

/// An MoE block with output-weighted routed experts and no shared expert.
fn moe(router: RouterSpec, gate: GateSpec, experts: ExpertSpec) -> MoeSpec {
    MoeSpec {
        router,
        gate,
        experts,
        shared: None,
        weights_on: WeightTarget::Output,
    }
}

/// A spec with the Llama layout, RMSNorm and no multipliers; callers adjust what differs.
fn llama_like(
    family: &'static str,
    architecture: String,
    core: &CoreConfig,
    attention: GqaSpec,
    layers: Vec<LayerSpec>,
    moe: MoeSpec,
) -> ModelSpec {
    ModelSpec {
        family,
        architecture,
        vocab_size: core.vocab_size,
        hidden_size: core.hidden_size,
        num_layers: core.num_hidden_layers,
        max_position_embeddings: core.max_position_embeddings,
        norm: NormSpec {
            kind: NormKind::Rms,
            eps: core.rms_norm_eps,
        },
        tie_word_embeddings: core.tie_word_embeddings,
        lm_head_bias: false,
        multipliers: Multipliers::default(),
        names: TensorNames::llama(),
        attention: AttentionSpec::Gqa(attention),
        layers,
        dense: DenseSpec {
            intermediate_size: core.intermediate_size,
            bias: false,
        },
        moe,
        notes: Vec::new(),
    }
}
