//! `moescope bench`: prefill speed, per-phase times, capture overhead, the MoE layer's FLOP rate
//! against a dense matmul of equal FLOPs, and memory — all measured in one run, so every figure
//! comes with the baseline it is judged against. `bench/torch_baseline.py` prints the same JSON
//! keys for transformers, and `bench/compare.py` divides one by the other.

use super::capture::CaptureLevel;
use super::device::{device_label, dtype_label};
use super::Engine;
use crate::error::Result;
use crate::model::layers::gated_activation;
use crate::model::spec::Activation;
use crate::trace::LayerTimings;
use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use std::time::Instant;

/// Token ids the benchmark feeds when given a count instead of a prompt: a fixed, spread-out walk
/// over the vocabulary (`(1 + 7919·i) mod vocab`), which `bench/torch_baseline.py` reproduces.
pub fn synthetic_ids(count: usize, vocab_size: usize) -> Vec<u32> {
    (0..count)
        .map(|i| ((1 + 7919 * i as u64) % vocab_size as u64) as u32)
        .collect()
}

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub repeat: usize,
    /// Also time runs with capture off, interleaved with the captured ones, for the overhead.
    pub measure_capture_overhead: bool,
}

/// Median, min and max of repeated timings, in ms.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Self {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let median = if s.is_empty() {
            f64::NAN
        } else if s.len() % 2 == 1 {
            s[s.len() / 2]
        } else {
            (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
        };
        Self {
            median,
            min: s.first().copied().unwrap_or(f64::NAN),
            max: s.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// What `moescope bench --json` prints. Keys shared with the transformers baseline: `engine`,
/// `implementation`, `device`, `dtype`, `threads`, `tokens`, `repeat`, `prefill_ms`,
/// `tokens_per_s`, `moe_layer_ms`, `rss_mb`, `peak_rss_mb`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub engine: &'static str,
    /// The expert kernel that actually ran (`grouped` or `fused`).
    pub implementation: String,
    pub model: String,
    pub architecture: String,
    pub device: String,
    pub dtype: String,
    pub threads: usize,
    pub tokens: usize,
    pub repeat: usize,
    pub capture: CaptureLevel,
    pub load_ms: f64,
    /// Whole prefill (all layers and the LM head of the last position).
    pub prefill_ms: Spread,
    pub tokens_per_s: f64,
    /// One MoE block (router + routed experts + shared experts), mean over MoE layers, median over
    /// runs.
    pub moe_layer_ms: f64,
    /// Per phase, summed over layers, median over runs.
    pub phases_ms: LayerTimings,
    /// Prefill with capture off (median), when measured.
    pub prefill_no_capture_ms: Option<f64>,
    /// `prefill_ms.median / prefill_no_capture_ms − 1`.
    pub capture_overhead: Option<f64>,
    /// The routed experts' FLOPs per MoE layer (`6 · tokens · k · hidden · intermediate`).
    pub expert_gflop: f64,
    /// A dense SwiGLU of the same FLOPs (`[tokens·k, hidden]` through `[2I, hidden]` and
    /// `[hidden, I]`), timed on the same device and dtype in this run.
    pub dense_equivalent_ms: f64,
    /// Dense time / (router + routed experts time): the share of a dense matmul's FLOP rate the MoE
    /// layer reaches; what is missing is dispatch overhead.
    pub moe_flop_efficiency: f64,
    pub expert_gflops_per_s: f64,
    /// The weights as stored in the checkpoint's files (what the CPU maps; a GPU holds them in
    /// the stored dtype), in MB.
    pub weights_mb: f64,
    /// Resident memory after loading and after the runs, and its peak (Linux; `None` elsewhere).
    pub rss_after_load_mb: Option<f64>,
    pub rss_mb: Option<f64>,
    pub peak_rss_mb: Option<f64>,
}

/// Runs `ids` `options.repeat` times (after one warm-up run) on a loaded engine.
pub fn run(
    engine: &mut Engine,
    ids: &[u32],
    load_ms: f64,
    options: &BenchOptions,
) -> Result<BenchReport> {
    let rss_after_load_mb = memory_mb("VmRSS:");
    let capture = engine.options().capture;
    let repeat = options.repeat.max(1);
    engine.run(ids)?;
    let mut prefill = Vec::with_capacity(repeat);
    let mut no_capture = Vec::with_capacity(repeat);
    let mut phases: Vec<LayerTimings> = Vec::with_capacity(repeat);
    let mut moe_layer = Vec::with_capacity(repeat);
    let mut router_experts = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        if options.measure_capture_overhead {
            engine.set_capture(CaptureLevel::Off);
            no_capture.push(timed_ms(|| engine.run(ids).map(|_| ()))?);
            engine.set_capture(capture);
        }
        let trace = engine.run(ids)?;
        prefill.push(trace.forward_ms);
        let layers = &trace.moe_layers;
        let n = layers.len().max(1) as f64;
        moe_layer.push(
            layers
                .iter()
                .map(|l| l.timings_ms.router + l.timings_ms.experts + l.timings_ms.shared)
                .sum::<f64>()
                / n,
        );
        router_experts.push(
            layers
                .iter()
                .map(|l| l.timings_ms.router + l.timings_ms.experts)
                .sum::<f64>()
                / n,
        );
        phases.push(engine.phase_totals_ms());
    }
    // Memory of loading and running the model, read before the dense baseline allocates its own.
    let (rss_mb, peak_rss_mb) = (memory_mb("VmRSS:"), memory_mb("VmHWM:"));
    let prefill_ms = Spread::of(&prefill);
    let prefill_no_capture_ms = options
        .measure_capture_overhead
        .then(|| Spread::of(&no_capture).median);

    let spec = &engine.checkpoint.spec;
    let (hidden, inter, k) = (
        spec.hidden_size,
        spec.moe.experts.intermediate_size,
        spec.moe.router.top_k,
    );
    let expert_gflop = 6.0 * (ids.len() * k * hidden * inter) as f64 / 1e9;
    let dtype = engine.options().dtype;
    let device = engine.options().device.clone();
    let dense_equivalent_ms =
        dense_swiglu_ms(&device, dtype, ids.len() * k, hidden, inter, repeat)?;
    let router_experts_ms = Spread::of(&router_experts).median;
    let pick =
        |f: fn(&LayerTimings) -> f64| Spread::of(&phases.iter().map(f).collect::<Vec<_>>()).median;
    Ok(BenchReport {
        engine: "moescope",
        implementation: engine.expert_kernel_in_use().label().into(),
        model: engine.checkpoint.dir.display().to_string(),
        architecture: spec.architecture.clone(),
        device: device_label(&device),
        dtype: dtype_label(dtype).into(),
        threads: candle_core::utils::get_num_threads(),
        tokens: ids.len(),
        repeat,
        capture,
        load_ms,
        tokens_per_s: ids.len() as f64 / (prefill_ms.median / 1e3),
        prefill_ms,
        moe_layer_ms: Spread::of(&moe_layer).median,
        phases_ms: LayerTimings {
            attention: pick(|t| t.attention),
            router: pick(|t| t.router),
            experts: pick(|t| t.experts),
            shared: pick(|t| t.shared),
            total: pick(|t| t.total),
        },
        capture_overhead: prefill_no_capture_ms.map(|off| prefill_ms.median / off - 1.0),
        prefill_no_capture_ms,
        expert_gflop,
        dense_equivalent_ms,
        moe_flop_efficiency: dense_equivalent_ms / router_experts_ms,
        expert_gflops_per_s: expert_gflop / (router_experts_ms / 1e3),
        weights_mb: engine.weight_bytes() as f64 / 1e6,
        rss_after_load_mb,
        rss_mb,
        peak_rss_mb,
    })
}

fn timed_ms(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let started = Instant::now();
    f()?;
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

/// Median time of `x [rows, hidden]` through a SwiGLU with one `[2I, hidden]` and one
/// `[hidden, I]` weight: the routed experts' FLOPs as one dense matmul pair, no dispatch.
fn dense_swiglu_ms(
    device: &Device,
    dtype: DType,
    rows: usize,
    hidden: usize,
    inter: usize,
    repeat: usize,
) -> Result<f64> {
    let x = Tensor::randn(0f32, 1.0, (rows, hidden), device)?.to_dtype(dtype)?;
    let gate_up = Tensor::randn(0f32, 0.02, (2 * inter, hidden), device)?.to_dtype(dtype)?;
    let down = Tensor::randn(0f32, 0.02, (hidden, inter), device)?.to_dtype(dtype)?;
    let once = || -> Result<()> {
        let gu = x.matmul(&gate_up.t()?)?;
        let h = gated_activation(&gu, Activation::SwiGlu)?;
        h.matmul(&down.t()?)?;
        device.synchronize()?;
        Ok(())
    };
    once()?;
    let mut samples = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        samples.push(timed_ms(once)?);
    }
    Ok(Spread::of(&samples).median)
}

/// A field of `/proc/self/status` (`VmRSS:`, `VmHWM:`) in MB; `None` off Linux.
fn memory_mb(field: &str) -> Option<f64> {
    let bytes = match field {
        "VmHWM:" => super::memory::peak_resident_bytes(),
        _ => super::memory::resident_bytes(),
    }?;
    Some(bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_samples() {
        let s = Spread::of(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0]).median, 2.0);
    }

    #[test]
    fn synthetic_ids_stay_in_vocab_and_match_the_python_baseline() {
        // bench/torch_baseline.py: [(1 + 7919 * i) % vocab for i in range(n)]
        assert_eq!(synthetic_ids(4, 50304), vec![1, 7920, 15839, 23758]);
        assert!(synthetic_ids(1000, 97).iter().all(|&id| id < 97));
    }
}
