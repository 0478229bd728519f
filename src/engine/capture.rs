//! What the forward pass records per MoE layer, and how much of it.

use crate::model::router::Routing;
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

/// One MoE layer's record from one forward call.
#[derive(Clone, Debug, Default)]
pub struct MoeRecord {
    /// `[tokens * experts]` raw gate logits (empty unless capture is `Full`).
    pub logits: Vec<f32>,
    /// Chosen experts and weights (empty routing when capture is `Off`).
    pub routing: Routing,
    pub selection_bias: Option<Vec<f32>>,
}

/// One transformer block's record.
#[derive(Clone, Debug, Default)]
pub struct LayerRecord {
    pub layer: usize,
    /// `None` for dense blocks.
    pub moe: Option<MoeRecord>,
    pub timings_ms: LayerTimings,
}
