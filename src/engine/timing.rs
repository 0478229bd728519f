//! Phase timing, re-exported for engine users; see [`crate::model::stopwatch`].

pub use crate::model::stopwatch::Stopwatch;
