//! The sparse MoE block: gate → [`route`] → routed experts (+ shared experts). Expert weights are
//! read from either checkpoint layout: one tensor per expert (`experts.N.w1` / `experts.N.gate_proj`,
//! what the hub and transformers' `save_pretrained` write) or packed (`experts.gate_up_proj`
//! `[E, 2I, H]`, `experts.down_proj` `[E, H, I]`, transformers 5's in-memory layout).

use super::cpu_experts::{self, PackedExperts, PackedMatrix};
use super::layers::{swiglu_stacked, GatedMlp, Linear};
use super::router::{route, Routing};
use super::spec::MoeSpec;
use super::weights::Prefixed;
use crate::engine::capture::{CaptureLevel, ExpertKernel, ForwardOptions, MoeRecord};
use crate::engine::timing::Stopwatch;
use crate::error::{Error, Result};
use crate::trace::LayerTimings;
use candle_core::{DType, Device, Tensor};
use std::time::Instant;

/// A layer's routed experts as candle tensors (grouped and batched paths).
#[derive(Clone, Debug)]
struct RoutedExperts {
    /// Per expert: gate and up stacked as `[2I, H]`, and down `[H, I]`. Own storage on the CPU
    /// (candle's CPU bf16 matmul fell to ~1 GFLOP/s on views into one stacked tensor); views into
    /// `stacked` on CUDA, so no weight is held twice.
    experts: Vec<(Tensor, Tensor)>,
    /// `[E, 2I, H]` and `[E, H, I]` for the batched CUDA path; `None` on the CPU.
    stacked: Option<(Tensor, Tensor)>,
}

impl RoutedExperts {
    /// From all experts at once (`[E, 2I, H]`, `[E, H, I]`) on a GPU: kept stacked for the batched
    /// path, the per-expert pairs are views into it.
    fn from_stacked(gate_up: Tensor, down: Tensor) -> Result<Self> {
        let experts = (0..gate_up.dim(0)?)
            .map(|n| Ok((gate_up.get(n)?, down.get(n)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            experts,
            stacked: Some((gate_up, down)),
        })
    }

    /// From one tensor pair per expert, stacked (and the pairs made views) on a GPU.
    fn from_experts(experts: Vec<(Tensor, Tensor)>) -> Result<Self> {
        let on_gpu = experts.first().is_some_and(|(g, _)| !g.device().is_cpu());
        if !on_gpu {
            return Ok(Self {
                experts,
                stacked: None,
            });
        }
        let (gate_up, down): (Vec<Tensor>, Vec<Tensor>) = experts.into_iter().unzip();
        Self::from_stacked(Tensor::stack(&gate_up, 0)?, Tensor::stack(&down, 0)?)
    }
}

/// Where the routed experts' weights live; chosen once at load from the device, the dtype and the
/// requested kernel ([`resolve_kernel`]).
#[derive(Clone, Debug)]
enum ExpertWeights {
    /// Tensors for candle ops: the grouped path, and CUDA's fused kernel.
    Tensors(RoutedExperts),
    /// Panels for the CPU kernel ([`PackedExperts`]), in the compute dtype (f32 or bf16).
    Packed(PackedExperts),
}

/// The expert kernel that runs for `requested` on `device` in `dtype`: fused where a fused
/// kernel exists (CPU with AVX-512F in f32/bf16; CUDA), grouped otherwise.
pub fn resolve_kernel(requested: ExpertKernel, device: &Device, dtype: DType) -> ExpertKernel {
    let fused = match device {
        Device::Cpu => cpu_experts::supported() && matches!(dtype, DType::F32 | DType::BF16),
        Device::Cuda(_) => true,
        _ => false,
    };
    match requested {
        ExpertKernel::Fused if fused => ExpertKernel::Fused,
        _ => ExpertKernel::Grouped,
    }
}
#[derive(Clone, Debug)]
struct SharedExperts {
    mlp: GatedMlp,
    /// Qwen2-MoE's `shared_expert_gate` (`[1, H]`), applied through a sigmoid.
    gate: Option<Linear>,
}

#[derive(Clone, Debug)]
pub struct MoeBlock {
    gate: Linear,
    selection_bias: Option<Vec<f32>>,
    spec: MoeSpec,
    experts: ExpertWeights,
    kernel: ExpertKernel,
    shared: Option<SharedExperts>,
}

impl MoeBlock {
    /// Loads the block under `w` (the layer's MoE module, e.g. `model.layers.3.mlp`).
    /// `kernel` has been through [`resolve_kernel`]: it decides the weights' layout.
    pub fn load(w: &Prefixed, hidden: usize, spec: &MoeSpec, kernel: ExpertKernel) -> Result<Self> {
        let e = spec.router.num_experts;
        let i = spec.expert_intermediate_size;
        let gate_dtype = if spec.gate_in_f32 {
            DType::F32
        } else {
            w.weights.dtype
        };
        let gate = Linear::from_weight(w.pp("gate").get_as("weight", &[e, hidden], gate_dtype)?);
        let selection_bias = if spec.router.selection_bias {
            let b = w
                .pp("gate")
                .get_as("e_score_correction_bias", &[e], DType::F32)?;
            Some(b.to_vec1::<f32>()?)
        } else {
            None
        };
        let packed = kernel == ExpertKernel::Fused && w.weights.device.is_cpu();
        let experts = load_routed_experts(&w.pp("experts"), e, i, hidden, packed)?;
        let shared = match &spec.shared {
            None => None,
            Some(s) => Some(SharedExperts {
                mlp: GatedMlp::load(&w.pp(s.module_name), hidden, s.intermediate_size)?,
                gate: if s.sigmoid_gate {
                    Some(Linear::load(&w.pp("shared_expert_gate"), hidden, 1, false)?)
                } else {
                    None
                },
            }),
        };
        Ok(Self {
            gate,
            selection_bias,
            spec: spec.clone(),
            experts,
            kernel,
            shared,
        })
    }

    /// Runs the block on `x` (`[tokens, hidden]`), timing router/experts/shared phases into
    /// `timings` and recording routing at `run.capture` level.
    pub fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        run: &ForwardOptions,
        watch: &mut Stopwatch,
        timings: &mut LayerTimings,
    ) -> Result<(Tensor, MoeRecord)> {
        let (tokens, _) = x.dims2()?;
        let gate_input = x.to_dtype(self.gate.weight.dtype())?;
        let logits: Vec<f32> = self
            .gate
            .forward(&gate_input)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        if logits.iter().any(|l| !l.is_finite()) {
            return Err(Error::NonFinite {
                what: "router logits",
                layer,
            });
        }
        let routing = route(&logits, self.selection_bias.as_deref(), &self.spec.router);
        timings.router = watch.lap_ms();

        let mut expert_ms = Vec::new();
        let time = run.time_experts.then_some(&mut expert_ms);
        let routed = match (&self.experts, self.kernel) {
            (ExpertWeights::Packed(packed), _) => packed_dispatch(packed, x, &routing, time)?,
            (ExpertWeights::Tensors(t), kernel) => {
                let fused = match kernel {
                    ExpertKernel::Fused => batched::dispatch(t, x, &routing)?,
                    ExpertKernel::Grouped => None,
                };
                match fused {
                    Some(y) => y,
                    None => {
                        grouped_dispatch(t, x, &routing, tokens, run.synchronize_timings, time)?
                    }
                }
            }
        };
        timings.experts = watch.lap_ms();

        let out = match &self.shared {
            None => routed,
            Some(shared) => {
                let mut s = shared.mlp.forward(x)?;
                if let Some(g) = &shared.gate {
                    s = s.broadcast_mul(&candle_nn::ops::sigmoid(&g.forward(x)?)?)?;
                }
                (routed + s)?
            }
        };
        timings.shared = watch.lap_ms();

        let record = MoeRecord {
            logits: if run.capture == CaptureLevel::Full {
                logits
            } else {
                Vec::new()
            },
            selection_bias: self.selection_bias.clone(),
            routing: if run.capture == CaptureLevel::Off {
                Routing::default()
            } else {
                routing
            },
            expert_ms,
        };
        Ok((out, record))
    }
}

/// Reads the routed experts under `ew` (`…mlp.experts`) from either checkpoint layout, as stacked
/// tensors or (`packed`) as CPU panels. Experts are converted one at a time, so loading holds at
/// most one expert twice.
fn load_routed_experts(
    ew: &Prefixed,
    e: usize,
    i: usize,
    hidden: usize,
    packed: bool,
) -> Result<ExpertWeights> {
    let fused_layout = ew.contains("gate_up_proj");
    let (gate_up_shape, down_shape) = ([e, 2 * i, hidden], [e, hidden, i]);
    if fused_layout && !ew.weights.device.is_cpu() {
        return Ok(ExpertWeights::Tensors(RoutedExperts::from_stacked(
            ew.get("gate_up_proj", &gate_up_shape)?,
            ew.get("down_proj", &down_shape)?,
        )?));
    }
    // Mixtral names its expert projections w1 (gate), w3 (up), w2 (down).
    let (g, u, d) = if ew.pp(0).pp("w1").contains("weight") {
        ("w1", "w3", "w2")
    } else {
        ("gate_proj", "up_proj", "down_proj")
    };
    // On the CPU, one expert at a time, stacked or not: a whole stacked layer loaded first would
    // hold its experts twice while they are split or packed (peak resident memory was 1.23× the
    // weights that way).
    let expert = |n: usize| -> Result<(Tensor, Tensor)> {
        if fused_layout {
            return Ok((
                ew.get_index("gate_up_proj", n, &gate_up_shape)?,
                ew.get_index("down_proj", n, &down_shape)?,
            ));
        }
        let x = ew.pp(n);
        let gate = x.pp(g).get("weight", &[i, hidden])?;
        let up = x.pp(u).get("weight", &[i, hidden])?;
        Ok((
            Tensor::cat(&[&gate, &up], 0)?,
            x.pp(d).get("weight", &[hidden, i])?,
        ))
    };
    if packed {
        let pack = |t: &Tensor, n: usize, k: usize| -> Result<PackedMatrix> {
            Ok(match t.dtype() {
                DType::BF16 => PackedMatrix::from_bf16(&t.flatten_all()?.to_vec1()?, n, k),
                _ => {
                    PackedMatrix::from_f32(&t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?, n, k)
                }
            })
        };
        let mut experts = PackedExperts {
            gate_up: Vec::with_capacity(e),
            down: Vec::with_capacity(e),
        };
        for n in 0..e {
            let (gate_up, down) = expert(n)?;
            experts.gate_up.push(pack(&gate_up, 2 * i, hidden)?);
            experts.down.push(pack(&down, hidden, i)?);
        }
        return Ok(ExpertWeights::Packed(experts));
    }
    let experts = (0..e).map(expert).collect::<Result<Vec<_>>>()?;
    Ok(ExpertWeights::Tensors(RoutedExperts::from_experts(
        experts,
    )?))
}

/// The CPU fused path: activations to f32, [`PackedExperts::forward`], back to the compute dtype.
fn packed_dispatch(
    experts: &PackedExperts,
    x: &Tensor,
    routing: &Routing,
    expert_ms: Option<&mut Vec<f64>>,
) -> Result<Tensor> {
    let (tokens, hidden) = x.dims2()?;
    let num_experts = experts.gate_up.len();
    let (order, counts) = group_by_expert(routing, num_experts);
    let xs: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let y = experts.forward(
        &xs,
        routing.top_k,
        &order,
        &counts,
        &routing.weights,
        expert_ms,
    );
    Ok(Tensor::from_vec(y, (tokens, hidden), x.device())?.to_dtype(x.dtype())?)
}

/// Assignments (token, slot) ordered by expert: `order[j]` is the flat index `t * k + r` of the
/// j-th assignment, experts ascending and tokens ascending within an expert; `counts[e]` how many
/// rows expert `e` gets. A counting sort: O(tokens · k), no comparison sort.
fn group_by_expert(routing: &Routing, num_experts: usize) -> (Vec<u32>, Vec<usize>) {
    let mut counts = vec![0usize; num_experts];
    for &id in &routing.ids {
        counts[id as usize] += 1;
    }
    let mut next = Vec::with_capacity(num_experts);
    let mut offset = 0;
    for &c in &counts {
        next.push(offset);
        offset += c;
    }
    let mut order = vec![0u32; routing.ids.len()];
    for (flat, &id) in routing.ids.iter().enumerate() {
        order[next[id as usize]] = flat as u32;
        next[id as usize] += 1;
    }
    (order, counts)
}

/// The device-agnostic expert path: tokens grouped by expert once, one gather of their rows, per
/// expert two matmuls over a contiguous slice of that gather (a view, not a copy), then the outputs
/// weighted in one op and put back in token order with one gather and a sum over the k slots.
/// No per-token work and no scatter-add, so the sum order is fixed (deterministic on every device).
/// With `expert_ms`, each expert's time is recorded (synchronizing the device when asked).
fn grouped_dispatch(
    experts: &RoutedExperts,
    x: &Tensor,
    routing: &Routing,
    tokens: usize,
    synchronize: bool,
    mut expert_ms: Option<&mut Vec<f64>>,
) -> Result<Tensor> {
    let num_experts = experts.experts.len();
    let hidden = x.dim(1)?;
    if num_experts == 0 {
        return Ok(x.zeros_like()?);
    }
    let k = routing.top_k;
    let device = x.device();
    let (order, counts) = group_by_expert(routing, num_experts);
    let rows: Vec<u32> = order.iter().map(|&flat| flat / k as u32).collect();
    let weights: Vec<f32> = order
        .iter()
        .map(|&flat| routing.weights[flat as usize])
        .collect();
    // Where each flat assignment landed in the grouped order (the inverse permutation).
    let mut position = vec![0u32; order.len()];
    for (j, &flat) in order.iter().enumerate() {
        position[flat as usize] = j as u32;
    }
    let n = order.len();
    let grouped = x.index_select(&Tensor::from_vec(rows, n, device)?, 0)?;
    // Expert times are laps of their own clock (the phase stopwatch keeps timing the whole phase);
    // on a GPU each lap synchronizes first, or it would time kernel launches.
    let lap = |mark: &mut Instant| -> Result<f64> {
        if synchronize {
            device.synchronize()?;
        }
        let now = Instant::now();
        let ms = now.duration_since(*mark).as_secs_f64() * 1e3;
        *mark = now;
        Ok(ms)
    };
    let mut mark = Instant::now();
    if let Some(times) = expert_ms.as_deref_mut() {
        times.clear();
        times.resize(num_experts, 0.0);
        lap(&mut mark)?;
    }
    let mut outputs = Vec::with_capacity(num_experts);
    let mut offset = 0;
    for (expert, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let xe = grouped.narrow(0, offset, count)?;
        offset += count;
        let (gate_up, down) = &experts.experts[expert];
        let gu = xe.matmul(&gate_up.t()?)?;
        let h = swiglu_stacked(&gu)?;
        outputs.push(h.matmul(&down.t()?)?);
        if let Some(times) = expert_ms.as_deref_mut() {
            times[expert] = lap(&mut mark)?;
        }
    }
    let weights = Tensor::from_vec(weights, (n, 1), device)?.to_dtype(x.dtype())?;
    let weighted = Tensor::cat(&outputs, 0)?.broadcast_mul(&weights)?;
    let by_token = weighted.index_select(&Tensor::from_vec(position, n, device)?, 0)?;
    Ok(by_token.reshape((tokens, k, hidden))?.sum(1)?)
}

/// CUDA's fused path: every expert of a layer in one GEMM launch per projection
/// ([`ChunkedExpertMatmul`]). Each expert's rows are gathered into chunks of C rows (padding rows
/// read a zero row), every chunk is multiplied by its expert's weights in one pointer-array
/// batched GEMM, SwiGLU runs once over all chunks, and the outputs are weighted and put back in
/// token order as on the grouped path. Nothing is dropped, so routing and results are those of
/// the grouped path; a busy expert is several chunks, so skewed routing pads at most one partial
/// chunk per expert.
mod batched {
    use super::{group_by_expert, RoutedExperts};
    use crate::error::Result;
    use crate::model::expert_gemm::{chunk_rows, ChunkedExpertMatmul};
    use crate::model::router::Routing;
    use candle_core::Tensor;

    /// `None` when the experts are not stacked (the CPU keeps one tensor pair per expert).
    pub fn dispatch(
        experts: &RoutedExperts,
        x: &Tensor,
        routing: &Routing,
    ) -> Result<Option<Tensor>> {
        let Some((all_gate_up, all_down)) = &experts.stacked else {
            return Ok(None);
        };
        let (tokens, hidden) = x.dims2()?;
        let num_experts = all_gate_up.dim(0)?;
        let k = routing.top_k;
        let device = x.device();
        let (order, counts) = group_by_expert(routing, num_experts);
        let c = chunk_rows(&counts);
        // Row `tokens` of `padded` is zeros: the source of every padding slot.
        let mut rows = Vec::with_capacity(order.len() + num_experts * c);
        let mut expert_of_chunk = Vec::new();
        let mut slot_of_assignment = vec![0u32; order.len()];
        let mut offset = 0;
        for (expert, &count) in counts.iter().enumerate() {
            for &flat in &order[offset..offset + count] {
                slot_of_assignment[flat as usize] = rows.len() as u32;
                rows.push(flat / k as u32);
            }
            offset += count;
            let chunks = count.div_ceil(c);
            rows.resize(rows.len().next_multiple_of(c), tokens as u32);
            expert_of_chunk.extend(std::iter::repeat_n(expert as u32, chunks));
        }
        let slots = rows.len();
        let zero_row = Tensor::zeros((1, hidden), x.dtype(), device)?;
        let padded = Tensor::cat(&[x, &zero_row], 0)?;
        let xe = padded.index_select(&Tensor::from_vec(rows, slots, device)?, 0)?;
        let op = ChunkedExpertMatmul {
            expert_of_chunk,
            chunk_rows: c,
        };
        let gu = xe.apply_op2_no_bwd(&all_gate_up.contiguous()?, &op)?;
        let h = super::swiglu_stacked(&gu)?.contiguous()?;
        let y = h.apply_op2_no_bwd(&all_down.contiguous()?, &op)?;
        let n = order.len();
        let weights =
            Tensor::from_vec(routing.weights.clone(), (n, 1), device)?.to_dtype(x.dtype())?;
        let picked = y
            .index_select(&Tensor::from_vec(slot_of_assignment, n, device)?, 0)?
            .broadcast_mul(&weights)?;
        Ok(Some(picked.reshape((tokens, k, hidden))?.sum(1)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Random experts, stacked as on a GPU (views per expert), so the batched path runs on CPU.
    fn experts(e: usize, i: usize, h: usize) -> RoutedExperts {
        let d = &Device::Cpu;
        let gate_up = Tensor::randn(0f32, 0.5, (e, 2 * i, h), d).unwrap();
        let down = Tensor::randn(0f32, 0.5, (e, h, i), d).unwrap();
        RoutedExperts {
            experts: (0..e)
                .map(|n| (gate_up.get(n).unwrap(), down.get(n).unwrap()))
                .collect(),
            stacked: Some((gate_up, down)),
        }
    }

    fn routing(ids: Vec<u32>, k: usize) -> Routing {
        let weights = (0..ids.len()).map(|n| 0.1 + n as f32 * 0.01).collect();
        Routing {
            top_k: k,
            ids,
            weights,
        }
    }

    /// The batched (chunked) path and the packed CPU kernel compute what the grouped path
    /// computes, for even routing and for routing that sends every token to one expert.
    #[test]
    fn batched_and_packed_paths_equal_the_grouped_path() {
        let (e, i, h, k, tokens) = (5, 6, 8, 2, 40);
        let ex = experts(e, i, h);
        let x = Tensor::randn(0f32, 1.0, (tokens, h), &Device::Cpu).unwrap();
        let diff = |a: &Tensor, b: &Tensor| -> f32 {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        let even = routing(
            (0..tokens)
                .flat_map(|t| [t % 5, (t % 5 + 1 + (t / 5) % 4) % 5])
                .map(|id| id as u32)
                .collect(),
            k,
        );
        // Every token on expert 0 (40 rows: two chunks of 32), the other slot on 1 or 2.
        let skewed = routing(
            (0..tokens).flat_map(|t| [0, 1 + (t % 2) as u32]).collect(),
            k,
        );
        for r in [&even, &skewed] {
            let grouped = grouped_dispatch(&ex, &x, r, tokens, false, None).unwrap();
            let batched = batched::dispatch(&ex, &x, r).unwrap().expect("stacked");
            assert!(diff(&grouped, &batched) < 1e-5, "batched");
            if cpu_experts::supported() {
                let packed = match load_packed(&ex) {
                    ExpertWeights::Packed(p) => p,
                    ExpertWeights::Tensors(_) => unreachable!(),
                };
                let y = packed_dispatch(&packed, &x, r, None).unwrap();
                assert!(diff(&grouped, &y) < 1e-4, "packed");
            }
        }
    }

    /// Chunks: small batches get small chunks; a busy expert is cut into several chunks rather
    /// than every expert padded to it.
    #[test]
    fn chunk_rows_bounds_padding() {
        use crate::model::expert_gemm::chunk_rows;
        assert_eq!(chunk_rows(&[2, 3, 1, 0]), 8);
        let mut skewed = vec![4; 63];
        skewed.push(3840);
        let c = chunk_rows(&skewed);
        let padded: usize = skewed.iter().map(|n| n.div_ceil(c) * c).sum();
        assert!(padded <= 4096 + 64 * c, "chunks of {c} pad to {padded}");
        assert!(c <= 64, "{c}");
    }

    fn load_packed(ex: &RoutedExperts) -> ExpertWeights {
        let (gate_up, down) = ex.stacked.as_ref().unwrap();
        let (e, two_i, h) = gate_up.dims3().unwrap();
        let pack = |t: Tensor, n, k| {
            PackedMatrix::from_f32(&t.flatten_all().unwrap().to_vec1().unwrap(), n, k)
        };
        ExpertWeights::Packed(PackedExperts {
            gate_up: (0..e)
                .map(|n| pack(gate_up.get(n).unwrap(), two_i, h))
                .collect(),
            down: (0..e)
                .map(|n| pack(down.get(n).unwrap(), h, two_i / 2))
                .collect(),
        })
    }
}
