//! The sparse MoE block: gate → [`route`] → routed experts (+ shared experts). The spec's
//! [`ExpertSpec`] says how the experts are stored; whatever the layout, loading turns each expert
//! into a gate-then-up `[2I, H]` matrix, a down `[H, I]` matrix and optional biases, so every
//! kernel (grouped candle ops, the CPU panel kernel, CUDA's batched GEMM) computes one thing:
//! `y = Σ_k w_k · (down · act(gate_up · x + b₁) + b₂)`, or with the weight on the input (Llama-4)
//! `y = Σ_k down · act(gate_up · (w_k · x))`.

use super::cpu_experts::{Activations, ExpertMath, GateUp, HostExpert, HostExperts};
use super::host::{Layout, Projection};
use super::layers::{gated_activation, GatedMlp, Linear, Norm, RmsNorm};
use super::record::{CaptureLevel, ExpertKernel, ForwardOptions, MoeRecord};
use super::spec::{
    Activation, ExpertLayout, ExpertSpec, GateUpOrder, MoeSpec, NormSpec, Orientation, WeightTarget,
};
use super::stopwatch::Stopwatch;
use super::weights::Prefixed;
use crate::error::{Error, Result};
use crate::routing::capacity::{capacity, dropped_by_position, dropped_by_probs, Assignment};
use crate::routing::intervention::{
    keyed_uniform, CapacityDrops, DropPolicy, LayerIntervention, RouterNoise,
};
use crate::routing::{probabilities, route, route_adjusted, RouterSpec, Routing};
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
    /// `[E, 2I]` and `[E, H]` expert biases (GPT-OSS).
    biases: Option<(Tensor, Tensor)>,
}

impl RoutedExperts {
    /// From one tensor pair per expert, stacked (and the pairs made views) on a GPU.
    fn new(experts: Vec<(Tensor, Tensor)>, biases: Option<(Tensor, Tensor)>) -> Result<Self> {
        let on_gpu = experts.first().is_some_and(|(g, _)| !g.device().is_cpu());
        if !on_gpu {
            return Ok(Self {
                experts,
                stacked: None,
                biases,
            });
        }
        let (gate_up, down): (Vec<Tensor>, Vec<Tensor>) = experts.into_iter().unzip();
        let (gate_up, down) = (Tensor::stack(&gate_up, 0)?, Tensor::stack(&down, 0)?);
        let experts = (0..gate_up.dim(0)?)
            .map(|n| Ok((gate_up.get(n)?, down.get(n)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            experts,
            stacked: Some((gate_up, down)),
            biases,
        })
    }
}

/// Where the routed experts' weights live; chosen once at load from the device, the dtype and the
/// requested kernel ([`resolve_kernel`]).
#[derive(Clone, Debug)]
enum ExpertWeights {
    /// Tensors for candle ops: GPUs (grouped or batched), and the CPU's grouped path.
    Tensors(RoutedExperts),
    /// The stored matrices for the CPU kernel ([`HostExperts`]), borrowing the file mapping.
    Host(HostExperts),
}

/// The expert kernel that runs for `requested` on `device`: fused where a fused kernel exists
/// (the CPU's host kernel, any dtype and ISA; CUDA's batched GEMM), grouped otherwise.
pub fn resolve_kernel(requested: ExpertKernel, device: &Device, _dtype: DType) -> ExpertKernel {
    let fused = matches!(device, Device::Cpu | Device::Cuda(_));
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

/// Where a forward call's tokens sit: the first one's absolute position, and where the sequence
/// they belong to ends (the whole prompt when it is prefilled in chunks).
#[derive(Clone, Copy, Debug)]
pub struct ChunkPosition {
    pub first: usize,
    pub sequence_end: usize,
}

/// Gemma-4's norms around the two branches of its MoE layer (see [`BranchNorms`]).
#[derive(Clone, Debug)]
struct BranchNormLayers {
    shared_input: Norm,
    shared_output: Norm,
    experts_input: Norm,
    experts_output: Norm,
}

#[derive(Clone, Debug)]
pub struct MoeBlock {
    gate: Linear,
    /// Gemma-4: the gate reads `rms(x) · scale · hidden^-½` (this norm holds the product).
    gate_norm: Option<RmsNorm>,
    /// Gemma-4: per-expert factors on the routing weights.
    expert_scale: Option<Vec<f32>>,
    branch_norms: Option<BranchNormLayers>,
    /// Compute the logits from f32 activations (DeepSeek, GLM, ERNIE cast the router to f32).
    gate_in_f32: bool,
    selection_bias: Option<Vec<f32>>,
    router: RouterSpec,
    math: ExpertMath,
    experts: ExpertWeights,
    kernel: ExpertKernel,
    shared: Option<SharedExperts>,
    /// What this layer's routing changes in an intervened run ([`MoeBlock::set_intervention`]).
    intervention: Option<LayerIntervention>,
}

impl MoeBlock {
    /// Loads the block under `w` (the layer's MoE module, e.g. `model.layers.3.mlp`).
    /// `kernel` has been through [`resolve_kernel`]: it decides the weights' layout.
    /// `block` is the decoder block holding it, where a shared MLP may sit beside it
    /// (Granite-MoE-Shared).
    pub fn load(
        w: &Prefixed,
        block: &Prefixed,
        hidden: usize,
        spec: &MoeSpec,
        norm: &NormSpec,
        kernel: ExpertKernel,
    ) -> Result<Self> {
        let e = spec.router.num_experts;
        let gw = w.pp(spec.gate.module);
        let gate = Linear::load(&gw, hidden, e, spec.gate.bias)?;
        let selection_bias = match spec.gate.selection_bias {
            Some(name) if spec.router.selection_bias => {
                Some(w.get_vector_as(name, e, DType::F32)?.to_vec1::<f32>()?)
            }
            _ => None,
        };
        let gate_norm = match spec.gate.input_scale {
            None => None,
            Some(name) => {
                let scale = w.get_vector_as(name, hidden, DType::F32)?;
                let weight = scale.affine((hidden as f64).powf(-0.5), 0.0)?;
                Some(RmsNorm::with_f32_weight(weight, norm.eps))
            }
        };
        let expert_scale = match spec.gate.expert_scale {
            None => None,
            Some(name) => Some(w.get_vector_as(name, e, DType::F32)?.to_vec1::<f32>()?),
        };
        let branch_norms = match spec.branch_norms {
            None => None,
            Some(names) => {
                let load = |name: &str| Norm::load(&block.pp(name), hidden, norm);
                Some(BranchNormLayers {
                    shared_input: load(names.shared_input)?,
                    shared_output: load(names.shared_output)?,
                    experts_input: load(names.experts_input)?,
                    experts_output: load(names.experts_output)?,
                })
            }
        };
        let ew = w.pp_opt(spec.experts.module);
        let host = load_host_experts(&ew, &spec.experts, e, hidden)?;
        let on_cpu = w.weights.device.is_cpu();
        let experts = if on_cpu && kernel == ExpertKernel::Fused {
            ExpertWeights::Host(host)
        } else {
            // GPUs keep the stored dtype (bf16 stays bf16); the CPU's grouped path computes in
            // the compute dtype.
            let dtype = if on_cpu {
                w.weights.dtype
            } else {
                stored_dtype(&host, w.weights.dtype)
            };
            ExpertWeights::Tensors(tensor_experts(&ew, &spec.experts, &host, e, hidden, dtype)?)
        };
        let shared = match &spec.shared {
            None => None,
            Some(s) => Some(SharedExperts {
                mlp: GatedMlp::load_as(
                    &if s.beside_moe { block } else { w }.pp(s.module),
                    hidden,
                    s.intermediate_size,
                    s.bias,
                    s.projections,
                )?
                .with_activation(s.activation),
                gate: match s.sigmoid_gate {
                    Some(name) => Some(Linear::load(&w.pp(name), hidden, 1, false)?),
                    None => None,
                },
            }),
        };
        Ok(Self {
            gate,
            gate_norm,
            expert_scale,
            branch_norms,
            gate_in_f32: spec.gate.in_f32,
            selection_bias,
            router: spec.router.clone(),
            math: ExpertMath {
                activation: spec.experts.activation,
                weights_on: spec.weights_on,
            },
            experts,
            kernel,
            shared,
            intervention: None,
        })
    }

    /// The router this block routes under as configured (before any intervention).
    pub fn router(&self) -> &RouterSpec {
        &self.router
    }

    /// Makes later forward passes apply `change` (checked by `Interventions::problem`), or route
    /// as configured again with `None`.
    pub fn set_intervention(&mut self, change: Option<LayerIntervention>) {
        self.intervention = change;
    }

    /// Runs the block on `x` (`[tokens, hidden]`, the positions from `at.first` on),
    /// timing router/experts/shared phases into `timings` and recording routing at `run.capture`
    /// level. The recorded logits are the gate's output before any logit-level intervention
    /// (ablation, Gumbel noise), so they stay finite and read as the router's own opinion.
    pub fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        at: ChunkPosition,
        run: &ForwardOptions,
        watch: &mut Stopwatch,
        timings: &mut LayerTimings,
    ) -> Result<(Tensor, MoeRecord)> {
        let (tokens, _) = x.dims2()?;
        let ChunkPosition {
            first: first_position,
            sequence_end,
        } = at;
        let gate_source = match &self.gate_norm {
            Some(norm) => norm.forward(x)?,
            None => x.clone(),
        };
        let mut gate_input = if self.gate_in_f32 {
            gate_source.to_dtype(DType::F32)?
        } else {
            gate_source
        };
        let change = self.intervention.as_ref();
        if let Some(&RouterNoise::Jitter { eps, seed }) = change.and_then(|c| c.noise.as_ref()) {
            gate_input = jittered(&gate_input, eps, seed, layer, first_position)?;
        }
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
        let bias = self.selection_bias.as_deref();
        let mut routing = match change {
            Some(c) if !c.routes_as_configured() => {
                route_adjusted(&logits, bias, &self.router, c, first_position)
            }
            _ => route(&logits, bias, &self.router),
        };
        if let Some(scale) = &self.expert_scale {
            scale_by_expert(&mut routing, scale);
        }
        let capacity_dropped = match change.and_then(|c| c.capacity) {
            None => Vec::new(),
            Some(drops) => {
                if first_position != 0 || tokens != sequence_end {
                    return Err(Error::Intervention(
                        "capacity drops are decided over the whole sequence in one pass".into(),
                    ));
                }
                dropped_over_capacity(&routing, &logits, &self.router, drops)
            }
        };
        // Zeroed experts and dropped assignments keep their place in the routing (what the trace
        // records) and contribute weight 0 to the sum; with the weight on the input (Llama-4)
        // the expert sees 0 and its bias-free gated MLP returns 0, so the output is the same.
        let zeroed = change.map_or(&[][..], |c| c.zeroed.as_slice());
        let adjusted_routing = (!zeroed.is_empty() || !capacity_dropped.is_empty()).then(|| {
            weighted_zero(&routing, |token, expert| {
                zeroed.contains(&expert)
                    || capacity_dropped
                        .binary_search(&[token, expert as usize])
                        .is_ok()
            })
        });
        let dispatched = adjusted_routing.as_ref().unwrap_or(&routing);
        timings.router = watch.lap_ms();

        let mut expert_ms = Vec::new();
        let time = run.time_experts.then_some(&mut expert_ms);
        let residual = x;
        let experts_input = match &self.branch_norms {
            Some(n) => n.experts_input.forward(residual)?,
            None => residual.clone(),
        };
        let x = &experts_input;
        let routed = match (&self.experts, self.kernel) {
            (ExpertWeights::Host(host), _) => host_dispatch(host, x, dispatched, &self.math, time)?,
            (ExpertWeights::Tensors(t), kernel) => {
                let fused = match kernel {
                    ExpertKernel::Fused => batched::dispatch(t, x, dispatched, &self.math)?,
                    ExpertKernel::Grouped => None,
                };
                match fused {
                    Some(y) => y,
                    None => grouped_dispatch(
                        t,
                        x,
                        dispatched,
                        &self.math,
                        tokens,
                        run.synchronize_timings,
                        time,
                    )?,
                }
            }
        };
        let routed = match &self.branch_norms {
            Some(n) => n.experts_output.forward(&routed)?,
            None => routed,
        };
        timings.experts = watch.lap_ms();

        let out = match &self.shared {
            None => routed,
            Some(shared) => {
                let x = match &self.branch_norms {
                    Some(n) => n.shared_input.forward(residual)?,
                    None => residual.clone(),
                };
                let mut s = shared.mlp.forward(&x)?;
                if let Some(g) = &shared.gate {
                    s = s.broadcast_mul(&candle_nn::ops::sigmoid(&g.forward(&x)?)?)?;
                }
                if let Some(n) = &self.branch_norms {
                    s = n.shared_output.forward(&s)?;
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
            capacity_dropped,
        };
        Ok((out, record))
    }
}

/// `x` (`[tokens, hidden]`) times Switch-style jitter: factors U(1 − eps, 1 + eps) keyed by
/// (seed, layer, absolute position, hidden index), so chunked and one-pass runs draw alike.
fn jittered(
    x: &Tensor,
    eps: f32,
    seed: u64,
    layer: usize,
    first_position: usize,
) -> Result<Tensor> {
    let (tokens, hidden) = x.dims2()?;
    let eps = f64::from(eps);
    let factors: Vec<f32> = (0..tokens)
        .flat_map(|row| {
            (0..hidden).map(move |i| {
                let u = keyed_uniform(seed, layer, first_position + row, i);
                (1.0 + eps * (2.0 * u - 1.0)) as f32
            })
        })
        .collect();
    let factors = Tensor::from_vec(factors, (tokens, hidden), x.device())?.to_dtype(x.dtype())?;
    Ok((x * factors)?)
}

/// Multiplies each routing weight by its expert's factor (Gemma-4's `per_expert_scale`, applied
/// after renormalization) and restores each token's descending-weight order.
fn scale_by_expert(routing: &mut Routing, scale: &[f32]) {
    let k = routing.top_k.max(1);
    for (ids, weights) in routing
        .ids
        .chunks_exact_mut(k)
        .zip(routing.weights.chunks_exact_mut(k))
    {
        let mut pairs: Vec<(u32, f32)> = ids
            .iter()
            .zip(weights.iter())
            .map(|(&id, &w)| (id, w * scale[id as usize]))
            .collect();
        pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for ((id, w), (new_id, new_w)) in ids.iter_mut().zip(weights.iter_mut()).zip(pairs) {
            *id = new_id;
            *w = new_w;
        }
    }
}

/// `routing` with the weight of every (token, expert) assignment `zero` names set to 0 (the
/// experts still count as chosen).
fn weighted_zero(routing: &Routing, zero: impl Fn(usize, u32) -> bool) -> Routing {
    let mut out = routing.clone();
    let k = routing.top_k.max(1);
    for (i, (w, &id)) in out.weights.iter_mut().zip(&routing.ids).enumerate() {
        if zero(i / k, id) {
            *w = 0.0;
        }
    }
    out
}

/// The `[token, expert]` assignments of `routing` (one whole sequence) that exceed each
/// expert's capacity under `drops`, sorted: the selection `stats` reports for the same trace.
fn dropped_over_capacity(
    routing: &Routing,
    logits: &[f32],
    router: &RouterSpec,
    drops: CapacityDrops,
) -> Vec<[usize; 2]> {
    let (e, k) = (router.num_experts, routing.top_k);
    let tokens = routing.num_tokens();
    let rows: Vec<Assignment> = routing
        .ids
        .chunks_exact(k.max(1))
        .enumerate()
        .map(|(token, ids)| Assignment { token, ids })
        .collect();
    let c = capacity(tokens, k, e, drops.capacity_factor);
    match drops.policy {
        DropPolicy::Position => dropped_by_position(&rows, e, c),
        DropPolicy::Probs => {
            let scoring = router.rule.probability_scoring();
            let probs: Vec<Vec<f64>> = logits
                .chunks_exact(e)
                .map(|row| probabilities(row, scoring))
                .collect();
            dropped_by_probs(&rows, &probs, e, c)
        }
    }
}

/// One expert's weights in the tensor paths' form: gate-then-up `[2I, H]`, down `[H, I]`.
type ExpertPair = (Tensor, Tensor);

/// `p`'s `n`-th of `count` equal row blocks (one expert of a stacked projection).
fn expert_slice(p: &Projection, n: usize, count: usize) -> Projection {
    let rows = p.matrix.rows / count;
    Projection {
        matrix: p.matrix.rows(n * rows, rows),
        layout: p.layout,
    }
}

fn layout_of(orientation: Orientation) -> Layout {
    match orientation {
        Orientation::OutIn => Layout::OutIn,
        Orientation::InOut => Layout::InOut,
    }
}

/// The routed experts under `ew` as stored matrices (borrowing the mapping), whatever the
/// layout `spec` names: per-expert tensors, transformers 5's packed tensors, stacked
/// `[E, out, in]`/`[E, in, out]` (plain, FP8 or MXFP4) or DBRX's flat `[E·I, H]`.
fn load_host_experts(
    ew: &Prefixed,
    spec: &ExpertSpec,
    e: usize,
    hidden: usize,
) -> Result<HostExperts> {
    let i = spec.intermediate_size;
    let stacked = |gate_up: &str,
                   down: &str,
                   layout: Layout,
                   order: GateUpOrder|
     -> Result<Vec<HostExpert>> {
        let gu = ew.projection(gate_up, Some(e), 2 * i, hidden, layout)?;
        let d = ew.projection(down, Some(e), hidden, i, layout)?;
        Ok((0..e)
            .map(|n| HostExpert {
                gate_up: GateUp::Fused(expert_slice(&gu, n, e), order),
                down: expert_slice(&d, n, e),
            })
            .collect())
    };
    let experts = match spec.layout {
        // transformers 5's in-memory (packed) layout, when a checkpoint was saved that way.
        ExpertLayout::PerExpert { .. } if ew.contains_matrix("gate_up_proj") => stacked(
            "gate_up_proj",
            "down_proj",
            Layout::OutIn,
            GateUpOrder::Halves,
        )?,
        ExpertLayout::PerExpert { gate, up, down } => (0..e)
            .map(|n| {
                let x = ew.pp(n);
                Ok(HostExpert {
                    gate_up: GateUp::Split {
                        gate: x
                            .pp(gate)
                            .projection("weight", None, i, hidden, Layout::OutIn)?,
                        up: x
                            .pp(up)
                            .projection("weight", None, i, hidden, Layout::OutIn)?,
                    },
                    down: x
                        .pp(down)
                        .projection("weight", None, hidden, i, Layout::OutIn)?,
                })
            })
            .collect::<Result<Vec<_>>>()?,
        ExpertLayout::Stacked {
            gate_up,
            down,
            orientation,
            gate_up_order,
        } => stacked(gate_up, down, layout_of(orientation), gate_up_order)?,
        ExpertLayout::DbrxFlat => {
            let shape = [e * i, hidden];
            let (w1, v1, w2) = (
                ew.host("w1", &shape)?,
                ew.host("v1", &shape)?,
                ew.host("w2", &shape)?,
            );
            (0..e)
                .map(|n| HostExpert {
                    gate_up: GateUp::Split {
                        gate: Projection {
                            matrix: w1.rows(n * i, i),
                            layout: Layout::OutIn,
                        },
                        up: Projection {
                            matrix: v1.rows(n * i, i),
                            layout: Layout::OutIn,
                        },
                    },
                    // w2[e] is [I, H] and used as `h @ w2[e]`.
                    down: Projection {
                        matrix: w2.rows(n * i, i),
                        layout: Layout::InOut,
                    },
                })
                .collect()
        }
    };
    let biases = if spec.bias {
        let (_, down) = bias_names(spec);
        Some((
            gate_up_bias(ew, spec, e, DType::F32)?
                .flatten_all()?
                .to_vec1()?,
            ew.get_as(&format!("{down}_bias"), &[e, hidden], DType::F32)?
                .flatten_all()?
                .to_vec1()?,
        ))
    } else {
        None
    };
    Ok(HostExperts { experts, biases })
}

/// The experts' gate/up biases `[E, 2I]` in the stored order: one `gate_up_proj_bias` tensor, or
/// (GGUF, whose converter splits them) `gate_proj_bias` and `up_proj_bias` `[E, I]` joined as
/// halves, the order of the split gate/up weights they go with.
fn gate_up_bias(ew: &Prefixed, spec: &ExpertSpec, e: usize, dtype: DType) -> Result<Tensor> {
    let i = spec.intermediate_size;
    let (gate_up, _) = bias_names(spec);
    let fused = format!("{gate_up}_bias");
    if matches!(spec.layout, ExpertLayout::PerExpert { .. }) && !ew.contains(&fused) {
        let gate = ew.get_as("gate_proj_bias", &[e, i], dtype)?;
        let up = ew.get_as("up_proj_bias", &[e, i], dtype)?;
        return Ok(Tensor::cat(&[&gate, &up], 1)?);
    }
    ew.get_as(&fused, &[e, 2 * i], dtype)
}

/// Names of the stacked projections whose `_bias` tensors hold the expert biases.
fn bias_names(spec: &ExpertSpec) -> (&'static str, &'static str) {
    match spec.layout {
        ExpertLayout::Stacked { gate_up, down, .. } => (gate_up, down),
        ExpertLayout::PerExpert { .. } | ExpertLayout::DbrxFlat => ("gate_up_proj", "down_proj"),
    }
}

/// The dtype a GPU keeps the experts in: their stored float dtype, or the compute dtype for
/// quantized ones (dequantized FP8 rounded to bf16 moved router logits by 1e-2 in f32 runs).
///
/// Only when every matrix of every expert has that one float dtype: a GGUF file mixes types (Q8_0
/// gate/up with F16 down where rows are not whole blocks), and rounding the dequantized Q8_0 to
/// f16 moved router logits by 1e-3 on the GPU.
fn stored_dtype(host: &HostExperts, compute: DType) -> DType {
    use super::host::Format;
    let mut formats = host.experts.iter().flat_map(|e| {
        let gate_up = match &e.gate_up {
            GateUp::Fused(p, _) => [Some(&p.matrix.format), None],
            GateUp::Split { gate, up } => [Some(&gate.matrix.format), Some(&up.matrix.format)],
        };
        gate_up.into_iter().flatten().chain([&e.down.matrix.format])
    });
    let Some(first) = formats.next() else {
        return compute;
    };
    let dtype = match first {
        Format::F32 => DType::F32,
        Format::F16 => DType::F16,
        Format::Bf16 => DType::BF16,
        _ => return compute,
    };
    if formats.all(|f| std::mem::discriminant(f) == std::mem::discriminant(first)) {
        dtype
    } else {
        compute
    }
}

/// The experts as candle tensors in `dtype` on the compute device, in [`ExpertPair`] form
/// (de-interleaved, transposed where stored `[in, out]`), plus biases `[E, 2I]`, `[E, H]`.
fn tensor_experts(
    ew: &Prefixed,
    spec: &ExpertSpec,
    host: &HostExperts,
    e: usize,
    hidden: usize,
    dtype: DType,
) -> Result<RoutedExperts> {
    let i = spec.intermediate_size;
    let weights = ew.weights;
    let tensor = |p: &Projection, out_dim: usize, in_dim: usize| -> Result<Tensor> {
        Ok(match p.layout {
            Layout::OutIn => weights.tensor_of(&p.matrix, &[out_dim, in_dim], dtype)?,
            Layout::InOut => weights
                .tensor_of(&p.matrix, &[in_dim, out_dim], dtype)?
                .t()?
                .contiguous()?,
        })
    };
    let experts = host
        .experts
        .iter()
        .map(|x| -> Result<ExpertPair> {
            let gu = match &x.gate_up {
                GateUp::Fused(p, GateUpOrder::Halves) => tensor(p, 2 * i, hidden)?,
                GateUp::Fused(p, GateUpOrder::Interleaved) => {
                    deinterleave_rows(&tensor(p, 2 * i, hidden)?)?
                }
                GateUp::Split { gate, up } => {
                    Tensor::cat(&[&tensor(gate, i, hidden)?, &tensor(up, i, hidden)?], 0)?
                }
            };
            Ok((gu, tensor(&x.down, hidden, i)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let biases = load_expert_biases(ew, spec, e, hidden)?;
    RoutedExperts::new(experts, biases)
}

/// Rows `g0, u0, g1, u1, …` (GPT-OSS's interleaved gate/up) → `g0, g1, …, u0, u1, …`.
fn deinterleave_rows(x: &Tensor) -> Result<Tensor> {
    let (rows, cols) = x.dims2()?;
    Ok(x.reshape((rows / 2, 2, cols))?
        .transpose(0, 1)?
        .contiguous()?
        .reshape((rows, cols))?)
}

/// The experts' biases for the tensor paths: `[E, 2I]` (gate then up, de-interleaved like the
/// weights) and `[E, H]`, in the compute dtype.
fn load_expert_biases(
    ew: &Prefixed,
    spec: &ExpertSpec,
    e: usize,
    hidden: usize,
) -> Result<Option<(Tensor, Tensor)>> {
    if !spec.bias {
        return Ok(None);
    }
    let i = spec.intermediate_size;
    let (_, down) = bias_names(spec);
    let interleaved = matches!(
        spec.layout,
        ExpertLayout::Stacked {
            gate_up_order: GateUpOrder::Interleaved,
            ..
        }
    );
    let gu = gate_up_bias(ew, spec, e, ew.weights.dtype)?;
    let gu = if interleaved {
        gu.reshape((e, i, 2))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((e, 2 * i))?
    } else {
        gu
    };
    Ok(Some((gu, ew.get(&format!("{down}_bias"), &[e, hidden])?)))
}

/// The CPU fused path: activations to f32, [`HostExperts::forward`], back to the compute dtype.
fn host_dispatch(
    experts: &HostExperts,
    x: &Tensor,
    routing: &Routing,
    math: &ExpertMath,
    expert_ms: Option<&mut Vec<f64>>,
) -> Result<Tensor> {
    let (tokens, hidden) = x.dims2()?;
    let num_experts = experts.experts.len();
    let (order, counts) = group_by_expert(routing, num_experts);
    let (f32s, bf16s): (Vec<f32>, Vec<u16>) = match x.dtype() {
        DType::BF16 => (
            Vec::new(),
            x.flatten_all()?
                .to_vec1::<half::bf16>()?
                .into_iter()
                .map(half::bf16::to_bits)
                .collect(),
        ),
        _ => (
            x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
            Vec::new(),
        ),
    };
    let xs = if x.dtype() == DType::BF16 {
        Activations::Bf16(&bf16s)
    } else {
        Activations::F32(&f32s)
    };
    let y = experts.forward(
        xs,
        routing.top_k,
        &order,
        &counts,
        &routing.weights,
        math,
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

/// One expert on its rows `xe` (`[rows, H]`) with candle ops: `gate_up`, bias, activation,
/// `down`, bias. Shared by the grouped path and, per chunk of experts, by nothing else: the
/// batched path applies the same steps to all experts at once.
fn expert_ops(
    xe: &Tensor,
    (gate_up, down): &ExpertPair,
    bias: Option<(Tensor, Tensor)>,
    activation: Activation,
) -> Result<Tensor> {
    let dtype = xe.dtype();
    let mut gu = xe.matmul(&gate_up.to_dtype(dtype)?.t()?)?;
    if let Some((b, _)) = &bias {
        gu = gu.broadcast_add(&b.to_dtype(dtype)?)?;
    }
    let mut y = gated_activation(&gu, activation)?.matmul(&down.to_dtype(dtype)?.t()?)?;
    if let Some((_, b)) = &bias {
        y = y.broadcast_add(&b.to_dtype(dtype)?)?;
    }
    Ok(y)
}

/// The device-agnostic expert path: tokens grouped by expert once, one gather of their rows, per
/// expert its ops over a contiguous slice of that gather (a view, not a copy), then the outputs
/// weighted in one op and put back in token order with one gather and a sum over the k slots.
/// No per-token work and no scatter-add, so the sum order is fixed (deterministic on every device).
/// With `expert_ms`, each expert's time is recorded (synchronizing the device when asked).
fn grouped_dispatch(
    experts: &RoutedExperts,
    x: &Tensor,
    routing: &Routing,
    math: &ExpertMath,
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
    let weights = Tensor::from_vec(weights, (n, 1), device)?.to_dtype(x.dtype())?;
    let mut grouped = x.index_select(&Tensor::from_vec(rows, n, device)?, 0)?;
    if math.weights_on == WeightTarget::Input {
        grouped = grouped.broadcast_mul(&weights)?;
    }
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
        let bias = match &experts.biases {
            Some((gu, d)) => Some((gu.get(expert)?, d.get(expert)?)),
            None => None,
        };
        outputs.push(expert_ops(
            &xe,
            &experts.experts[expert],
            bias,
            math.activation,
        )?);
        if let Some(times) = expert_ms.as_deref_mut() {
            times[expert] = lap(&mut mark)?;
        }
    }
    let mut out = Tensor::cat(&outputs, 0)?;
    if math.weights_on == WeightTarget::Output {
        out = out.broadcast_mul(&weights)?;
    }
    let by_token = out.index_select(&Tensor::from_vec(position, n, device)?, 0)?;
    Ok(by_token.reshape((tokens, k, hidden))?.sum(1)?)
}

/// CUDA's fused path: every expert of a layer in one GEMM launch per projection
/// ([`ChunkedExpertMatmul`]). Each expert's rows are gathered into chunks of C rows (padding rows
/// read a zero row), every chunk is multiplied by its expert's weights in one pointer-array
/// batched GEMM, biases (gathered per row) and the activation run once over all chunks, and the
/// outputs are weighted and put back in token order as on the grouped path. Nothing is dropped,
/// so routing and results are those of the grouped path; a busy expert is several chunks, so
/// skewed routing pads at most one partial chunk per expert.
mod batched {
    use super::{gated_activation, group_by_expert, ExpertMath, RoutedExperts, WeightTarget};
    use crate::error::Result;
    use crate::model::expert_gemm::{chunk_rows, ChunkedExpertMatmul};
    use crate::routing::Routing;
    use candle_core::Tensor;

    /// `None` when the experts are not stacked (the CPU keeps one tensor pair per expert).
    pub fn dispatch(
        experts: &RoutedExperts,
        x: &Tensor,
        routing: &Routing,
        math: &ExpertMath,
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
        let mut expert_of_slot = Vec::with_capacity(order.len() + num_experts * c);
        let mut weight_of_slot = Vec::with_capacity(order.len() + num_experts * c);
        let mut slot_of_assignment = vec![0u32; order.len()];
        let mut offset = 0;
        for (expert, &count) in counts.iter().enumerate() {
            for &flat in &order[offset..offset + count] {
                slot_of_assignment[flat as usize] = rows.len() as u32;
                rows.push(flat / k as u32);
                weight_of_slot.push(routing.weights[flat as usize]);
            }
            offset += count;
            let chunks = count.div_ceil(c);
            let padded_len = rows.len().next_multiple_of(c);
            rows.resize(padded_len, tokens as u32);
            weight_of_slot.resize(padded_len, 0.0);
            expert_of_slot.resize(padded_len, expert as u32);
            expert_of_chunk.extend(std::iter::repeat_n(expert as u32, chunks));
        }
        let slots = rows.len();
        let zero_row = Tensor::zeros((1, hidden), x.dtype(), device)?;
        let padded = Tensor::cat(&[x, &zero_row], 0)?;
        let mut xe = padded.index_select(&Tensor::from_vec(rows, slots, device)?, 0)?;
        if math.weights_on == WeightTarget::Input {
            let w = Tensor::from_vec(weight_of_slot, (slots, 1), device)?.to_dtype(x.dtype())?;
            xe = xe.broadcast_mul(&w)?;
        }
        let slot_experts = Tensor::from_vec(expert_of_slot, slots, device)?;
        let op = ChunkedExpertMatmul {
            expert_of_chunk,
            chunk_rows: c,
        };
        // GPUs keep the stored dtype; the matmul runs in the activations'.
        let dtype = x.dtype();
        let mut gu = xe.apply_op2_no_bwd(&all_gate_up.to_dtype(dtype)?.contiguous()?, &op)?;
        if let Some((b, _)) = &experts.biases {
            gu = (gu + b.to_dtype(dtype)?.index_select(&slot_experts, 0)?)?;
        }
        let h = gated_activation(&gu, math.activation)?.contiguous()?;
        let mut y = h.apply_op2_no_bwd(&all_down.to_dtype(dtype)?.contiguous()?, &op)?;
        if let Some((_, b)) = &experts.biases {
            y = (y + b.to_dtype(dtype)?.index_select(&slot_experts, 0)?)?;
        }
        let n = order.len();
        let mut picked = y.index_select(&Tensor::from_vec(slot_of_assignment, n, device)?, 0)?;
        if math.weights_on == WeightTarget::Output {
            let weights =
                Tensor::from_vec(routing.weights.clone(), (n, 1), device)?.to_dtype(x.dtype())?;
            picked = picked.broadcast_mul(&weights)?;
        }
        Ok(Some(picked.reshape((tokens, k, hidden))?.sum(1)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Random experts, stacked as on a GPU (views per expert), so the batched path runs on CPU.
    fn experts(e: usize, i: usize, h: usize, biased: bool) -> RoutedExperts {
        let d = &Device::Cpu;
        let gate_up = Tensor::randn(0f32, 0.5, (e, 2 * i, h), d).unwrap();
        let down = Tensor::randn(0f32, 0.5, (e, h, i), d).unwrap();
        RoutedExperts {
            experts: (0..e)
                .map(|n| (gate_up.get(n).unwrap(), down.get(n).unwrap()))
                .collect(),
            stacked: Some((gate_up, down)),
            biases: biased.then(|| {
                (
                    Tensor::randn(0f32, 0.5, (e, 2 * i), d).unwrap(),
                    Tensor::randn(0f32, 0.5, (e, h), d).unwrap(),
                )
            }),
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

    /// The definition, token by token: Σ_k w·expert(x) or Σ_k expert(w·x).
    fn reference(ex: &RoutedExperts, x: &Tensor, r: &Routing, math: &ExpertMath) -> Tensor {
        let k = r.top_k;
        let rows: Vec<Tensor> = (0..r.num_tokens())
            .map(|t| {
                let xt = x.narrow(0, t, 1).unwrap();
                let mut acc = xt.zeros_like().unwrap();
                for slot in 0..k {
                    let (id, w) = (r.ids[t * k + slot] as usize, r.weights[t * k + slot] as f64);
                    let bias = ex
                        .biases
                        .as_ref()
                        .map(|(g, d)| (g.get(id).unwrap(), d.get(id).unwrap()));
                    let y = match math.weights_on {
                        WeightTarget::Output => {
                            (expert_ops(&xt, &ex.experts[id], bias, math.activation).unwrap() * w)
                                .unwrap()
                        }
                        WeightTarget::Input => expert_ops(
                            &(xt.clone() * w).unwrap(),
                            &ex.experts[id],
                            bias,
                            math.activation,
                        )
                        .unwrap(),
                    };
                    acc = (acc + y).unwrap();
                }
                acc
            })
            .collect();
        Tensor::cat(&rows, 0).unwrap()
    }

    fn diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// The grouped, batched (chunked) and host CPU paths compute the definition, for even
    /// routing and for routing that sends every token to one expert, for plain SwiGLU and for
    /// GPT-OSS's clamped activation with biases, with the weight on the output or the input.
    #[test]
    fn every_expert_path_equals_the_definition() {
        let (e, i, h, k, tokens) = (5, 6, 8, 2, 40);
        let x = Tensor::randn(0f32, 1.0, (tokens, h), &Device::Cpu).unwrap();
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
        let maths = [
            (
                false,
                ExpertMath {
                    activation: Activation::SwiGlu,
                    weights_on: WeightTarget::Output,
                },
            ),
            (
                false,
                ExpertMath {
                    activation: Activation::SwiGlu,
                    weights_on: WeightTarget::Input,
                },
            ),
            // limit 0.3 clamps most of these activations.
            (
                true,
                ExpertMath {
                    activation: Activation::ClampedSwiGlu {
                        alpha: 1.702,
                        limit: 0.3,
                    },
                    weights_on: WeightTarget::Output,
                },
            ),
        ];
        for (biased, math) in maths {
            let ex = experts(e, i, h, biased);
            for r in [&even, &skewed] {
                let want = reference(&ex, &x, r, &math);
                let grouped = grouped_dispatch(&ex, &x, r, &math, tokens, false, None).unwrap();
                assert!(diff(&want, &grouped) < 1e-5, "grouped {math:?}");
                let batched = batched::dispatch(&ex, &x, r, &math)
                    .unwrap()
                    .expect("stacked");
                assert!(diff(&want, &batched) < 1e-5, "batched {math:?}");
                let y = host_dispatch(&host_of(&ex), &x, r, &math, None).unwrap();
                assert!(diff(&want, &y) < 1e-4, "host {math:?}");
            }
        }
    }

    /// GPT-OSS's interleaved rows come out as gate-then-up halves.
    #[test]
    fn interleaved_gate_up_rows_are_split_into_halves() {
        let x = Tensor::from_vec(
            (0..12).map(|v| v as f32).collect::<Vec<_>>(),
            (6, 2),
            &Device::Cpu,
        )
        .unwrap();
        let y: Vec<Vec<f32>> = deinterleave_rows(&x).unwrap().to_vec2().unwrap();
        assert_eq!(
            y,
            vec![
                vec![0., 1.],
                vec![4., 5.],
                vec![8., 9.],
                vec![2., 3.],
                vec![6., 7.],
                vec![10., 11.]
            ]
        );
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

    /// The same experts as host matrices (f32, stored `[out, in]`).
    fn host_of(ex: &RoutedExperts) -> HostExperts {
        use crate::model::host::{Bytes, Format, HostMatrix};
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let proj = |t: &Tensor| {
            let (rows, cols) = t.dims2().unwrap();
            Projection {
                matrix: HostMatrix {
                    bytes: Bytes::Owned(flat(t).iter().flat_map(|v| v.to_le_bytes()).collect()),
                    format: Format::F32,
                    rows,
                    cols,
                },
                layout: Layout::OutIn,
            }
        };
        HostExperts {
            experts: ex
                .experts
                .iter()
                .map(|(gu, d)| HostExpert {
                    gate_up: GateUp::Fused(proj(gu), GateUpOrder::Halves),
                    down: proj(d),
                })
                .collect(),
            biases: ex.biases.as_ref().map(|(g, d)| (flat(g), flat(d))),
        }
    }
}
