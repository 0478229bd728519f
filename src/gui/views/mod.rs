//! One file per view. Each draws from the latest [`RunData`](super::run_data::RunData) and the
//! selection, keeps its own caches (textures keyed by run id), and reports intent as commands.

pub mod balance;
pub mod colored_text;
pub mod compare;
pub mod corpus;
pub mod export;
pub mod hover;
pub mod layer_heatmap;
pub mod load;
pub mod routing_map;
pub mod timings;

/// The token and MoE layer the user picked (indices into the trace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub token: Option<usize>,
    pub moe_layer: usize,
}
