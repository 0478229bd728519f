//! moescope: open Mixture-of-Experts checkpoints, run them, and record how every token is routed.
//!
//! Data flows one way: [`model::checkpoint`] → [`model`] families → [`engine`] (forward pass with
//! capture) → [`trace::Trace`] (the contract) → analysis, views, export. [`routing`] holds the
//! routing rules as plain functions: the model routes with them and analysis re-reads logits
//! with them, so neither depends on the other.

pub mod analysis;
pub mod atomic;
pub mod corpus;
pub mod engine;
pub mod error;
pub mod export;
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "gui")]
pub mod gui;
pub mod input;
pub mod model;
pub mod probe;
pub mod routing;
pub mod trace;
pub mod units;

pub use error::{Error, Result};
