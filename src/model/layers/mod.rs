//! Building blocks shared by every family, written once: norms, rotary embeddings, attention
//! variants (GQA with optional q/k norm, MLA) and the dense gated MLP.

pub mod attention;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod rotary;

pub use attention::{Attention, KvCache};
pub use linear::Linear;
pub use mlp::{swiglu_stacked, GatedMlp};
pub use norm::RmsNorm;
pub use rotary::Rotary;
