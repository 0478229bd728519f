//! One function per routing rule, each turning one token's logits into its (expert, weight)
//! pairs. They follow transformers 5.23's modeling files operation by operation, in f32.

use super::{
    scores, sigmoid, GroupScore, Normalization, RouterSpec, RoutingRule, Scoring, Selection,
};

/// Buffers reused across the tokens of a block.
#[derive(Default)]
pub(super) struct Scratch {
    score: Vec<f32>,
    choice: Vec<f32>,
    order: Vec<usize>,
    group_scores: Vec<f32>,
    group_order: Vec<usize>,
    pairs: Vec<(u32, f32)>,
}

/// The token's (expert, weight) pairs under `spec`, in selection order. `excluded` experts are
/// never selected (their logits are already −∞; with a selection bias their score + bias would
/// still compete, so the choice is masked too). `forced` replaces the selection by those experts,
/// weighted as the rule weights what it selects.
pub(super) fn route_token<'a>(
    logits: &[f32],
    bias: Option<&[f32]>,
    spec: &RouterSpec,
    excluded: &[u32],
    forced: Option<&[u32]>,
    s: &'a mut Scratch,
) -> &'a mut Vec<(u32, f32)> {
    s.pairs.clear();
    match spec.rule {
        RoutingRule::SoftmaxTopK => {
            score_then_select(logits, Scoring::Softmax, bias, spec, excluded, forced, s)
        }
        RoutingRule::SigmoidTopK => {
            score_then_select(logits, Scoring::Sigmoid, bias, spec, excluded, forced, s)
        }
        RoutingRule::TopKSoftmax => topk_then_softmax(logits, spec.top_k, forced, s),
        RoutingRule::TopKSigmoid => topk_then_sigmoid(logits, spec.top_k, forced, s),
        // Refused by `Interventions::problem`: sparsemixer's weights follow its own selection.
        RoutingRule::SparseMixer { jitter_eps } => sparsemixer(logits, jitter_eps, s),
    }
    s.pairs
        .iter_mut()
        .for_each(|p| p.1 *= spec.routed_scaling_factor);
    &mut s.pairs
}

/// Indices of the `k` largest values (ties: lower index first), in descending value order.
pub(super) fn top_k_indices(values: &[f32], k: usize, out: &mut Vec<usize>) {
    out.clear();
    out.extend(0..values.len());
    // A total order (ties by index), so partial selection then sorting the k winners gives exactly
    // what a full sort would, in O(E + k log k) instead of O(E log E) per token.
    let descending = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    if k < out.len() {
        out.select_nth_unstable_by(k, descending);
        out.truncate(k);
    }
    out.sort_by(descending);
}

/// Scores for all experts, an optional selection-only bias, optional groups, top-k; the weights
/// are the unbiased scores of the chosen experts, normalized (DeepSeek-V3: "bias for selection
/// only"; ERNIE-4.5 adds its `moe_statics` bias to softmax probabilities the same way).
fn score_then_select(
    logits: &[f32],
    scoring: Scoring,
    bias: Option<&[f32]>,
    spec: &RouterSpec,
    excluded: &[u32],
    forced: Option<&[u32]>,
    s: &mut Scratch,
) {
    let e = logits.len();
    scores(logits, scoring, &mut s.score);
    if let Some(experts) = forced {
        s.pairs
            .extend(experts.iter().map(|&i| (i, s.score[i as usize])));
        return normalize(&mut s.pairs, spec.normalization);
    }
    s.choice.clear();
    s.choice.extend_from_slice(&s.score);
    if let Some(b) = bias {
        s.choice.iter_mut().zip(b).for_each(|(c, b)| *c += b);
    }
    for &x in excluded {
        s.choice[x as usize] = f32::NEG_INFINITY;
    }
    if let Selection::GroupLimited {
        num_groups,
        topk_groups,
        group_score,
    } = spec.selection
    {
        let size = e / num_groups;
        s.group_scores.clear();
        for g in s.choice.chunks_exact(size) {
            s.group_scores.push(match group_score {
                GroupScore::Max => g.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                GroupScore::TopTwoSum => {
                    top_k_indices(g, 2, &mut s.order);
                    s.order.iter().map(|&i| g[i]).sum()
                }
            });
        }
        top_k_indices(&s.group_scores, topk_groups, &mut s.group_order);
        for (g, chunk) in s.choice.chunks_exact_mut(size).enumerate() {
            if !s.group_order.contains(&g) {
                chunk.fill(f32::NEG_INFINITY);
            }
        }
    }
    top_k_indices(&s.choice, spec.top_k, &mut s.order);
    s.pairs
        .extend(s.order.iter().map(|&i| (i as u32, s.score[i])));
    normalize(&mut s.pairs, spec.normalization);
}

/// Divides the chosen weights as the family's normalization says.
fn normalize(pairs: &mut [(u32, f32)], normalization: Normalization) {
    let divisor = match normalization {
        Normalization::None => return,
        Normalization::Sum => pairs.iter().map(|p| p.1).sum::<f32>(),
        Normalization::SumClamped { min } => pairs.iter().map(|p| p.1).sum::<f32>().max(min),
        // torch.norm(w, p): (Σ |w|^p)^(1/p).
        Normalization::PNorm { p } => pairs
            .iter()
            .map(|w| w.1.abs().powf(p))
            .sum::<f32>()
            .powf(1.0 / p),
    };
    pairs.iter_mut().for_each(|p| p.1 /= divisor);
}

/// The experts a top-k-first rule weights: the `forced` ones, else `topk(logits)`.
fn select_or_pin(logits: &[f32], k: usize, forced: Option<&[u32]>, s: &mut Scratch) {
    match forced {
        Some(experts) => {
            s.order.clear();
            s.order.extend(experts.iter().map(|&i| i as usize));
        }
        None => top_k_indices(logits, k, &mut s.order),
    }
}

/// GPT-OSS / Granite-MoE: `topk(logits)`, then softmax over the k chosen logits.
fn topk_then_softmax(logits: &[f32], k: usize, forced: Option<&[u32]>, s: &mut Scratch) {
    select_or_pin(logits, k, forced, s);
    let max = s
        .order
        .iter()
        .map(|&i| logits[i])
        .fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = s.order.iter().map(|&i| (logits[i] - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    s.pairs
        .extend(s.order.iter().zip(exp).map(|(&i, x)| (i as u32, x / sum)));
}

/// Llama-4: `topk(logits)`, each weight `sigmoid(logit)` (the others' −∞ gives 0: unused).
fn topk_then_sigmoid(logits: &[f32], k: usize, forced: Option<&[u32]>, s: &mut Scratch) {
    select_or_pin(logits, k, forced, s);
    s.pairs
        .extend(s.order.iter().map(|&i| (i as u32, sigmoid(logits[i]))));
}

/// Phi-3.5-MoE's sparsemixer in eval mode (transformers `models/phimoe/modeling_phimoe.py`
/// `sparsemixer`), for top-2. Slot 1 is the arg-max expert; its weight is its softmax probability
/// among the experts whose relative gap `(max − s_e) / max(|s_e|, max)` is at most `2·eps`. Slot 2
/// repeats this on the logits with slot 1's expert removed, the gap measured from the new max
/// against the *original* logits (as transformers writes it).
fn sparsemixer(logits: &[f32], eps: f32, s: &mut Scratch) {
    let threshold = 2.0 * eps;
    // torch.max(dim) returns the first maximal index.
    let argmax = |v: &[f32]| -> (usize, f32) {
        v.iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
                if x > best.1 {
                    (i, x)
                } else {
                    best
                }
            })
    };
    let slot = |masked: &[f32], max: f32, chosen: usize| -> f32 {
        // masked_fill(((max − s) / clamp(|s|, min = max)) > 2·eps, −inf), then softmax.
        let kept: Vec<f32> = masked
            .iter()
            .zip(logits)
            .map(|(&m, &orig)| {
                let factor = orig.abs().max(max);
                if (max - orig) / factor > threshold {
                    f32::NEG_INFINITY
                } else {
                    m
                }
            })
            .collect();
        let top = kept.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = kept.iter().map(|&x| (x - top).exp()).sum();
        (kept[chosen] - top).exp() / sum
    };
    let (first, max1) = argmax(logits);
    let w1 = slot(logits, max1, first);
    let mut masked = logits.to_vec();
    masked[first] = f32::NEG_INFINITY;
    let (second, max2) = argmax(&masked);
    let w2 = slot(&masked, max2, second);
    s.pairs.push((first as u32, w1));
    s.pairs.push((second as u32, w2));
}
