//! What the forward pass records per MoE layer, and how much of it.

use crate::routing::Routing;
use crate::trace::LayerTimings;
use serde::{Deserialize, Serialize};

/// How much routing data the forward pass keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureLevel {
    /// Router logits, chosen experts and weights (the default).
    #[default]
    Full,
    /// Chosen experts and weights only: skips copying `[tokens, experts]` logits per layer.
    Routing,
    /// Nothing but timings: used to measure what capture costs.
    Off,
}

impl CaptureLevel {
    /// The level as the CLI and reports name it.
    pub fn label(self) -> &'static str {
        match self {
            CaptureLevel::Full => "full",
            CaptureLevel::Routing => "routing",
            CaptureLevel::Off => "off",
        }
    }
}

/// How the routed experts are computed. Routing is identical either way (it is decided before).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpertKernel {
    /// Tokens grouped by expert, two candle matmuls per used expert: every device and dtype.
    Grouped,
    /// All experts of a layer at once: on CPU (AVX-512F, f32/bf16) moescope's packed-panel
    /// kernel, on CUDA one batched cuBLAS GEMM per projection over chunks of each expert's rows.
    /// Where neither applies the grouped path runs, so asking for it is never an error.
    #[default]
    Fused,
}

impl ExpertKernel {
    pub fn label(self) -> &'static str {
        match self {
            ExpertKernel::Grouped => "grouped",
            ExpertKernel::Fused => "fused",
        }
    }
}

/// Per-forward settings the model layers need.
#[derive(Clone, Copy, Debug)]
pub struct ForwardOptions {
    pub capture: CaptureLevel,
    /// Synchronize the device at each phase boundary so phase timings are real on a GPU.
    pub synchronize_timings: bool,
    /// Record each expert's compute time (CPU kernel and grouped path; the batched CUDA path runs
    /// all experts in one GEMM and records none). On a GPU the grouped path then synchronizes after
    /// every expert, which costs throughput; on CPU it is free.
    pub time_experts: bool,
    /// Return the LM-head logits of every position of the call, not only the last: what scoring
    /// an intervention against the unmodified run needs (the LM head then runs on every row).
    pub every_position_logits: bool,
}

/// One MoE layer's record from one forward call.
#[derive(Clone, Debug, Default)]
pub struct MoeRecord {
    /// `[tokens * experts]` raw gate logits (empty unless capture is `Full`).
    pub logits: Vec<f32>,
    /// Chosen experts and weights (empty routing when capture is `Off`).
    pub routing: Routing,
    pub selection_bias: Option<Vec<f32>>,
    /// Compute time per expert in ms (`[experts]`, 0 for unused experts); empty unless timed.
    pub expert_ms: Vec<f64>,
    /// `[position, expert]` assignments dropped over capacity (`--drop-over-capacity`), sorted.
    pub capacity_dropped: Vec<[usize; 2]>,
}

/// One transformer block's record.
#[derive(Clone, Debug, Default)]
pub struct LayerRecord {
    pub layer: usize,
    /// `None` for dense blocks.
    pub moe: Option<MoeRecord>,
    pub timings_ms: LayerTimings,
}
