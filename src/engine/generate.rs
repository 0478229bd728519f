//! Generation: the prompt is prefilled, then each next token is chosen from the last position's
//! logits and pushed through the KV cache, so the trace holds the routing of every position, the
//! generated ones included, exactly as one prefill over prompt + continuation would route them
//! (tested). Sampling follows transformers' `generate`: greedy is the arg-max (lowest id on a
//! tie); sampling divides the logits by the temperature, keeps the smallest set of tokens whose
//! probability reaches top-p, and draws from it.

use super::Engine;
pub use crate::analysis::token::argmax;
use crate::error::{Error, Result};
use std::sync::atomic::Ordering;

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// The most probable token.
    Greedy,
    /// A draw from the tempered, top-p filtered distribution; the same seed gives the same
    /// tokens on every machine (the generator is moescope's own, not a library's whose stream
    /// may change between versions).
    Sample {
        temperature: f64,
        top_p: f64,
        seed: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    /// Tokens to add after the prompt at most.
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Tokens that end generation (kept in the trace, as transformers keeps the EOS it emits).
    pub stop_ids: Vec<u32>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A stop token was generated.
    StopToken(u32),
    /// `max_new_tokens` were generated.
    MaxNewTokens,
    /// The context reached the model's or the engine's token limit.
    ContextFull,
    /// The engine's cancel flag was set; what was generated is kept.
    Cancelled,
}

impl StopReason {
    /// The reason in words, for the CLI and the status bar.
    pub fn describe(self) -> String {
        match self {
            StopReason::StopToken(id) => format!("stop token {id}"),
            StopReason::MaxNewTokens => "max new tokens reached".into(),
            StopReason::ContextFull => "context full".into(),
            StopReason::Cancelled => "cancelled".into(),
        }
    }
}

impl Engine {
    /// Runs `prompt` from an empty context and continues it; `on_token` sees the engine (its trace, its
    /// tokenizer) after the prefill and after every generated token (streaming). A cancel during the prefill is
    /// [`Error::Cancelled`]; later, the cancel flag is read between tokens and generation stops
    /// with what it has ([`StopReason::Cancelled`]).
    pub fn generate(
        &mut self,
        prompt: &[u32],
        options: &GenerateOptions,
        on_token: &mut dyn FnMut(&Engine),
    ) -> Result<StopReason> {
        let mut sampler = Sampler::new(options.sampling)?;
        self.run(prompt)?;
        self.trace.prompt_tokens = Some(prompt.len());
        on_token(self);
        let limit = self
            .checkpoint
            .spec
            .max_position_embeddings
            .min(self.options.max_tokens);
        // Steps are one token each: fast enough that the flag is only read between them, so a
        // cancel never tears the KV cache and loses the tokens generated so far.
        let cancel = self.options.cancel.take();
        let result = (|| {
            for _ in 0..options.max_new_tokens {
                if cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                    return Ok(StopReason::Cancelled);
                }
                if self.trace.tokens.len() >= limit {
                    return Ok(StopReason::ContextFull);
                }
                let logits = &self.trace.last_logits;
                let id = sampler.next(logits);
                let logprob = log_softmax_at(logits, id as usize);
                self.push_tokens(&[id])?;
                if let Some(token) = self.trace.tokens.last_mut() {
                    token.generated = true;
                    token.logprob = Some(logprob);
                }
                on_token(self);
                if options.stop_ids.contains(&id) {
                    return Ok(StopReason::StopToken(id));
                }
            }
            Ok(StopReason::MaxNewTokens)
        })();
        self.options.cancel = cancel;
        result
    }
}

/// Chooses next tokens from logits.
pub struct Sampler {
    sampling: Sampling,
    state: u64,
}

impl Sampler {
    pub fn new(sampling: Sampling) -> Result<Self> {
        let seed = match sampling {
            Sampling::Greedy => 0,
            Sampling::Sample {
                temperature,
                top_p,
                seed,
            } => {
                if !(temperature.is_finite() && temperature > 0.0) {
                    return Err(Error::Generation(format!(
                        "temperature {temperature} must be above 0 (greedy decoding is --greedy)"
                    )));
                }
                if !(top_p > 0.0 && top_p <= 1.0) {
                    return Err(Error::Generation(format!(
                        "top-p {top_p} must be in (0, 1]"
                    )));
                }
                seed
            }
        };
        Ok(Self {
            sampling,
            state: seed,
        })
    }

    /// The next token for the distribution `logits` (`[vocab]`, finite).
    pub fn next(&mut self, logits: &[f32]) -> u32 {
        match self.sampling {
            Sampling::Greedy => argmax(logits),
            Sampling::Sample {
                temperature, top_p, ..
            } => {
                let draw = self.uniform();
                sample_top_p(logits, temperature, top_p, draw)
            }
        }
    }

    /// SplitMix64 → a uniform draw in [0, 1) with 53 random bits.
    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `ln softmax(logits)[index]`, computed in f64.
pub fn log_softmax_at(logits: &[f32], index: usize) -> f32 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    (logits[index] as f64 - max - sum.ln()) as f32
}

/// The token a uniform `draw` in [0, 1) picks from softmax(logits / temperature) restricted to
/// its top-p nucleus: tokens by descending probability (lower id first on ties) until their sum
/// reaches `top_p`, the one that crosses it included (transformers' `TopPLogitsWarper` keeps the
/// same set), then renormalized.
pub fn sample_top_p(logits: &[f32], temperature: f64, top_p: f64, draw: f64) -> u32 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) as f64;
    let mut probs: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, ((l as f64 - max) / temperature).exp()))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = 0;
    let mut cumulative = 0.0;
    for &(_, p) in &probs {
        kept += 1;
        cumulative += p / total;
        if cumulative >= top_p {
            break;
        }
    }
    let nucleus = &probs[..kept];
    let nucleus_total: f64 = nucleus.iter().map(|p| p.1).sum();
    let target = draw * nucleus_total;
    let mut acc = 0.0;
    for &(id, p) in nucleus {
        acc += p;
        if target < acc {
            return id;
        }
    }
    nucleus[kept - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_of_equal_maxima() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, -1.0]), 1);
        assert_eq!(argmax(&[5.0]), 0);
    }

    #[test]
    fn log_softmax_matches_the_definition() {
        let logits = [1.0f32, 2.0, 3.0];
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        let want = (2.0f64.exp() / z).ln();
        assert!((log_softmax_at(&logits, 1) as f64 - want).abs() < 1e-6);
    }

    #[test]
    fn top_p_keeps_the_token_that_crosses_the_threshold_and_no_more() {
        // Probabilities 0.5, 0.3, 0.2 (temperature 1): top-p 0.6 keeps {0, 1}, renormalized to
        // 0.625 / 0.375.
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        assert_eq!(sample_top_p(&logits, 1.0, 0.6, 0.0), 0);
        assert_eq!(sample_top_p(&logits, 1.0, 0.6, 0.62), 0);
        assert_eq!(sample_top_p(&logits, 1.0, 0.6, 0.63), 1);
        assert_eq!(sample_top_p(&logits, 1.0, 0.6, 0.999), 1);
        // top-p 1 keeps all three; the last 20 % of draws pick token 2.
        assert_eq!(sample_top_p(&logits, 1.0, 1.0, 0.85), 2);
        // A tiny top-p is greedy.
        assert_eq!(sample_top_p(&logits, 1.0, 1e-9, 0.999), 0);
    }

    #[test]
    fn temperature_sharpens_and_flattens() {
        // At T = 0.01 the most probable token takes virtually every draw.
        let logits = [1.0f32, 1.1, 0.9];
        assert_eq!(sample_top_p(&logits, 0.01, 1.0, 0.99), 1);
        // At a huge temperature the draw is nearly uniform over ids sorted by probability.
        assert_eq!(sample_top_p(&logits, 1e6, 1.0, 0.5), 0);
        assert_eq!(sample_top_p(&logits, 1e6, 1.0, 0.9), 2);
    }

    #[test]
    fn a_seed_gives_the_same_draws_and_bad_options_are_refused() {
        let sampling = Sampling::Sample {
            temperature: 1.0,
            top_p: 1.0,
            seed: 7,
        };
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let draws = |s: Sampling| {
            let mut sampler = Sampler::new(s).unwrap();
            (0..20).map(|_| sampler.next(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draws(sampling), draws(sampling));
        let other = Sampling::Sample {
            temperature: 1.0,
            top_p: 1.0,
            seed: 8,
        };
        assert_ne!(draws(sampling), draws(other));
        for (temperature, top_p) in [(0.0, 1.0), (f64::NAN, 1.0), (1.0, 0.0), (1.0, 1.5)] {
            let bad = Sampling::Sample {
                temperature,
                top_p,
                seed: 0,
            };
            assert!(matches!(Sampler::new(bad), Err(Error::Generation(_))));
        }
    }
}
