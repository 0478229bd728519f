//! A spec in words: the labelled lines `moescope info` prints (and the app can show), written
//! from the [`ModelSpec`] so every family is described by the same code, with no Debug text.

use super::config::RopeScaling;
use super::spec::{
    Activation, AttentionSpec, AttentionWindow, ExpertLayout, GateUpOrder, LayerAttention,
    ModelSpec, NormKind, Orientation, QkNormKind, QkvProjections, RopePairing, WeightTarget,
};

/// `(label, text)` lines describing `spec`.
pub fn describe(spec: &ModelSpec) -> Vec<(&'static str, String)> {
    let mut lines = Vec::new();
    let moe: Vec<usize> = (0..spec.num_layers).filter(|&l| spec.is_moe(l)).collect();
    let dense: Vec<usize> = (0..spec.num_layers).filter(|&l| !spec.is_moe(l)).collect();
    lines.push((
        "layers",
        format!(
            "{} ({} MoE: {}{})",
            spec.num_layers,
            moe.len(),
            ranges(&moe),
            if dense.is_empty() {
                String::new()
            } else {
                format!("; dense: {}", ranges(&dense))
            }
        ),
    ));
    lines.push((
        "hidden",
        format!("{}  vocab {}", spec.hidden_size, spec.vocab_size),
    ));
    let m = &spec.moe;
    let shared = m
        .shared
        .as_ref()
        .map(|s| {
            format!(
                "; shared expert {}{}",
                s.intermediate_size,
                if s.sigmoid_gate.is_some() {
                    " × sigmoid gate"
                } else {
                    ""
                }
            )
        })
        .unwrap_or_default();
    let moe_layers: Vec<usize> = (0..spec.num_layers).filter(|&l| spec.is_moe(l)).collect();
    let top_k = if spec.top_k_varies() {
        let per_layer: Vec<String> = moe_layers
            .iter()
            .map(|&l| format!("{l}: {}", spec.top_k_of(l)))
            .collect();
        format!("top-k per layer ({})", per_layer.join(", "))
    } else {
        format!("top-{}", m.router.top_k)
    };
    lines.push((
        "experts",
        format!(
            "{} routed × {}, {top_k}{shared}",
            m.router.num_experts, m.experts.intermediate_size
        ),
    ));
    lines.push((
        "expert math",
        format!(
            "{}{}; stored {}",
            match m.experts.activation {
                Activation::SwiGlu => "silu(gate) · up".to_owned(),
                Activation::GeluTanhGlu => "gelu_tanh(gate) · up".to_owned(),
                Activation::ClampedSwiGlu { alpha, limit } => format!(
                    "clamped SwiGLU: (clamp(up, ±{limit}) + 1) · g · sigmoid({alpha} g), g = min(gate, {limit})"
                ),
            },
            if m.experts.bias { ", with biases" } else { "" },
            match m.experts.layout {
                ExpertLayout::PerExpert { .. } => "per expert".to_owned(),
                ExpertLayout::Stacked {
                    orientation,
                    gate_up_order,
                    ..
                } => format!(
                    "stacked {}{}",
                    match orientation {
                        Orientation::OutIn => "[E, out, in]",
                        Orientation::InOut => "[E, in, out]",
                    },
                    match gate_up_order {
                        GateUpOrder::Halves => "",
                        GateUpOrder::Interleaved => ", gate/up interleaved",
                    }
                ),
                ExpertLayout::DbrxFlat => "flat [E·I, H] (w1, v1, w2)".to_owned(),
            }
        ),
    ));
    lines.push((
        "router",
        format!(
            "{}{}{}{}; weights multiply the expert {}",
            spec.router_description(),
            if m.gate.bias { "; router bias" } else { "" },
            if m.gate.in_f32 { "; gate in f32" } else { "" },
            match (m.gate.input_scale, m.gate.expert_scale) {
                (Some(_), Some(_)) =>
                    "; gate reads rms(residual) · scale / √hidden; weights × per-expert scale",
                (None, Some(_)) => "; weights × per-expert scale",
                (Some(_), None) => "; gate reads rms(residual) · scale / √hidden",
                (None, None) => "",
            },
            match m.weights_on {
                WeightTarget::Output => "output",
                WeightTarget::Input => "input",
            }
        ),
    ));
    lines.push(("attention", attention(spec)));
    lines.push(("layer kinds", layer_kinds(spec)));
    let mut norm = match spec.norm.kind {
        NormKind::Rms => format!("RMSNorm, eps {:e}", spec.norm.eps),
        NormKind::RmsWeightInF32 => {
            format!("RMSNorm (weight applied in f32), eps {:e}", spec.norm.eps)
        }
        NormKind::ZeroCentredRms => {
            format!("zero-centred RMSNorm (1 + w), eps {:e}", spec.norm.eps)
        }
        NormKind::Layer { bias } => format!(
            "LayerNorm{}, eps {:e}",
            if bias { " with bias" } else { " without bias" },
            spec.norm.eps
        ),
    };
    let mul = spec.multipliers;
    if mul.embedding != 1.0 || mul.residual != 1.0 || mul.logits_divisor != 1.0 {
        norm.push_str(&format!(
            "; embeddings × {}, block outputs × {}, logits ÷ {}",
            mul.embedding, mul.residual, mul.logits_divisor
        ));
    }
    if spec.tie_word_embeddings {
        norm.push_str("; tied embeddings");
    }
    if spec.lm_head_bias {
        norm.push_str("; LM head bias");
    }
    lines.push(("norms", norm));
    for note in &spec.notes {
        lines.push(("note", note.clone()));
    }
    lines
}

fn attention(spec: &ModelSpec) -> String {
    let main = match &spec.attention {
        AttentionSpec::Gqa(a) => gqa(a),
        AttentionSpec::Mla(m) => format!(
            "MLA {} heads, q_lora_rank {}, kv_lora_rank {}, nope/rope/v {}/{}/{}, {}",
            m.num_heads,
            m.q_lora_rank.map_or("none".into(), |r| r.to_string()),
            m.kv_lora_rank,
            m.qk_nope_head_dim,
            m.qk_rope_head_dim,
            m.v_head_dim,
            rope(
                &m.rope,
                m.rope_pairing,
                m.qk_rope_head_dim,
                m.qk_rope_head_dim
            )
        ),
    };
    match &spec.global_attention {
        Some(g) => format!("{main}; full layers: {}", gqa(g)),
        None => main,
    }
}

fn gqa(a: &super::spec::GqaSpec) -> String {
    let mut parts = vec![format!(
        "GQA {} heads / {} kv heads × {}",
        a.num_heads, a.num_kv_heads, a.head_dim
    )];
    if a.projections == QkvProjections::FusedWqkv {
        parts.push("fused Wqkv".into());
    }
    match a.qk_norm {
        QkNormKind::None => {}
        QkNormKind::PerHead => parts.push("q/k RMSNorm per head".into()),
        QkNormKind::Full => parts.push("q/k RMSNorm over the projection".into()),
        QkNormKind::L2AfterRotary => parts.push("q/k L2 norm after rotary".into()),
        QkNormKind::PerHeadAfterRotary => parts.push("q/k RMSNorm per head after rotary".into()),
    }
    if a.output_gate {
        parts.push("output × sigmoid(gate from q_proj)".into());
    }
    if a.value_is_key {
        parts.push("values = keys (no v_proj)".into());
    }
    if a.value_norm {
        parts.push("v RMSNorm per head".into());
    }
    match (a.qkv_bias, a.o_bias) {
        (true, true) => parts.push("q/k/v/o bias".into()),
        (true, false) => parts.push("q/k/v bias".into()),
        _ => {}
    }
    if let Some(c) = a.clip_qkv {
        parts.push(format!("qkv clipped to ±{c}"));
    }
    if a.sinks {
        parts.push("attention sinks".into());
    }
    if (a.scale - (a.head_dim as f64).powf(-0.5)).abs() > 1e-12 {
        parts.push(format!("softmax scale {}", a.scale));
    }
    parts.push(rope(&a.rope, a.rope_pairing, a.rotary_dim(), a.head_dim));
    parts.join(", ")
}

fn rope(
    rope: &super::config::RopeConfig,
    pairing: RopePairing,
    rotary_dim: usize,
    head_dim: usize,
) -> String {
    let scaling = match &rope.scaling {
        RopeScaling::Default => String::new(),
        RopeScaling::Linear { factor } => format!(" ×{factor}"),
        RopeScaling::Yarn { factor, .. } | RopeScaling::Llama3 { factor, .. } => {
            format!(" factor {factor}")
        }
        RopeScaling::LongRope {
            original_max_position_embeddings,
            ..
        } => format!(" (original {original_max_position_embeddings})"),
        RopeScaling::FrequencyFactors { factors } => {
            let largest = factors.iter().copied().fold(1.0, f64::max);
            format!(" (per-pair factors up to {largest})")
        }
        RopeScaling::Proportional {
            factor,
            rotated_fraction,
        } => {
            let scaled = if *factor == 1.0 {
                String::new()
            } else {
                format!(" ÷{factor}")
            };
            format!(" ({rotated_fraction} of the frequencies nonzero{scaled})")
        }
    };
    format!(
        "rotary {}{scaling} θ={}{}{}",
        rope.kind(),
        rope.theta,
        if rotary_dim < head_dim {
            format!(" on {rotary_dim} of {head_dim} dims")
        } else {
            String::new()
        },
        match pairing {
            RopePairing::Halves => "",
            RopePairing::Interleaved => ", interleaved pairs",
        }
    )
}

/// Layer ranges by attention kind: "0–2 sliding 128; 3 full, NoPE".
fn layer_kinds(spec: &ModelSpec) -> String {
    let label = |a: &LayerAttention| {
        if let (true, Some(l)) = (a.linear, &spec.linear_attention) {
            return format!(
                "Gated DeltaNet ({} key heads × {}, {} value heads × {}, conv {})",
                l.num_key_heads, l.key_head_dim, l.num_value_heads, l.value_head_dim, l.conv_kernel
            );
        }
        let mut s = match a.window {
            AttentionWindow::Full => "full".to_owned(),
            AttentionWindow::Sliding(w) => format!("sliding {w}"),
            AttentionWindow::Chunked(c) => format!("chunked {c}"),
        };
        if !a.rotary {
            s.push_str(", NoPE");
        }
        if a.temperature_tuning.is_some() {
            s.push_str(", temperature-tuned");
        }
        if let Some(j) = a.kv_from {
            s.push_str(&format!(", keys/values of layer {j}"));
        }
        s
    };
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, layer) in spec.layers.iter().enumerate() {
        let l = label(&layer.attention);
        match groups.iter_mut().find(|(g, _)| *g == l) {
            Some((_, members)) => members.push(i),
            None => groups.push((l, vec![i])),
        }
    }
    groups
        .iter()
        .map(|(l, members)| {
            if groups.len() == 1 {
                format!("all {l}")
            } else {
                format!("{}: {l}", ranges(members))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `0, 2, 3, 4, 7` → `0, 2–4, 7`.
fn ranges(items: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let mut j = i;
        while j + 1 < items.len() && items[j + 1] == items[j] + 1 {
            j += 1;
        }
        out.push(if j > i + 1 {
            format!("{}–{}", items[i], items[j])
        } else if j == i + 1 {
            format!("{}, {}", items[i], items[j])
        } else {
            items[i].to_string()
        });
        i = j + 1;
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_compress_runs() {
        assert_eq!(super::ranges(&[0, 2, 3, 4, 7, 8]), "0, 2–4, 7, 8");
        assert_eq!(super::ranges(&[]), "none");
    }
}
