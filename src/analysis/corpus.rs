//! Corpus statistics: which experts specialize in what kind of text, as the routing papers' figures
//! show it (Mixtral's domain routing, OLMoE's domain and vocabulary specialization, co-activation).
//!
//! [`CorpusCounts`] accumulates over any number of sequences without keeping them: per domain and
//! MoE layer the assignments per expert, per layer the co-activation counts, agreement with the
//! next MoE layer and top-1 repeats of neighbouring tokens, and per (token id, expert) how often
//! the token went there. Memory grows with the vocabulary actually seen, never with the number of
//! tokens. [`CorpusCounts::report`] turns the counts into the `corpus` JSON.

use super::compare::{jsd_bits, list};
use super::structure::jaccard;
use super::AnalysisError;
use crate::trace::{ModelInfo, Trace};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Version of the corpus JSON layout ([`CorpusReport`]).
pub const CORPUS_FORMAT_VERSION: u32 = 1;

/// What `report` lists per expert in the vocabulary tables.
#[derive(Clone, Copy, Debug)]
pub struct VocabularyOptions {
    /// Tokens listed per expert.
    pub top_tokens: usize,
    /// A token is ranked only once it occurred this often (a token seen once has share 1 for its
    /// experts by chance).
    pub min_occurrences: u64,
}

impl Default for VocabularyOptions {
    fn default() -> Self {
        Self {
            top_tokens: 10,
            min_occurrences: 5,
        }
    }
}

#[derive(Clone, Debug)]
struct DomainCounts {
    name: String,
    documents: u64,
    tokens: u64,
    /// `[moe layer][expert]` assignments.
    expert_counts: Vec<Vec<u64>>,
}

/// Streaming counts over a corpus; see the module docs.
#[derive(Clone, Debug)]
pub struct CorpusCounts {
    model: ModelInfo,
    /// Transformer block index of each MoE layer.
    layers: Vec<usize>,
    domains: Vec<DomainCounts>,
    /// `[moe layer][a * E + b]`: tokens choosing both a and b (`[a * E + a]` = c_a).
    coactivation: Vec<Vec<u64>>,
    /// `[moe layer]`: Σ over tokens of the Jaccard of its sets here and at the next MoE layer.
    next_jaccard_sum: Vec<f64>,
    /// `[moe layer]`: tokens whose top-1 is the same here and at the next MoE layer.
    next_top1_same: Vec<u64>,
    /// `[moe layer]`: neighbouring token pairs of a sequence with the same top-1 expert.
    repeat_top1: Vec<u64>,
    repeat_pairs: u64,
    tokens: u64,
    occurrences: HashMap<u32, u64>,
    texts: HashMap<u32, String>,
    /// `[moe layer]`: (token id, expert) → assignments.
    routed: Vec<HashMap<(u32, u32), u64>>,
}

impl CorpusCounts {
    /// Empty counts for traces shaped like `first` (its model and MoE layers).
    pub fn new(first: &Trace) -> Self {
        let e = first.model.num_experts;
        let layers: Vec<usize> = first.moe_layers.iter().map(|l| l.layer).collect();
        let n = layers.len();
        Self {
            model: first.model.clone(),
            layers,
            domains: Vec::new(),
            coactivation: vec![vec![0; e * e]; n],
            next_jaccard_sum: vec![0.0; n],
            next_top1_same: vec![0; n],
            repeat_top1: vec![0; n],
            repeat_pairs: 0,
            tokens: 0,
            occurrences: HashMap::new(),
            texts: HashMap::new(),
            routed: vec![HashMap::new(); n],
        }
    }

    pub fn num_tokens(&self) -> u64 {
        self.tokens
    }

    /// Adds one sequence of `domain`; `new_document` counts it as a document (the later pieces
    /// of a split document are not).
    pub fn add(
        &mut self,
        domain: &str,
        trace: &Trace,
        new_document: bool,
    ) -> Result<(), AnalysisError> {
        let mismatch = |problem: String| AnalysisError::Mismatch { trace: 0, problem };
        let layers: Vec<usize> = trace.moe_layers.iter().map(|l| l.layer).collect();
        if layers != self.layers || trace.model.num_experts != self.model.num_experts {
            return Err(mismatch(format!(
                "a sequence has MoE layers {} of {} experts, the corpus {} of {}",
                list(&layers),
                trace.model.num_experts,
                list(&self.layers),
                self.model.num_experts
            )));
        }
        let e = self.model.num_experts;
        let t = trace.tokens.len();
        let index = match self.domains.iter().position(|d| d.name == domain) {
            Some(i) => i,
            None => {
                self.domains.push(DomainCounts {
                    name: domain.to_owned(),
                    documents: 0,
                    tokens: 0,
                    expert_counts: vec![vec![0; e]; self.layers.len()],
                });
                self.domains.len() - 1
            }
        };
        let rows: Vec<Vec<&[u32]>> = trace
            .moe_layers
            .iter()
            .map(|l| l.topk_ids.iter_rows().collect())
            .collect();
        if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != t) {
            return Err(AnalysisError::Malformed {
                trace: 0,
                layer: self.layers[i],
                problem: format!("{} routing rows for {t} tokens", r.len()),
            });
        }
        let domain = &mut self.domains[index];
        domain.documents += u64::from(new_document);
        domain.tokens += t as u64;
        self.tokens += t as u64;
        self.repeat_pairs += t.saturating_sub(1) as u64;
        for token in &trace.tokens {
            *self.occurrences.entry(token.id).or_default() += 1;
            self.texts
                .entry(token.id)
                .or_insert_with(|| token.text.clone());
        }
        for (l, layer_rows) in rows.iter().enumerate() {
            let counts = &mut domain.expert_counts[l];
            let co = &mut self.coactivation[l];
            let routed = &mut self.routed[l];
            for (pos, row) in layer_rows.iter().enumerate() {
                for &a in row.iter() {
                    counts[a as usize] += 1;
                    *routed.entry((trace.tokens[pos].id, a)).or_default() += 1;
                    for &b in row.iter() {
                        co[a as usize * e + b as usize] += 1;
                    }
                }
            }
            self.repeat_top1[l] += layer_rows
                .windows(2)
                .filter(|w| w[0].first() == w[1].first())
                .count() as u64;
            if let Some(next) = rows.get(l + 1) {
                for (here, there) in layer_rows.iter().zip(next) {
                    self.next_jaccard_sum[l] += jaccard(here, there);
                    self.next_top1_same[l] += u64::from(here.first() == there.first());
                }
            }
        }
        Ok(())
    }

    /// The corpus JSON's content.
    pub fn report(&self, vocabulary: VocabularyOptions) -> CorpusReport {
        let e = self.model.num_experts;
        let domains = self
            .domains
            .iter()
            .map(|d| DomainReport {
                name: d.name.clone(),
                documents: d.documents,
                tokens: d.tokens,
                moe_layers: self
                    .layers
                    .iter()
                    .zip(&d.expert_counts)
                    .map(|(&layer, counts)| DomainLayer {
                        layer,
                        expert_counts: counts.clone(),
                    })
                    .collect(),
            })
            .collect();
        let moe_layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(l, &layer)| {
                let distribution: Vec<Vec<f64>> = self
                    .domains
                    .iter()
                    .map(|d| shares(&d.expert_counts[l]))
                    .collect();
                let mut pairs = Vec::new();
                for a in 0..self.domains.len() {
                    for b in a + 1..self.domains.len() {
                        pairs.push(DomainPair {
                            a: self.domains[a].name.clone(),
                            b: self.domains[b].name.clone(),
                            jsd_bits: jsd_bits(&distribution[a], &distribution[b]),
                        });
                    }
                }
                let mean_pairwise_jsd_bits = (!pairs.is_empty())
                    .then(|| pairs.iter().map(|p| p.jsd_bits).sum::<f64>() / pairs.len() as f64);
                let co = &self.coactivation[l];
                let coactivation = (0..e)
                    .map(|a| {
                        let chosen = co[a * e + a];
                        (0..e)
                            .map(|b| {
                                if chosen == 0 {
                                    0.0
                                } else {
                                    co[a * e + b] as f64 / chosen as f64
                                }
                            })
                            .collect()
                    })
                    .collect();
                let has_next = l + 1 < self.layers.len() && self.tokens > 0;
                let total: u64 = self
                    .domains
                    .iter()
                    .map(|d| d.expert_counts[l].iter().sum::<u64>())
                    .sum();
                let experts = (0..e)
                    .map(|expert| self.expert_card(l, expert, total, vocabulary))
                    .collect();
                CorpusLayer {
                    layer,
                    domain_distribution: distribution,
                    domain_jsd_bits: pairs,
                    mean_pairwise_jsd_bits,
                    coactivation,
                    jaccard_with_next: has_next
                        .then(|| self.next_jaccard_sum[l] / self.tokens as f64),
                    top1_same_as_next: has_next
                        .then(|| self.next_top1_same[l] as f64 / self.tokens as f64),
                    top1_repeat_rate: (self.repeat_pairs > 0)
                        .then(|| self.repeat_top1[l] as f64 / self.repeat_pairs as f64),
                    experts,
                }
            })
            .collect();
        CorpusReport {
            format: "moescope-corpus".into(),
            format_version: CORPUS_FORMAT_VERSION,
            model: self.model.clone(),
            documents: self.domains.iter().map(|d| d.documents).sum(),
            tokens: self.tokens,
            domains,
            moe_layers,
            input: InputSummary::default(),
        }
    }

    /// One expert of MoE layer `l`: its share, the domain it serves most, and the tokens most
    /// often routed to it relative to how often they occur (OLMoE's vocabulary specialization).
    fn expert_card(
        &self,
        l: usize,
        expert: usize,
        layer_total: u64,
        vocabulary: VocabularyOptions,
    ) -> ExpertCard {
        let assignments: u64 = self
            .domains
            .iter()
            .map(|d| d.expert_counts[l][expert])
            .sum();
        let top_domain = self
            .domains
            .iter()
            .filter(|d| d.expert_counts[l][expert] > 0)
            .max_by(|a, b| {
                let share =
                    |d: &DomainCounts| d.expert_counts[l][expert] as f64 / d.tokens.max(1) as f64;
                share(a).total_cmp(&share(b))
            })
            .map(|d| d.name.clone());
        let mut tokens: Vec<VocabularyEntry> = self.routed[l]
            .iter()
            .filter(|((_, e), _)| *e as usize == expert)
            .filter_map(|(&(id, _), &routed)| {
                let occurrences = *self.occurrences.get(&id)?;
                (occurrences >= vocabulary.min_occurrences).then(|| VocabularyEntry {
                    id,
                    text: self.texts.get(&id).cloned().unwrap_or_default(),
                    routed,
                    occurrences,
                    share: routed as f64 / occurrences as f64,
                })
            })
            .collect();
        tokens.sort_by(|a, b| {
            b.share
                .total_cmp(&a.share)
                .then(b.routed.cmp(&a.routed))
                .then(a.id.cmp(&b.id))
        });
        tokens.truncate(vocabulary.top_tokens);
        ExpertCard {
            expert,
            assignments,
            share_of_assignments: assignments as f64 / layer_total.max(1) as f64,
            top_domain,
            top_tokens: tokens,
        }
    }
}

/// Counts as shares of their sum (all zero for no counts).
fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if total == 0 {
                0.0
            } else {
                c as f64 / total as f64
            }
        })
        .collect()
}

/// `moescope corpus`'s JSON.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CorpusReport {
    /// Always `moescope-corpus`: tells a corpus file from a trace.
    pub format: String,
    pub format_version: u32,
    pub model: ModelInfo,
    pub documents: u64,
    pub tokens: u64,
    pub domains: Vec<DomainReport>,
    pub moe_layers: Vec<CorpusLayer>,
    /// What was read, skipped, and whether the run was cut short.
    #[serde(default)]
    pub input: InputSummary,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DomainReport {
    pub name: String,
    pub documents: u64,
    pub tokens: u64,
    pub moe_layers: Vec<DomainLayer>,
}

/// A domain's assignments per expert at one MoE layer (the sum of `trace`'s topk_ids).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DomainLayer {
    pub layer: usize,
    pub expert_counts: Vec<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CorpusLayer {
    pub layer: usize,
    /// `[domain][expert]`: each domain's share of its assignments per expert (domains in the
    /// order of `domains`) — Mixtral's domain-routing figure.
    pub domain_distribution: Vec<Vec<f64>>,
    pub domain_jsd_bits: Vec<DomainPair>,
    /// Mean JSD over domain pairs, in bits; absent with fewer than two domains.
    pub mean_pairwise_jsd_bits: Option<f64>,
    /// `[a][b]` = P(b chosen | a chosen).
    pub coactivation: Vec<Vec<f64>>,
    /// Mean over tokens of the Jaccard of the expert sets here and at the next MoE layer.
    pub jaccard_with_next: Option<f64>,
    /// Share of tokens whose top-1 expert id is the same at the next MoE layer.
    pub top1_same_as_next: Option<f64>,
    /// Share of neighbouring token pairs (within a sequence) with the same top-1 expert.
    pub top1_repeat_rate: Option<f64>,
    pub experts: Vec<ExpertCard>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DomainPair {
    pub a: String,
    pub b: String,
    pub jsd_bits: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExpertCard {
    pub expert: usize,
    pub assignments: u64,
    pub share_of_assignments: f64,
    /// The domain with the most assignments to this expert per token of the domain.
    pub top_domain: Option<String>,
    /// Tokens by the share of their occurrences routed here (then by count).
    pub top_tokens: Vec<VocabularyEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VocabularyEntry {
    pub id: u32,
    pub text: String,
    /// Occurrences of the token routed to this expert.
    pub routed: u64,
    /// Occurrences of the token in the corpus.
    pub occurrences: u64,
    /// `routed / occurrences`: OLMoE's vocabulary specialization of the expert for this token.
    pub share: f64,
}

/// What the input held, for the report.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct InputSummary {
    pub files: u64,
    /// Documents split because they held more than the sequence limit.
    pub documents_split: u64,
    pub skipped_empty: u64,
    pub skipped_invalid_utf8: u64,
    pub skipped_without_field: u64,
    pub skipped_unreadable: u64,
    /// Ctrl-C or Cancel stopped the run: the counts cover what was read until then.
    pub cancelled: bool,
    pub max_seq_tokens: usize,
}

/// Two corpus files of the same texts compared per MoE layer: two training checkpoints (how far
/// the routing still moves) or two quantizations (drift). Only counts are in a corpus file, so
/// this is agreement of distributions; per-token agreement needs traces (`compare`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CorpusComparison {
    /// Domains present in both, in A's order.
    pub domains: Vec<String>,
    pub moe_layers: Vec<CorpusLayerDivergence>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CorpusLayerDivergence {
    pub layer: usize,
    /// JSD of the whole corpus's expert load in A and B, in bits.
    pub load_jsd_bits: f64,
    /// Per shared domain, the JSD of its expert distribution in A and B (in `domains` order).
    pub domain_jsd_bits: Vec<f64>,
    pub mean_domain_jsd_bits: Option<f64>,
}

/// Compares corpus `a` with `b`: the same MoE layers and number of experts required.
pub fn compare_corpora(
    a: &CorpusReport,
    b: &CorpusReport,
) -> Result<CorpusComparison, AnalysisError> {
    let mismatch = |problem: String| AnalysisError::Mismatch { trace: 1, problem };
    let layers = |r: &CorpusReport| r.moe_layers.iter().map(|l| l.layer).collect::<Vec<_>>();
    if layers(a) != layers(b) {
        return Err(mismatch(format!(
            "MoE layers {} against {}",
            list(&layers(a)),
            list(&layers(b))
        )));
    }
    if a.model.num_experts != b.model.num_experts {
        return Err(mismatch(format!(
            "{} experts against {}",
            a.model.num_experts, b.model.num_experts
        )));
    }
    let shared: Vec<(usize, usize)> = a
        .domains
        .iter()
        .enumerate()
        .filter_map(|(i, d)| Some((i, b.domains.iter().position(|x| x.name == d.name)?)))
        .collect();
    let load = |r: &CorpusReport, l: usize| -> Vec<f64> {
        let mut counts = vec![0u64; r.model.num_experts];
        for d in &r.domains {
            for (c, x) in counts.iter_mut().zip(&d.moe_layers[l].expert_counts) {
                *c += x;
            }
        }
        shares(&counts)
    };
    let moe_layers = (0..a.moe_layers.len())
        .map(|l| {
            let domain_jsd_bits: Vec<f64> = shared
                .iter()
                .map(|&(i, j)| {
                    jsd_bits(
                        &a.moe_layers[l].domain_distribution[i],
                        &b.moe_layers[l].domain_distribution[j],
                    )
                })
                .collect();
            CorpusLayerDivergence {
                layer: a.moe_layers[l].layer,
                load_jsd_bits: jsd_bits(&load(a, l), &load(b, l)),
                mean_domain_jsd_bits: (!domain_jsd_bits.is_empty())
                    .then(|| domain_jsd_bits.iter().sum::<f64>() / domain_jsd_bits.len() as f64),
                domain_jsd_bits,
            }
        })
        .collect();
    Ok(CorpusComparison {
        domains: shared
            .iter()
            .map(|&(i, _)| a.domains[i].name.clone())
            .collect(),
        moe_layers,
    })
}
