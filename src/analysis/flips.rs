//! Routing flips: tokens whose chosen experts differ between two runs of the same tokens, typically
//! the same checkpoint in bf16/f16 against f32. Precision changes logits by a little; where two
//! experts were nearly tied, the lower-precision run picks another one — which this makes visible.

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
        for (token, flipped) in any.iter_mut().enumerate() {
            let (ra, rb) = (a.topk_ids.row(token), b.topk_ids.row(token));
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
        });
    }
    Ok(RoutingFlips {
        run: run.model.dtype.clone(),
        reference: reference.model.dtype.clone(),
        num_tokens: t,
        moe_layers,
        tokens_with_any_flip: any.iter().filter(|&&f| f).count(),
    })
}
