//! The engine: owns a loaded model, runs forward passes, and accumulates their routing into a
//! [`Trace`]. Tokens can be pushed in several calls; the KV cache makes the result identical to one
//! prefill, which is what live editing and generation rely on.

pub mod bench;
pub mod capture;
pub mod device;
pub mod generate;
pub mod memory;
pub mod timing;

use crate::error::{Error, Result};
use crate::model::causal_lm::CausalLm;
use crate::model::checkpoint::Checkpoint;
use crate::model::spec::WeightTarget;
use crate::routing::{Interventions, Normalization, RouterSpec, Selection};
use crate::trace::{self, LayerTimings, Matrix, MoeLayerTrace, RouterInfo, Token, Trace};
use candle_core::{DType, Device};
use capture::{CaptureLevel, ExpertKernel, ForwardOptions, LayerRecord};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub dtype: DType,
    pub device: Device,
    pub capture: CaptureLevel,
    /// Synchronize the device at every phase boundary so per-phase timings are real (GPU).
    pub synchronize_timings: bool,
    /// Most tokens one context may hold. Beyond the model's own limit, this bounds memory: the
    /// trace grows with tokens × experts × layers and attention with tokens².
    pub max_tokens: usize,
    /// Prefill runs in chunks of this many tokens through the KV cache, so attention scores stay
    /// `chunk × context` instead of `context²` (routing is identical either way: tested).
    pub prefill_chunk_tokens: usize,
    /// Set to abandon a forward pass between layers ([`Error::Cancelled`]); the desktop app sets it
    /// when a newer edit makes the running pass stale.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Told `(layers done, layers)` after each block of every forward pass.
    pub layer_progress: Option<LayerProgress>,
    pub expert_kernel: ExpertKernel,
    /// Record each expert's compute time into the trace (see [`ForwardOptions::time_experts`]).
    pub time_experts: bool,
    /// Changes to routing every forward pass applies (none by default); checked against the
    /// model when it loads and by [`Engine::set_interventions`].
    pub interventions: Interventions,
}

/// A callback told `(layers done, layers)` as a forward pass goes (progress of slow passes).
#[derive(Clone)]
pub struct LayerProgress(pub Arc<dyn Fn(usize, usize) + Send + Sync>);

impl std::fmt::Debug for LayerProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LayerProgress")
    }
}

/// Most f32 logits [`Engine::run_scoring`] keeps (1 GiB): an intervention's report holds two runs'
/// `[tokens, vocab]` logits, which for a 150k vocabulary is ~1700 tokens each.
pub const MAX_SCORED_LOGITS: usize = 1 << 28;

/// Default [`EngineOptions::max_tokens`]: far beyond what a person inspects token by token.
pub const DEFAULT_MAX_TOKENS: usize = 16_384;

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            device: Device::Cpu,
            capture: CaptureLevel::Full,
            synchronize_timings: true,
            max_tokens: DEFAULT_MAX_TOKENS,
            prefill_chunk_tokens: 512,
            cancel: None,
            layer_progress: None,
            expert_kernel: ExpertKernel::Fused,
            time_experts: true,
            interventions: Interventions::default(),
        }
    }
}

pub struct Engine {
    pub checkpoint: Checkpoint,
    model: CausalLm,
    options: EngineOptions,
    trace: Trace,
    /// Bytes of the loaded weights in the compute dtype.
    weight_bytes: usize,
    /// Phase times summed over all blocks (dense ones too) since the last reset.
    phase_totals_ms: LayerTimings,
}

impl Engine {
    /// Opens the checkpoint at `path` and loads its weights.
    pub fn load(path: &Path, options: EngineOptions) -> Result<Self> {
        Self::load_with_progress(path, options, &mut |_| true)
    }

    /// Loads with a progress callback (fraction of layers loaded) that can cancel by returning
    /// `false`; the desktop app drives its progress bar and Cancel button with it.
    pub fn load_with_progress(
        path: &Path,
        options: EngineOptions,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> Result<Self> {
        let checkpoint = Checkpoint::open(path)?;
        check_interventions(&checkpoint, &options.interventions)?;
        let weights = checkpoint.weights(options.dtype, &options.device)?;
        device::check_fits(&options.device, weights.device_bytes() as u64)?;
        let weight_bytes = weights.size_bytes();
        let mut model = CausalLm::load_with_progress(
            checkpoint.spec.clone(),
            &weights,
            options.expert_kernel,
            progress,
        )?;
        model.set_interventions(&options.interventions);
        let trace = empty_trace(&checkpoint, &options);
        Ok(Self {
            checkpoint,
            model,
            options,
            trace,
            weight_bytes,
            phase_totals_ms: LayerTimings::default(),
        })
    }

    /// The routing recorded since the last [`Engine::reset`].
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Forgets all tokens (KV cache and trace).
    pub fn reset(&mut self) {
        self.model.clear_kv_cache();
        self.trace = empty_trace(&self.checkpoint, &self.options);
        self.phase_totals_ms = LayerTimings::default();
    }

    /// Changes what later forward passes record (the benchmark toggles it to price capture).
    pub fn set_capture(&mut self, capture: CaptureLevel) {
        self.options.capture = capture;
    }

    /// Makes later passes apply `interventions` (an empty set: route as configured) and forgets
    /// the tokens run so far, whose KV cache was computed under the previous ones.
    pub fn set_interventions(&mut self, interventions: Interventions) -> Result<()> {
        check_interventions(&self.checkpoint, &interventions)?;
        self.model.set_interventions(&interventions);
        self.options.interventions = interventions;
        self.reset();
        Ok(())
    }

    /// Runs `ids` from an empty context like [`Engine::run`] and returns the LM-head logits of
    /// every position (`[ids, vocab]`, f32): what scoring a run against another needs.
    pub fn run_scoring(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        self.reset();
        let vocab = self.checkpoint.spec.vocab_size;
        let values = ids.len().saturating_mul(vocab);
        let too_large = || {
            Error::Intervention(format!(
                "scoring {} tokens against the unmodified run keeps {:.1} GB of logits per run ({} tokens × {vocab} vocabulary entries); shorten the input to at most {} tokens",
                ids.len(),
                values as f64 * 4.0 / 1e9,
                ids.len(),
                MAX_SCORED_LOGITS / vocab.max(1)
            ))
        };
        if values > MAX_SCORED_LOGITS {
            return Err(too_large());
        }
        let mut logits = Vec::new();
        logits.try_reserve_exact(values).map_err(|_| too_large())?;
        self.push(ids, Some(&mut logits))?;
        Ok(logits)
    }

    /// Bytes of the model's weights as loaded (compute dtype).
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// Attention/router/experts/shared time summed over every block, dense blocks included, since
    /// the last reset (the trace keeps per-layer times of MoE layers only).
    pub fn phase_totals_ms(&self) -> LayerTimings {
        self.phase_totals_ms
    }

    /// The expert kernel that runs ([`ExpertKernel::Fused`] only where one exists).
    pub fn expert_kernel_in_use(&self) -> ExpertKernel {
        crate::model::moe::resolve_kernel(
            self.options.expert_kernel,
            &self.options.device,
            self.options.dtype,
        )
    }

    /// Runs `ids` from an empty context and returns their trace.
    pub fn run(&mut self, ids: &[u32]) -> Result<&Trace> {
        self.reset();
        self.push_tokens(ids)?;
        Ok(&self.trace)
    }

    /// Tokenizes `text` and runs it from an empty context.
    pub fn run_prompt(&mut self, text: &str) -> Result<&Trace> {
        let ids = self.checkpoint.encode(text)?;
        self.run(&ids)
    }

    /// Appends `ids` after what was already run, extending the trace.
    pub fn push_tokens(&mut self, ids: &[u32]) -> Result<()> {
        self.push(ids, None)
    }

    /// [`Engine::push_tokens`], appending every position's logits to `every_position_logits`
    /// when given.
    fn push(
        &mut self,
        ids: &[u32],
        mut every_position_logits: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::EmptyInput);
        }
        let limit = self
            .checkpoint
            .spec
            .max_position_embeddings
            .min(self.options.max_tokens);
        let total = self.model.cached_len() + ids.len();
        if total > limit {
            return Err(Error::TooManyTokens {
                tokens: total,
                limit,
            });
        }
        // Capacity is shared by all tokens of a sequence: they are routed and dropped together.
        let mut chunk_tokens = self.options.prefill_chunk_tokens.max(1);
        if self.options.interventions.capacity.is_some() {
            if self.model.cached_len() > 0 {
                return Err(Error::Intervention(
                    "--drop-over-capacity decides over a whole sequence at once; it cannot extend a run (generation, appended tokens)".into(),
                ));
            }
            chunk_tokens = ids.len();
        }
        let forward = ForwardOptions {
            capture: self.options.capture,
            synchronize_timings: self.options.synchronize_timings,
            time_experts: self.options.time_experts,
            every_position_logits: every_position_logits.is_some(),
        };
        for chunk in ids.chunks(chunk_tokens) {
            let started = Instant::now();
            let mut records: Vec<LayerRecord> = Vec::with_capacity(self.checkpoint.spec.num_layers);
            let result = self.model.forward(
                chunk,
                total,
                &forward,
                self.options.cancel.as_deref(),
                self.options.layer_progress.as_ref().map(|p| &*p.0),
                &mut records,
            );
            let logits = match result {
                Ok(logits) => match every_position_logits.as_deref_mut() {
                    Some(every) => {
                        every.extend_from_slice(&logits);
                        let vocab = logits.len() / chunk.len();
                        logits[logits.len() - vocab..].to_vec()
                    }
                    None => logits,
                },
                Err(e) => {
                    // A pass that stopped part-way left some layers' KV caches longer than
                    // others: start clean rather than route later tokens against a torn cache.
                    self.reset();
                    return Err(e);
                }
            };
            let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
            self.append_to_trace(chunk, records, logits, elapsed_ms);
        }
        Ok(())
    }

    fn append_to_trace(
        &mut self,
        ids: &[u32],
        records: Vec<LayerRecord>,
        logits: Vec<f32>,
        elapsed_ms: f64,
    ) {
        let texts = self.checkpoint.token_texts(ids);
        self.trace.tokens.extend(
            ids.iter()
                .zip(texts)
                .map(|(&id, text)| Token::given(id, text)),
        );
        let e = self.checkpoint.spec.moe.router.num_experts;
        let mut moe_index = 0;
        for record in &records {
            let (sum, t) = (&mut self.phase_totals_ms, &record.timings_ms);
            sum.attention += t.attention;
            sum.router += t.router;
            sum.experts += t.experts;
            sum.shared += t.shared;
            sum.total += t.total;
        }
        for record in records {
            let Some(moe) = record.moe else { continue };
            let layer = &mut self.trace.moe_layers[moe_index];
            moe_index += 1;
            let k = moe.routing.top_k;
            let new_rows = moe.routing.num_tokens();
            debug_assert_eq!(moe.routing.ids.len(), new_rows * k);
            layer.topk_ids.append_rows(k, &moe.routing.ids);
            layer.topk_weights.append_rows(k, &moe.routing.weights);
            if !moe.logits.is_empty() {
                layer.router_logits.append_rows(e, &moe.logits);
            }
            layer.selection_bias = moe.selection_bias;
            layer.capacity_dropped.extend(moe.capacity_dropped);
            if !moe.expert_ms.is_empty() {
                let sums = &mut layer.expert_timings_ms;
                sums.resize(moe.expert_ms.len(), 0.0);
                sums.iter_mut()
                    .zip(&moe.expert_ms)
                    .for_each(|(s, t)| *s += t);
            }
            let t = &mut layer.timings_ms;
            let r = record.timings_ms;
            t.attention += r.attention;
            t.router += r.router;
            t.experts += r.experts;
            t.shared += r.shared;
            t.total += r.total;
        }
        self.trace.last_logits = logits;
        self.trace.forward_ms += elapsed_ms;
    }
}

/// [`Error::Intervention`] when `interventions` cannot run on the checkpoint's model.
fn check_interventions(checkpoint: &Checkpoint, interventions: &Interventions) -> Result<()> {
    let spec = &checkpoint.spec;
    let moe_layers: Vec<usize> = (0..spec.num_layers).filter(|&l| spec.is_moe(l)).collect();
    match interventions.problem(&spec.moe.router, &moe_layers) {
        Some(why) => Err(Error::Intervention(why)),
        None => Ok(()),
    }
}

fn empty_trace(checkpoint: &Checkpoint, options: &EngineOptions) -> Trace {
    let spec = &checkpoint.spec;
    let moe_layers = (0..spec.num_layers)
        .filter(|&layer| spec.is_moe(layer))
        .map(|layer| MoeLayerTrace {
            layer,
            router_logits: Matrix::empty(),
            topk_ids: Matrix::empty(),
            topk_weights: Matrix::empty(),
            selection_bias: None,
            timings_ms: Default::default(),
            expert_timings_ms: Vec::new(),
            capacity_dropped: Vec::new(),
        })
        .collect();
    // The router as the layers ran it: a top-k intervention changes k, and the description.
    let mut routed = spec.moe.router.clone();
    routed.top_k = options.interventions.top_k.unwrap_or(routed.top_k);
    Trace {
        format_version: trace::FORMAT_VERSION,
        model: trace::ModelInfo {
            path: checkpoint.dir.display().to_string(),
            architecture: spec.architecture.clone(),
            num_layers: spec.num_layers,
            num_experts: spec.moe.router.num_experts,
            top_k: routed.top_k,
            device: device::device_label(&options.device),
            dtype: device::dtype_label(options.dtype).into(),
            router: RouterInfo {
                // Without a top-k intervention, layers routing with their own k say "top-k".
                description: match options.interventions.top_k {
                    None => spec.router_description(),
                    Some(_) => routed.describe(),
                },
                ..router_info(&routed, spec.moe.weights_on)
            },
        },
        tokens: Vec::new(),
        moe_layers,
        last_logits: Vec::new(),
        forward_ms: 0.0,
        prompt_tokens: None,
        interventions: (!options.interventions.is_empty()).then(|| options.interventions.clone()),
    }
}

/// What a trace records of `router`.
fn router_info(router: &RouterSpec, weights_on: WeightTarget) -> RouterInfo {
    let (num_groups, topk_groups) = match router.selection {
        Selection::TopK => (1, 1),
        Selection::GroupLimited {
            num_groups,
            topk_groups,
            ..
        } => (num_groups, topk_groups),
    };
    RouterInfo {
        scoring: router.rule.probability_scoring().label().into(),
        rule: router.rule.label().into(),
        description: router.describe(),
        weights_on: match weights_on {
            WeightTarget::Output => "output".into(),
            WeightTarget::Input => "input".into(),
        },
        renormalize: router.normalization != Normalization::None,
        routed_scaling_factor: router.routed_scaling_factor,
        num_groups,
        topk_groups,
    }
}
