//! Interventions: changes to routing applied inside the forward pass, through the router, so a run
//! can ask "what if this layer used top-1", "what if expert 5 of layer 3 did not exist", "what if
//! this token went to expert 2". They are data ([`Interventions`]), checked once against the
//! model's router ([`Interventions::problem`]) and resolved per layer ([`Interventions::layer`])
//! into what [`super::route_adjusted`] and the MoE block apply.
//!
//! Noise is a pure function of (seed, layer, absolute position, index), not a stream, so a prompt
//! routed in one pass, in chunks or token by token draws the same noise: the KV-cache equality
//! that live editing and generation rely on holds for noisy runs too.

use super::{RouterSpec, RoutingRule, Selection};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One expert of one transformer block (`LAYER:EXPERT` on the command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExpertRef {
    pub layer: usize,
    pub expert: u32,
}

/// A token's experts pinned in one layer (`LAYER:TOKEN:EXPERT+EXPERT…`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForcedRoute {
    pub layer: usize,
    /// Position in the sequence (0 = first token), as in the trace.
    pub token: usize,
    pub experts: Vec<u32>,
}

/// Reproducible noise on the gate, the seeds' noisy top-k.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RouterNoise {
    /// `scale · g` added to every raw logit, g ~ Gumbel(0, 1) (Gumbel top-k sampling at
    /// `scale` = temperature).
    Gumbel { scale: f32, seed: u64 },
    /// The router's input multiplied element-wise by U(1 − eps, 1 + eps) (Switch Transformer's
    /// jitter); the experts still see the clean input.
    Jitter { eps: f32, seed: u64 },
}

/// Which assignments an expert over capacity drops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropPolicy {
    /// Each expert keeps its first C assignments in token order (Switch Transformer).
    #[default]
    Position,
    /// Each expert keeps the C assignments with the highest router probability.
    Probs,
}

impl DropPolicy {
    pub fn label(self) -> &'static str {
        match self {
            DropPolicy::Position => "position",
            DropPolicy::Probs => "probs",
        }
    }
}

/// Switch-style capacity: each expert of a layer takes C = ceil(T·k/E·CF) assignments of the T
/// tokens; the others skip it (their weight on that expert is 0; the residual carries them).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapacityDrops {
    pub capacity_factor: f64,
    #[serde(default)]
    pub policy: DropPolicy,
}

/// Everything an intervened run changes. The default changes nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interventions {
    /// Every MoE layer routes as if the config said this k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Experts removed from their layer's router (logit −∞, never selected).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ablate: Vec<ExpertRef>,
    /// Experts whose output is multiplied by 0; routing unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zero: Vec<ExpertRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub force: Vec<ForcedRoute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<RouterNoise>,
    /// Assignments beyond each expert's capacity really skip the expert. Decided over the whole
    /// sequence, so a run with it starts from an empty context and is not extended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityDrops>,
}

/// What one MoE layer does differently, resolved from [`Interventions`].
#[derive(Clone, Debug, Default)]
pub struct LayerIntervention {
    /// The layer's router with the intervened k.
    pub spec: Option<RouterSpec>,
    pub ablated: Vec<u32>,
    pub zeroed: Vec<u32>,
    /// `(position, experts)` pinned in this layer.
    pub forced: Vec<(usize, Vec<u32>)>,
    pub noise: Option<RouterNoise>,
    pub capacity: Option<CapacityDrops>,
    /// The block index, part of the noise key.
    pub layer: usize,
}

impl LayerIntervention {
    /// Whether routing in this layer is the unmodified rule.
    pub fn routes_as_configured(&self) -> bool {
        self.spec.is_none()
            && self.ablated.is_empty()
            && self.forced.is_empty()
            && !matches!(self.noise, Some(RouterNoise::Gumbel { .. }))
    }
}

impl Interventions {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Why these interventions cannot run on a model whose MoE blocks are `moe_layers` and route
    /// under `router`, if they cannot. A k the rule cannot honour is an error here, where
    /// transformers would silently fill the slot with an arbitrary expert.
    pub fn problem(&self, router: &RouterSpec, moe_layers: &[usize]) -> Option<String> {
        let e = router.num_experts;
        let k = self.top_k.unwrap_or(router.top_k);
        if let Some(top_k) = self.top_k {
            let spec = RouterSpec {
                top_k,
                ..router.clone()
            };
            if let Some(why) = spec.problem() {
                return Some(format!("--top-k {top_k}: {why}"));
            }
        }
        let layer_problem = |what: &str, layer: usize| -> Option<String> {
            (!moe_layers.contains(&layer)).then(|| {
                format!(
                    "{what}: block {layer} is not an MoE layer (MoE layers: {})",
                    list_layers(moe_layers)
                )
            })
        };
        for (what, refs) in [("--ablate", &self.ablate), ("--zero-expert", &self.zero)] {
            for r in refs.iter() {
                if let Some(why) = layer_problem(what, r.layer) {
                    return Some(why);
                }
                if r.expert as usize >= e {
                    return Some(format!(
                        "{what} {}:{}: the model has experts 0..{}",
                        r.layer,
                        r.expert,
                        e - 1
                    ));
                }
            }
        }
        for &layer in moe_layers {
            let removed = self
                .ablated_in(layer)
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            // Enough experts must survive wherever the rule may look for them: all experts, or,
            // group-limited, the kept groups even if every ablated expert sits in them.
            let reachable = match router.selection {
                Selection::TopK => e,
                Selection::GroupLimited {
                    num_groups,
                    topk_groups,
                    ..
                } => topk_groups * (e / num_groups),
            };
            if removed > 0 && reachable < removed + k {
                return Some(format!(
                    "--ablate removes {removed} experts of block {layer}: top-{k} needs {k} of the \
                     {reachable} experts its rule can reach"
                ));
            }
        }
        for f in &self.force {
            let what = format!("--force {}:{}", f.layer, f.token);
            if let Some(why) = layer_problem("--force", f.layer) {
                return Some(why);
            }
            if matches!(router.rule, RoutingRule::SparseMixer { .. }) {
                return Some(format!(
                    "{what}: sparsemixer weights are defined by its own selection, not for pinned experts"
                ));
            }
            if f.experts.len() != k {
                return Some(format!(
                    "{what}: {} experts given, the layer routes top-{k}",
                    f.experts.len()
                ));
            }
            if let Some(&bad) = f.experts.iter().find(|&&x| x as usize >= e) {
                return Some(format!("{what}: expert {bad} is not in 0..{}", e - 1));
            }
            let mut sorted = f.experts.clone();
            sorted.sort_unstable();
            if sorted.windows(2).any(|w| w[0] == w[1]) {
                return Some(format!("{what}: an expert is given twice"));
            }
            if let Some(bad) = f
                .experts
                .iter()
                .find(|&&x| self.ablated_in(f.layer).any(|a| a == x))
            {
                return Some(format!("{what}: expert {bad} is ablated in that layer"));
            }
            if self
                .force
                .iter()
                .filter(|g| g.layer == f.layer && g.token == f.token)
                .count()
                > 1
            {
                return Some(format!("{what}: the token is pinned twice in that layer"));
            }
        }
        if let Some(c) = self.capacity {
            if !(c.capacity_factor.is_finite() && c.capacity_factor > 0.0) {
                return Some(format!(
                    "--drop-over-capacity: the capacity factor must be a positive number, not {}",
                    c.capacity_factor
                ));
            }
        }
        match self.noise {
            Some(RouterNoise::Gumbel { scale, .. }) if !(scale.is_finite() && scale >= 0.0) => {
                Some(format!("gumbel noise scale must be ≥ 0, not {scale}"))
            }
            Some(RouterNoise::Jitter { eps, .. }) if !(0.0..1.0).contains(&eps) => {
                Some(format!("jitter eps must be in [0, 1), not {eps}"))
            }
            _ => None,
        }
    }

    /// The latest forced position, which the sequence must reach.
    pub fn last_forced_token(&self) -> Option<usize> {
        self.force.iter().map(|f| f.token).max()
    }

    fn ablated_in(&self, layer: usize) -> impl Iterator<Item = u32> + '_ {
        self.ablate
            .iter()
            .filter(move |r| r.layer == layer)
            .map(|r| r.expert)
    }

    /// What block `layer` (an MoE layer routing under `router`) changes.
    pub fn layer(&self, layer: usize, router: &RouterSpec) -> LayerIntervention {
        LayerIntervention {
            spec: self
                .top_k
                .filter(|&k| k != router.top_k)
                .map(|top_k| RouterSpec {
                    top_k,
                    ..router.clone()
                }),
            ablated: self.ablated_in(layer).collect(),
            zeroed: self
                .zero
                .iter()
                .filter(|r| r.layer == layer)
                .map(|r| r.expert)
                .collect(),
            forced: self
                .force
                .iter()
                .filter(|f| f.layer == layer)
                .map(|f| (f.token, f.experts.clone()))
                .collect(),
            noise: self.noise,
            capacity: self.capacity,
            layer,
        }
    }

    /// The interventions in words, for reports and figure captions.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(k) = self.top_k {
            parts.push(format!("top-{k}"));
        }
        let refs = |r: &[ExpertRef]| {
            r.iter()
                .map(|r| format!("{}:{}", r.layer, r.expert))
                .collect::<Vec<_>>()
                .join(",")
        };
        if !self.ablate.is_empty() {
            parts.push(format!("ablate {}", refs(&self.ablate)));
        }
        if !self.zero.is_empty() {
            parts.push(format!("zero expert {}", refs(&self.zero)));
        }
        for f in &self.force {
            let experts: Vec<String> = f.experts.iter().map(u32::to_string).collect();
            parts.push(format!(
                "force {}:{}:{}",
                f.layer,
                f.token,
                experts.join("+")
            ));
        }
        match self.noise {
            Some(RouterNoise::Gumbel { scale, seed }) => {
                parts.push(format!("gumbel noise {scale} (seed {seed})"))
            }
            Some(RouterNoise::Jitter { eps, seed }) => {
                parts.push(format!("input jitter {eps} (seed {seed})"))
            }
            None => {}
        }
        if let Some(c) = self.capacity {
            parts.push(format!(
                "drop over capacity CF {}, {} policy",
                c.capacity_factor,
                c.policy.label()
            ));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join("; ")
        }
    }
}

fn list_layers(layers: &[usize]) -> String {
    let shown: Vec<String> = layers.iter().take(12).map(usize::to_string).collect();
    let more = if layers.len() > 12 { ", …" } else { "" };
    format!("{}{more}", shown.join(", "))
}

/// A uniform draw in (0, 1) keyed by (seed, layer, position, index): SplitMix64 over the key.
pub fn keyed_uniform(seed: u64, layer: usize, position: usize, index: usize) -> f64 {
    let mut x = seed;
    for part in [layer as u64, position as u64, index as u64] {
        x = splitmix(x ^ part.wrapping_mul(0xD1B5_4A32_D192_ED03));
    }
    // 53 random bits, shifted off 0 so logarithms stay finite.
    ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A standard Gumbel draw keyed like [`keyed_uniform`].
pub fn keyed_gumbel(seed: u64, layer: usize, position: usize, index: usize) -> f32 {
    (-(-keyed_uniform(seed, layer, position, index).ln()).ln()) as f32
}

/// Parses `LAYER:EXPERT[,LAYER:EXPERT…]`.
pub fn parse_expert_refs(text: &str) -> Result<Vec<ExpertRef>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (layer, expert) = item
                .split_once(':')
                .ok_or_else(|| format!("'{item}' is not LAYER:EXPERT"))?;
            Ok(ExpertRef {
                layer: number(layer, item)?,
                expert: number(expert, item)?,
            })
        })
        .collect()
}

/// Parses `LAYER:TOKEN:EXPERT[+EXPERT…]`.
pub fn parse_forced_route(text: &str) -> Result<ForcedRoute, String> {
    let item = text.trim();
    let mut parts = item.split(':');
    let (Some(layer), Some(token), Some(experts), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("'{item}' is not LAYER:TOKEN:EXPERT[+EXPERT…]"));
    };
    Ok(ForcedRoute {
        layer: number(layer, item)?,
        token: number(token, item)?,
        experts: experts
            .split('+')
            .map(|x| number(x, item))
            .collect::<Result<_, _>>()?,
    })
}

/// Parses `gumbel:SCALE` or `jitter:EPS` with the run's seed.
pub fn parse_router_noise(text: &str, seed: u64) -> Result<RouterNoise, String> {
    let (kind, value) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}' is not gumbel:SCALE or jitter:EPS"))?;
    let value: f32 = value
        .trim()
        .parse()
        .map_err(|_| format!("'{value}' in '{text}' is not a number"))?;
    match kind.trim() {
        "gumbel" => Ok(RouterNoise::Gumbel { scale: value, seed }),
        "jitter" => Ok(RouterNoise::Jitter { eps: value, seed }),
        other => Err(format!("noise kind '{other}' is not gumbel or jitter")),
    }
}

fn number<T: std::str::FromStr>(text: &str, item: &str) -> Result<T, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "'{}' in '{item}' is not a non-negative integer",
            text.trim()
        )
    })
}

impl fmt::Display for ExpertRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.layer, self.expert)
    }
}
