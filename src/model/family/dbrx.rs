//! DBRX (`DbrxForCausalLM`). Reference: transformers `models/dbrx/modeling_dbrx.py`.
//!
//! DBRX has its own config vocabulary (`d_model`, `n_heads`, `n_layers`, `max_seq_len`) with the
//! attention and feed-forward settings nested in `attn_config` / `ffn_config`, and its own tensor
//! names (`transformer.wte`, `transformer.blocks.N.norm_attn_norm.{norm_1, attn, norm_2}`,
//! `ffn.router.layer`, `ffn.experts.mlp.{w1, v1, w2}`, `transformer.norm_f`).
//! - Attention: one fused `Wqkv` projection clamped to ±`clip_qkv`, then split; `out_proj`.
//! - LayerNorm without bias (eps 1e-5, PyTorch's default).
//! - Router: softmax, top-k, weights divided by their `moe_normalize_expert_weights`-norm (none
//!   when null).
//! - Experts: `w1` (gate) and `v1` (up) `[E·I, H]`, `w2` (down) `[E·I, H]` used as `h @ w2[e]`.
//! - Rotary: transformers 5.23 takes θ from the top-level `rope_parameters`/`rope_theta` (default
//!   10 000) and ignores `attn_config.rope_theta` (500 000 in the released config.json), which the
//!   original code used. moescope follows transformers and says so in `info`.

use super::super::config::ModelConfig;
use super::super::spec::{
    Activation, AttentionSpec, AttentionWindow, DenseSpec, ExpertLayout, ExpertSpec, GqaSpec,
    ModelSpec, Multipliers, NormKind, NormSpec, QkNormKind, QkvProjections, RopePairing,
    TensorNames,
};
use crate::error::Result;
use crate::routing::{Normalization, RouterSpec, RoutingRule};

pub fn spec(cfg: &ModelConfig) -> Result<ModelSpec> {
    let attn = cfg
        .sub("attn_config")?
        .ok_or_else(|| cfg.bad("missing object 'attn_config'"))?;
    let ffn = cfg
        .sub("ffn_config")?
        .ok_or_else(|| cfg.bad("missing object 'ffn_config'"))?;
    if let Some(act) = ffn.sub("ffn_act_fn")? {
        act.require_silu("name")?;
    }
    let hidden = cfg.positive_any(&["d_model", "hidden_size"])?;
    let heads = cfg.positive_any(&["n_heads", "num_attention_heads"])?;
    let num_layers = cfg.layer_count(&["n_layers", "num_hidden_layers"])?;
    let kv_heads = attn.opt_usize("kv_n_heads")?.unwrap_or(1);
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) || !hidden.is_multiple_of(heads) {
        return Err(cfg.bad(format!(
            "n_heads ({heads}) must divide d_model ({hidden}) and be a multiple of attn_config.kv_n_heads ({kv_heads})"
        )));
    }
    let head_dim = hidden / heads;
    let num_experts = ffn.positive_any(&["moe_num_experts"])?;
    let top_k = ffn.top_k(&["moe_top_k"], Some(1), num_experts)?;
    let normalization = match ffn.opt_f64("moe_normalize_expert_weights")? {
        // Absent means the config class default (1.0); an explicit null means none.
        None if ffn.raw.contains_key("moe_normalize_expert_weights") => Normalization::None,
        None => Normalization::PNorm { p: 1.0 },
        Some(p) => Normalization::PNorm { p: p as f32 },
    };
    let rope = cfg.rope(10_000.0)?;
    let mut notes = Vec::new();
    if let Some(ignored) = attn.opt_f64("rope_theta")? {
        if ignored != rope.theta {
            notes.push(format!(
                "attn_config.rope_theta = {ignored} is ignored, as transformers 5.23 ignores it: rotary θ = {} (the original DBRX code used attn_config.rope_theta)",
                rope.theta
            ));
        }
    }
    Ok(ModelSpec {
        family: "DBRX",
        architecture: super::architecture_or(cfg, "DbrxForCausalLM"),
        vocab_size: cfg.positive_any(&["vocab_size"])?,
        hidden_size: hidden,
        num_layers,
        max_position_embeddings: cfg
            .opt_usize_any(&["max_seq_len", "max_position_embeddings"])?
            .unwrap_or(2048),
        norm: NormSpec {
            kind: NormKind::Layer { bias: false },
            eps: 1e-5,
        },
        tie_word_embeddings: cfg.opt_bool("tie_word_embeddings")?.unwrap_or(false),
        lm_head_bias: false,
        multipliers: Multipliers::default(),
        names: TensorNames {
            embed: "transformer.wte".into(),
            layers: "transformer.blocks".into(),
            final_norm: "transformer.norm_f".into(),
            lm_head: "lm_head".into(),
            input_norm: "norm_attn_norm.norm_1",
            post_attention_norm: "norm_attn_norm.norm_2",
            attention: "norm_attn_norm.attn",
            dense_mlp: "ffn",
            moe: &["ffn"],
        },
        linear_attention: None,
        global_attention: None,
        block: super::super::spec::BlockLayout::PreNorm,
        attention: AttentionSpec::Gqa(GqaSpec {
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            projections: QkvProjections::FusedWqkv,
            qkv_bias: false,
            o_bias: false,
            qk_norm: QkNormKind::None,
            clip_qkv: attn.opt_f64("clip_qkv")?,
            sinks: false,
            value_is_key: false,
            value_norm: false,
            scale: (head_dim as f64).powf(-0.5),
            output_gate: false,
            rope,
            rope_pairing: RopePairing::Halves,
        }),
        layers: super::layers(num_layers, AttentionWindow::Full, |_| true),
        dense: DenseSpec {
            intermediate_size: 0,
            bias: false,
        },
        moe: super::moe(
            RouterSpec {
                normalization,
                ..RouterSpec::plain(num_experts, top_k, RoutingRule::SoftmaxTopK)
            },
            super::gate("router.layer"),
            ExpertSpec {
                intermediate_size: ffn.positive_any(&["ffn_hidden_size"])?,
                module: "experts.mlp",
                layout: ExpertLayout::DbrxFlat,
                activation: Activation::SwiGlu,
                bias: false,
            },
        ),
        notes,
    })
}
