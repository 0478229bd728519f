//! Two runs compared layer by layer: two prompts, two checkpoints of one model (router
//! saturation over training, as OLMoE measures it), two dtypes or quantizations, or a run and its
//! intervention. The load's Jensen–Shannon divergence needs only the same experts; per-token
//! agreement (Jaccard of expert sets, same first expert) needs the same tokens.

use super::structure::mean_jaccard;
use super::AnalysisError;
use crate::trace::{MoeLayerTrace, Trace};
use serde::Serialize;

/// One MoE layer of the two runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerDivergence {
    pub layer: usize,
    /// JSD between the runs' load fractions (assignments per expert / all assignments), in bits:
    /// 0 for the same load, 1 for loads on disjoint experts.
    pub load_jsd_bits: f64,
    /// Same tokens only: mean over tokens of |A ∩ B| / |A ∪ B| of the two runs' expert sets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_jaccard: Option<f64>,
    /// Same tokens only: OLMoE's router saturation, with B the reference (its final training
    /// checkpoint): the mean over tokens of |A ∩ B| / |B|, the share of B's expert choices that
    /// A makes too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saturation: Option<f64>,
    /// Same tokens only: the share of tokens whose first expert is the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1_agreement: Option<f64>,
}

/// `moescope compare`'s content.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunComparison {
    pub num_tokens_a: usize,
    pub num_tokens_b: usize,
    /// Whether both runs read the same token ids (per-token agreement is then defined).
    pub same_tokens: bool,
    pub moe_layers: Vec<LayerDivergence>,
}

/// Compares run `a` with run `b`: the same MoE layers and number of experts required.
pub fn compare_runs(a: &Trace, b: &Trace) -> Result<RunComparison, AnalysisError> {
    let mismatch = |problem: String| AnalysisError::Mismatch { trace: 1, problem };
    let layers = |t: &Trace| t.moe_layers.iter().map(|l| l.layer).collect::<Vec<_>>();
    if layers(a) != layers(b) {
        return Err(mismatch(format!(
            "MoE layers {} against {}",
            list(&layers(a)),
            list(&layers(b))
        )));
    }
    if a.model.num_experts != b.model.num_experts {
        return Err(mismatch(format!(
            "{} experts against {}",
            a.model.num_experts, b.model.num_experts
        )));
    }
    let e = a.model.num_experts;
    let same_tokens = a
        .tokens
        .iter()
        .map(|t| t.id)
        .eq(b.tokens.iter().map(|t| t.id));
    let moe_layers = a
        .moe_layers
        .iter()
        .zip(&b.moe_layers)
        .map(|(la, lb)| {
            let (ra, rb) = (rows(la), rows(lb));
            let per_token = same_tokens && !ra.is_empty() && ra.len() == rb.len();
            LayerDivergence {
                layer: la.layer,
                load_jsd_bits: jsd_bits(&load_fractions(&ra, e), &load_fractions(&rb, e)),
                mean_jaccard: per_token.then(|| mean_jaccard(&ra, &rb)).flatten(),
                saturation: per_token.then(|| saturation(&ra, &rb)),
                top1_agreement: per_token.then(|| {
                    let same = ra.iter().zip(&rb).filter(|(x, y)| x.first() == y.first());
                    same.count() as f64 / ra.len() as f64
                }),
            }
        })
        .collect();
    Ok(RunComparison {
        num_tokens_a: a.tokens.len(),
        num_tokens_b: b.tokens.len(),
        same_tokens,
        moe_layers,
    })
}

fn rows(layer: &MoeLayerTrace) -> Vec<&[u32]> {
    layer.topk_ids.iter_rows().collect()
}

/// Mean over tokens of the share of `b`'s experts that `a` chose too (rows of equal count, not
/// empty).
fn saturation(a: &[&[u32]], b: &[&[u32]]) -> f64 {
    let share = |(x, y): (&&[u32], &&[u32])| {
        let shared = y.iter().filter(|e| x.contains(e)).count();
        shared as f64 / y.len().max(1) as f64
    };
    a.iter().zip(b).map(share).sum::<f64>() / a.len() as f64
}

pub(crate) fn list(layers: &[usize]) -> String {
    let shown: Vec<String> = layers.iter().map(usize::to_string).collect();
    format!("[{}]", shown.join(", "))
}

/// Assignments per expert over all of them (all zero without assignments).
fn load_fractions(rows: &[&[u32]], num_experts: usize) -> Vec<f64> {
    let mut counts = vec![0f64; num_experts];
    for &e in rows.iter().flat_map(|r| r.iter()) {
        if let Some(c) = counts.get_mut(e as usize) {
            *c += 1.0;
        }
    }
    let total: f64 = counts.iter().sum();
    if total > 0.0 {
        counts.iter_mut().for_each(|c| *c /= total);
    }
    counts
}

/// Jensen–Shannon divergence of two distributions, in bits.
pub fn jsd_bits(p: &[f64], q: &[f64]) -> f64 {
    let kl_to_mid = |x: &[f64]| -> f64 {
        x.iter()
            .zip(p.iter().zip(q))
            .filter(|(&xi, _)| xi > 0.0)
            .map(|(&xi, (&pi, &qi))| xi * (xi / ((pi + qi) / 2.0)).log2())
            .sum()
    };
    (0.5 * kl_to_mid(p) + 0.5 * kl_to_mid(q)).max(0.0)
}
