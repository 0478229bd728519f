//! Routing flips: tokens whose chosen experts differ between two runs of the same tokens — the
//! same checkpoint in bf16/f16 against f32, or two checkpoints of one model (an FP8 release
//! against its bf16 original). Precision or quantization changes logits by a little; where two
//! experts were nearly tied, the other run picks another one — which this makes visible, with how
//! much the weights of the experts both runs chose moved and how far the next-token
//! distributions drifted.

use super::AnalysisError;
use crate::trace::Trace;
use serde::Serialize;

/// Flips of one MoE layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerFlips {
    /// Model layer index.
    pub layer: usize,
    /// Tokens whose expert *set* differs (order within top-k ignored).
    pub set_flips: Vec<usize>,
    /// Tokens whose top-1 expert differs.
    pub top1_flips: Vec<usize>,
    /// Share of all (token, slot) choices that differ: |A Δ B| / 2 / (T·k).
    pub changed_choice_fraction: f64,
    /// Mean and largest |w_run − w_reference| over the (token, expert) pairs both runs chose
    /// (0 when none agree).
    pub agreeing_weight_diff_mean: f64,
    pub agreeing_weight_diff_max: f64,
}

/// What `stats --compare-dtype` adds: the two runs' labels and per-layer flips.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoutingFlips {
    /// The run being judged (`bf16`) and the one it is compared with (`f32`).
    pub run: String,
    pub reference: String,
    pub num_tokens: usize,
    pub moe_layers: Vec<LayerFlips>,
    /// Tokens with a set flip in at least one layer.
    pub tokens_with_any_flip: usize,
    /// KL(reference ‖ run) of the last position's next-token distributions, in nats; `None` when
    /// a trace lacks last-position logits or the vocabularies differ.
    pub last_logits_kl: Option<f64>,
}

/// Compares `run` with `reference`: same tokens and layers required.
pub fn routing_flips(run: &Trace, reference: &Trace) -> Result<RoutingFlips, AnalysisError> {
    let mismatch = |problem: String| AnalysisError::Mismatch { trace: 1, problem };
    let run_ids: Vec<u32> = run.tokens.iter().map(|t| t.id).collect();
    let ref_ids: Vec<u32> = reference.tokens.iter().map(|t| t.id).collect();
    if run_ids != ref_ids {
        return Err(mismatch("the runs read different tokens".into()));
    }
    if run.moe_layers.len() != reference.moe_layers.len() {
        return Err(mismatch(format!(
            "{} MoE layers against {}",
            run.moe_layers.len(),
            reference.moe_layers.len()
        )));
    }
    let layers = |tr: &Trace| tr.moe_layers.iter().map(|l| l.layer).collect::<Vec<_>>();
    if layers(run) != layers(reference) {
        return Err(mismatch(format!(
            "MoE layers {:?} against {:?}",
            layers(run),
            layers(reference)
        )));
    }
    let t = run_ids.len();
    let mut any = vec![false; t];
    let mut moe_layers = Vec::with_capacity(run.moe_layers.len());
    for (a, b) in run.moe_layers.iter().zip(&reference.moe_layers) {
        let k = a.topk_ids.cols();
        if a.topk_ids.rows() != t || b.topk_ids.rows() != t || b.topk_ids.cols() != k {
            return Err(AnalysisError::Malformed {
                trace: 0,
                layer: a.layer,
                problem: "routing was not captured for every token".into(),
            });
        }
        let (mut set_flips, mut top1_flips, mut changed) = (Vec::new(), Vec::new(), 0usize);
        let (mut diff_sum, mut diff_max, mut agreeing) = (0f64, 0f64, 0usize);
        let weights = a.topk_weights.rows() == t && b.topk_weights.rows() == t;
        for (token, flipped) in any.iter_mut().enumerate() {
            let (ra, rb) = (a.topk_ids.row(token), b.topk_ids.row(token));
            if weights {
                let (wa, wb) = (a.topk_weights.row(token), b.topk_weights.row(token));
                for (i, e) in ra.iter().enumerate() {
                    if let Some(j) = rb.iter().position(|x| x == e) {
                        let d = f64::from((wa[i] - wb[j]).abs());
                        diff_sum += d;
                        diff_max = diff_max.max(d);
                        agreeing += 1;
                    }
                }
            }
            let missing = ra.iter().filter(|e| !rb.contains(e)).count();
            if missing > 0 {
                set_flips.push(token);
                *flipped = true;
            }
            if ra.first() != rb.first() {
                top1_flips.push(token);
            }
            changed += missing;
        }
        moe_layers.push(LayerFlips {
            layer: a.layer,
            set_flips,
            top1_flips,
            changed_choice_fraction: changed as f64 / (t * k).max(1) as f64,
            agreeing_weight_diff_mean: diff_sum / agreeing.max(1) as f64,
            agreeing_weight_diff_max: diff_max,
        });
    }
    Ok(RoutingFlips {
        run: run.model.dtype.clone(),
        reference: reference.model.dtype.clone(),
        num_tokens: t,
        moe_layers,
        tokens_with_any_flip: any.iter().filter(|&&f| f).count(),
        last_logits_kl: super::token::kl_of_logits(&reference.last_logits, &run.last_logits),
    })
}
