//! Probing: an intervened run and the unmodified run of the same tokens, scored against each
//! other. It sits above the engine (which runs passes) and the analysis (which compares traces),
//! so neither depends on the other; the CLI and the desktop app's worker both call it.

use crate::analysis::{self, InterventionEffect};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::routing::Interventions;
use crate::trace::Trace;

/// An intervened run, the unmodified run of the same tokens, and what the interventions changed.
pub struct Probe {
    pub intervened: Trace,
    pub baseline: Trace,
    pub effect: InterventionEffect,
}

/// Runs `ids` through `engine` with its interventions and without them, and returns the
/// intervened trace and its effect. The engine keeps its interventions and an empty context
/// (setting them back forgets the tokens), so callers keep the returned trace.
pub fn intervened_run(engine: &mut Engine, ids: &[u32]) -> Result<(Trace, InterventionEffect)> {
    let probe = probe(engine, ids)?;
    Ok((probe.intervened, probe.effect))
}

/// [`intervened_run`] keeping the unmodified run's trace too (the app shows both).
pub fn probe(engine: &mut Engine, ids: &[u32]) -> Result<Probe> {
    let interventions = engine.options().interventions.clone();
    let intervened_logits = engine.run_scoring(ids)?;
    let intervened = engine.trace().clone();
    engine.set_interventions(Interventions::default())?;
    let scored = engine.run_scoring(ids);
    let baseline = engine.trace().clone();
    engine.set_interventions(interventions)?;
    let baseline_logits = scored?;
    let effect =
        analysis::intervention_effect(&baseline, &baseline_logits, &intervened, &intervened_logits)
            .map_err(|e| Error::Intervention(e.to_string()))?;
    Ok(Probe {
        intervened,
        baseline,
        effect,
    })
}
