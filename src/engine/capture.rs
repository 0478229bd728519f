//! What the forward pass records, re-exported where engine users look for it. The types live in
//! [`crate::model::record`] because the model fills them; the engine only collects them.

pub use crate::model::record::{
    CaptureLevel, ExpertKernel, ForwardOptions, LayerRecord, MoeRecord,
};
