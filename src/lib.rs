//! moescope: open Mixture-of-Experts checkpoints, run them, and record how every token is routed.
//!
//! Data flows one way: [`model::checkpoint`] → [`model`] families → [`engine`] (forward pass with
//! capture) → [`trace::Trace`] (the contract) → analysis, views, export.

pub mod analysis;
pub mod engine;
pub mod error;
pub mod export;
#[cfg(feature = "gui")]
pub mod gui;
pub mod model;
pub mod trace;

pub use error::{Error, Result};
