//! Weights on the CPU in their stored precision and the kernels that read them: a [`HostMatrix`]
//! is a range of the checkpoint's memory map (or an owned buffer) in f32, bf16, f16, FP8, MXFP4
//! or a ggml block type, and [`matmul`] multiplies f32 activations by it, decoding blocks as it
//! goes. Every CPU matmul of a model goes through here (attention projections, dense and shared
//! MLPs, the router, routed experts, the LM head), so opening a checkpoint copies nothing and a
//! bf16 file stays bf16.

pub mod attention;
pub mod gemm;
pub mod ggml_quant;
pub mod math;
pub mod matrix;

pub use gemm::{has_bf16_dot, isa, matmul, matmul_bf16, Isa, Layout, Projection};
pub use ggml_quant::BlockQuant;
pub use matrix::{Bytes, Format, HostMatrix};
