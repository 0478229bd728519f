//! The intervention options `trace`, `stats` and `generate` share, and how their effect against
//! the unmodified run ([`moescope::probe`]) is reported.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use moescope::analysis::InterventionEffect;
use moescope::atomic;
use moescope::routing::intervention::{
    parse_expert_refs, parse_forced_route, parse_router_noise, CapacityDrops, DropPolicy,
    ExpertRef, ForcedRoute,
};
use moescope::routing::Interventions;
use std::path::{Path, PathBuf};

/// Which assignments an expert over capacity drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DropPolicyArg {
    /// Its latest in token order (Switch Transformer).
    Position,
    /// Its least probable under the router.
    Probs,
}

#[derive(Args, Clone, Debug)]
pub struct InterventionArgs {
    /// Route every MoE layer with top-K instead of the config's k (the family's rule otherwise
    /// unchanged: renormalization, scaling, groups).
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Remove experts from their layer's router: logit −∞ before the rule runs, so tokens go to
    /// the next best (LAYER is the block index; repeatable or comma separated).
    #[arg(long, value_name = "LAYER:EXPERT,…", value_parser = parse_expert_refs)]
    pub ablate: Vec<Vec<ExpertRef>>,
    /// Multiply experts' outputs by 0; routing unchanged.
    #[arg(long, value_name = "LAYER:EXPERT,…", value_parser = parse_expert_refs)]
    pub zero_expert: Vec<Vec<ExpertRef>>,
    /// Pin the token at position TOKEN to these experts in block LAYER, weighted by the rule's
    /// scores (repeatable).
    #[arg(long, value_name = "LAYER:TOKEN:EXPERT+EXPERT", value_parser = parse_forced_route)]
    pub force: Vec<ForcedRoute>,
    /// Noise on the gate: `gumbel:SCALE` adds SCALE·Gumbel(0,1) to every router logit;
    /// `jitter:EPS` multiplies the router's input by U(1−EPS, 1+EPS) (Switch Transformer).
    #[arg(long, value_name = "gumbel:SCALE|jitter:EPS")]
    pub router_noise: Option<String>,
    /// Seed of --router-noise (the same seed draws the same noise at every position).
    #[arg(long, requires = "router_noise", default_value_t = 0)]
    pub noise_seed: u64,
    /// Tokens beyond each expert's capacity C = ceil(T·k/E·CF) really skip it (weight 0, the
    /// residual carries them), CF given here or 1.25; decided over the whole prompt, so not for
    /// generate.
    #[arg(long, value_name = "CF", num_args = 0..=1, default_missing_value = "1.25")]
    pub drop_over_capacity: Option<f64>,
    /// Which assignments an expert over capacity drops: its latest (position) or its least
    /// probable (probs).
    #[arg(long, value_enum, default_value_t = DropPolicyArg::Position, requires = "drop_over_capacity")]
    pub drop_policy: DropPolicyArg,
    /// Write the intervention's effect against the unmodified run (per-position KL, top-1
    /// changes, perplexity, rerouted tokens per layer) as JSON to this file.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
}

impl InterventionArgs {
    pub fn interventions(&self) -> Result<Interventions> {
        let noise = match &self.router_noise {
            None => None,
            Some(text) => Some(
                parse_router_noise(text, self.noise_seed)
                    .map_err(|why| anyhow::anyhow!("--router-noise: {why}"))?,
            ),
        };
        let interventions = Interventions {
            top_k: self.top_k,
            ablate: self.ablate.concat(),
            zero: self.zero_expert.concat(),
            force: self.force.clone(),
            noise,
            capacity: self
                .drop_over_capacity
                .map(|capacity_factor| CapacityDrops {
                    capacity_factor,
                    policy: match self.drop_policy {
                        DropPolicyArg::Position => DropPolicy::Position,
                        DropPolicyArg::Probs => DropPolicy::Probs,
                    },
                }),
        };
        if interventions.is_empty() && self.report.is_some() {
            bail!("--report describes an intervention: give --top-k, --ablate, --zero-expert, --force, --router-noise or --drop-over-capacity");
        }
        if let Some(report) = &self.report {
            if report.extension().and_then(|e| e.to_str()) != Some("json") {
                bail!(
                    "unsupported report format for {}: use a .json file",
                    report.display()
                );
            }
        }
        Ok(interventions)
    }
}

/// An error when a pinned position lies beyond the `tokens` the run will have.
pub fn check_forced_positions(interventions: &Interventions, tokens: usize) -> Result<()> {
    if let Some(f) = interventions.force.iter().find(|f| f.token >= tokens) {
        bail!(
            "--force {}:{}: the run has {tokens} tokens (positions 0..{})",
            f.layer,
            f.token,
            tokens.saturating_sub(1)
        );
    }
    Ok(())
}

/// The effect in a few lines on stderr, and as JSON in `report` when given.
pub fn report_effect(effect: &InterventionEffect, report: Option<&Path>) -> Result<()> {
    let worst = effect
        .positions
        .iter()
        .max_by(|a, b| a.kl_nats.total_cmp(&b.kl_nats))
        .map_or(0, |p| p.position);
    eprintln!(
        "intervention ({}): next-token KL mean {:.4} nats, max {:.4} at position {worst}; most likely next token changed at {} of {} positions",
        effect.interventions,
        effect.mean_kl_nats,
        effect.max_kl_nats,
        effect.top1_changed_positions,
        effect.num_tokens
    );
    if let (Some(a), Some(b)) = (effect.perplexity_baseline, effect.perplexity_intervened) {
        eprintln!("perplexity of the tokens: {a:.3} unmodified → {b:.3} intervened");
    }
    let layers: Vec<String> = effect
        .moe_layers
        .iter()
        .map(|l| format!("{}: {}", l.layer, l.tokens_rerouted))
        .collect();
    eprintln!(
        "tokens routed to another expert set, per MoE layer (of {}): {}",
        effect.num_tokens,
        layers.join(", ")
    );
    if effect.moe_layers.iter().any(|l| l.assignments_dropped > 0) {
        let layers: Vec<String> = effect
            .moe_layers
            .iter()
            .map(|l| format!("{}: {}", l.layer, l.assignments_dropped))
            .collect();
        eprintln!(
            "assignments dropped over capacity, per MoE layer: {}",
            layers.join(", ")
        );
    }
    if let Some(c) = &effect.continuation {
        match c.first_difference {
            Some(i) => eprintln!("the continuations differ from generated token {i} on"),
            None if c.baseline_ids == c.intervened_ids => {
                eprintln!("the unmodified run generates the same tokens")
            }
            None => eprintln!(
                "the continuations agree until one stops ({} and {} tokens)",
                c.baseline_ids.len(),
                c.intervened_ids.len()
            ),
        }
        if let Some(text) = &c.baseline_text {
            eprintln!("unmodified continuation: {text}");
        }
    }
    if let Some(path) = report {
        let json = serde_json::to_vec_pretty(effect)?;
        atomic::write_bytes(path, &json)?;
        eprintln!("intervention report → {}", path.display());
    }
    Ok(())
}
