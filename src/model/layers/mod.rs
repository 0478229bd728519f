//! Building blocks shared by every family, written once: norms, rotary embeddings, attention
//! variants (GQA with its options, MLA) and the dense gated MLP.

pub mod attention;
pub mod linear;
pub mod linear_attention;
pub mod mlp;
pub mod norm;
pub mod rotary;

pub use attention::{Attention, KvCache};
pub use linear::{Linear, Weight};
pub use mlp::{gated_activation, GatedMlp};
pub use norm::{Norm, RmsNorm};
pub use rotary::Rotary;
