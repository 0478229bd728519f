//! The sparse MoE block: gate → [`route`] → routed experts (+ shared experts). Expert weights are
//! read from either checkpoint layout: one tensor per expert (`experts.N.w1` / `experts.N.gate_proj`,
//! what the hub and transformers' `save_pretrained` write) or packed (`experts.gate_up_proj`
//! `[E, 2I, H]`, `experts.down_proj` `[E, H, I]`, transformers 5's in-memory layout).

use super::layers::{GatedMlp, Linear};
use super::router::{route, Routing};
use super::spec::MoeSpec;
use super::weights::Prefixed;
use crate::engine::capture::{CaptureLevel, MoeRecord};
use crate::engine::timing::Stopwatch;
use crate::error::{Error, Result};
use crate::trace::LayerTimings;
use candle_core::{DType, Tensor};

/// One routed expert as SwiGLU: `down(silu(x Gᵀ) * (x Uᵀ))`, gate and up stacked as `[2I, H]`.
#[derive(Clone, Debug)]
struct Expert {
    gate_up: Tensor,
    down: Tensor,
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
    experts: Vec<Expert>,
    shared: Option<SharedExperts>,
}

impl MoeBlock {
    /// Loads the block under `w` (the layer's MoE module, e.g. `model.layers.3.mlp`).
    pub fn load(w: &Prefixed, hidden: usize, spec: &MoeSpec) -> Result<Self> {
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
        let ew = w.pp("experts");
        let experts = if ew.contains("gate_up_proj") {
            let gate_up = ew.get("gate_up_proj", &[e, 2 * i, hidden])?;
            let down = ew.get("down_proj", &[e, hidden, i])?;
            (0..e)
                .map(|n| {
                    Ok(Expert {
                        gate_up: gate_up.get(n)?,
                        down: down.get(n)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            // Mixtral names its expert projections w1 (gate), w3 (up), w2 (down).
            let mixtral_names = ew.pp(0).pp("w1").contains("weight");
            let (g, u, d) = if mixtral_names {
                ("w1", "w3", "w2")
            } else {
                ("gate_proj", "up_proj", "down_proj")
            };
            (0..e)
                .map(|n| {
                    let x = ew.pp(n);
                    let gate = x.pp(g).get("weight", &[i, hidden])?;
                    let up = x.pp(u).get("weight", &[i, hidden])?;
                    Ok(Expert {
                        gate_up: Tensor::cat(&[&gate, &up], 0)?,
                        down: x.pp(d).get("weight", &[hidden, i])?,
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
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
            shared,
        })
    }

    /// Runs the block on `x` (`[tokens, hidden]`), timing router/experts/shared phases into
    /// `timings` and recording routing at `capture` level.
    pub fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        capture: CaptureLevel,
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

        let routed = self.dispatch(x, &routing, tokens)?;
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
            logits: if capture == CaptureLevel::Full {
                logits
            } else {
                Vec::new()
            },
            selection_bias: self.selection_bias.clone(),
            routing: if capture == CaptureLevel::Off {
                Routing::default()
            } else {
                routing
            },
        };
        Ok((out, record))
    }

    /// Sends each token to its experts: tokens are grouped by expert once, each expert runs one
    /// batched SwiGLU over its tokens, and the weighted outputs are scatter-added back.
    fn dispatch(&self, x: &Tensor, routing: &Routing, tokens: usize) -> Result<Tensor> {
        let e = self.experts.len();
        let i = self.spec.expert_intermediate_size;
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); e];
        let mut weights: Vec<Vec<f32>> = vec![Vec::new(); e];
        for t in 0..tokens {
            for r in 0..routing.top_k {
                let id = routing.ids[t * routing.top_k + r] as usize;
                rows[id].push(t as u32);
                weights[id].push(routing.weights[t * routing.top_k + r]);
            }
        }
        let mut out = x.zeros_like()?;
        for (expert, (rows, weights)) in self.experts.iter().zip(rows.into_iter().zip(weights)) {
            if rows.is_empty() {
                continue;
            }
            let n = rows.len();
            let index = Tensor::from_vec(rows, n, x.device())?;
            let w = Tensor::from_vec(weights, (n, 1), x.device())?.to_dtype(x.dtype())?;
            let xe = x.index_select(&index, 0)?;
            let gu = xe.matmul(&expert.gate_up.t()?)?;
            let h = (candle_nn::ops::silu(&gu.narrow(1, 0, i)?)? * gu.narrow(1, i, i)?)?;
            let y = h.matmul(&expert.down.t()?)?.broadcast_mul(&w)?;
            out = out.index_add(&index, &y, 0)?;
        }
        Ok(out)
    }
}
