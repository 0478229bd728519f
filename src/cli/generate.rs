//! `moescope generate`: continue a prompt and write the routing of every position, prompt and
//! generated tokens alike. The continuation streams to stdout as it is produced.

use super::intervene::{self, InterventionArgs};
use super::{InputArgs, RunArgs};
use anyhow::{bail, Result};
use clap::Args;
use moescope::engine::generate::{GenerateOptions, Sampling};
use moescope::engine::{Engine, EngineOptions};
use moescope::input::TokenInput;
use moescope::model::chat_template::ChatMessage;
use moescope::model::checkpoint::Checkpoint;
use moescope::routing::Interventions;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct GenerateArgs {
    pub model: PathBuf,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub intervene: InterventionArgs,
    /// Tokens to generate at most (generation also stops at the checkpoint's EOS tokens).
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// Take the most probable token every step (the default).
    #[arg(long, conflicts_with_all = ["temperature", "top_p", "seed"])]
    pub greedy: bool,
    /// Sample at this temperature instead of taking the most probable token.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// With --temperature: sample from the smallest set of tokens whose probability reaches P.
    #[arg(
        long,
        value_name = "P",
        requires = "temperature",
        default_value_t = 1.0
    )]
    pub top_p: f64,
    /// With --temperature: seed of the draws (the same seed gives the same tokens).
    #[arg(long, requires = "temperature", default_value_t = 0)]
    pub seed: u64,
    /// Write the prompt as a user turn with the checkpoint's chat template (instruct models),
    /// ending where the assistant's answer begins.
    #[arg(long, requires = "prompt")]
    pub chat: bool,
    /// With --chat: a system turn before the user's.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// Do not stop at EOS tokens (generate exactly --max-new-tokens).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Output trace file (.json).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn generate(args: GenerateArgs) -> Result<()> {
    if args.out.extension().and_then(|e| e.to_str()) != Some("json") {
        bail!(
            "unsupported output format for {}: use a .json file",
            args.out.display()
        );
    }
    let interventions = args.intervene.interventions()?;
    if interventions.capacity.is_some() {
        bail!("--drop-over-capacity decides over a whole sequence at once; generate adds one token at a time (use it with trace or stats)");
    }
    let options = EngineOptions {
        interventions,
        ..args.run.options()?
    };
    let mut engine = Engine::load(&args.model, options)?;
    let Some(tokens) = args.input.tokens() else {
        bail!("give --prompt TEXT or --token-ids 1,2,3");
    };
    let prompt = match (&tokens, args.chat) {
        (TokenInput::Prompt(text), true) => {
            chat_ids(&engine.checkpoint, args.system.as_deref(), text)?
        }
        _ => tokens.ids(&engine.checkpoint)?,
    };
    intervene::check_forced_positions(
        &engine.options().interventions,
        prompt.len() + args.max_new_tokens,
    )?;
    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        sampling: match args.temperature {
            None => Sampling::Greedy,
            Some(temperature) => Sampling::Sample {
                temperature,
                top_p: args.top_p,
                seed: args.seed,
            },
        },
        stop_ids: if args.ignore_eos {
            Vec::new()
        } else {
            engine.checkpoint.stop_token_ids()?
        },
    };
    // Streaming text: the generated ids are decoded together and only the new, complete part is
    // printed, so a character split over byte-level tokens appears once it is whole.
    let mut shown = String::new();
    let mut stdout = std::io::stdout().lock();
    let mut decode_steps_ms = Vec::new();
    let mut last = std::time::Instant::now();
    let started = last;
    let stop = {
        let mut on_token = |engine: &Engine| {
            let trace = engine.trace();
            let tokenizer_text = |ids: &[u32]| engine.checkpoint.decode(ids);
            let now = std::time::Instant::now();
            let prompt_len = trace.prompt_tokens.unwrap_or(0);
            if trace.tokens.len() == prompt_len {
                let ids: Vec<u32> = trace.tokens.iter().map(|t| t.id).collect();
                let _ = write!(
                    stdout,
                    "{}",
                    tokenizer_text(&ids).unwrap_or_else(|| format!("{ids:?}"))
                );
            } else {
                decode_steps_ms.push(now.duration_since(last).as_secs_f64() * 1e3);
                let generated: Vec<u32> = trace.tokens[prompt_len..].iter().map(|t| t.id).collect();
                let text = match tokenizer_text(&generated) {
                    Some(text) => text,
                    None => generated
                        .iter()
                        .map(|id| format!(" #{id}"))
                        .collect::<String>(),
                };
                if !text.ends_with('\u{FFFD}') && text.starts_with(shown.as_str()) {
                    let _ = write!(stdout, "{}", &text[shown.len()..]);
                    shown = text;
                }
            }
            let _ = stdout.flush();
            last = now;
        };
        engine.generate(&prompt, &options, &mut on_token)?
    };
    drop(stdout);
    println!();
    let trace = engine.trace().clone();
    trace.write_json(&args.out)?;
    let generated = trace.tokens.len() - prompt.len();
    let decode_ms: f64 = decode_steps_ms.iter().sum();
    eprintln!(
        "generated {generated} tokens after a {}-token prompt ({}) in {:.0} ms, {:.1} tokens/s while decoding → {}",
        prompt.len(),
        stop.describe(),
        started.elapsed().as_secs_f64() * 1e3,
        if decode_ms > 0.0 {
            generated as f64 / (decode_ms / 1e3)
        } else {
            0.0
        },
        args.out.display()
    );
    if let Some(f) = engine
        .options()
        .interventions
        .force
        .iter()
        .find(|f| f.token >= trace.tokens.len())
    {
        eprintln!(
            "warning: --force {}:{}: generation stopped at {} tokens, so that pin never applied",
            f.layer,
            f.token,
            trace.tokens.len()
        );
    }
    if !engine.options().interventions.is_empty() {
        compare_with_unmodified(
            &mut engine,
            &trace,
            &prompt,
            &options,
            args.intervene.report.as_deref(),
        )?;
    }
    Ok(())
}

/// Generates from the same prompt without the interventions, scores both runs on the intervened
/// run's tokens, and reports the effect and both continuations.
fn compare_with_unmodified(
    engine: &mut Engine,
    intervened: &moescope::trace::Trace,
    prompt: &[u32],
    options: &GenerateOptions,
    report: Option<&std::path::Path>,
) -> Result<()> {
    let ids: Vec<u32> = intervened.tokens.iter().map(|t| t.id).collect();
    let (_, mut effect) = moescope::probe::intervened_run(engine, &ids)?;
    engine.set_interventions(Interventions::default())?;
    engine.generate(prompt, options, &mut |_| {})?;
    let baseline_ids: Vec<u32> = engine.trace().tokens[prompt.len()..]
        .iter()
        .map(|t| t.id)
        .collect();
    let mut continuation =
        moescope::analysis::Continuations::new(baseline_ids, ids[prompt.len()..].to_vec());
    continuation.baseline_text = engine.checkpoint.decode(&continuation.baseline_ids);
    continuation.intervened_text = engine.checkpoint.decode(&continuation.intervened_ids);
    effect.continuation = Some(continuation);
    intervene::report_effect(&effect, report)
}

/// The prompt as a user turn (after an optional system turn) rendered by the checkpoint's chat
/// template and tokenized as transformers' `apply_chat_template` does.
fn chat_ids(checkpoint: &Checkpoint, system: Option<&str>, text: &str) -> Result<Vec<u32>> {
    let Some(template) = checkpoint.chat_template()? else {
        bail!(
            "--chat needs a chat template, and {} has none (no chat_template.jinja, no chat_template in tokenizer_config.json)",
            checkpoint.dir.display()
        );
    };
    let mut messages: Vec<ChatMessage> = system
        .map(|s| ChatMessage::new("system", s))
        .into_iter()
        .collect();
    messages.push(ChatMessage::new("user", text));
    let rendered = template.render(&messages, true)?;
    Ok(checkpoint.encode_with(&rendered, false)?)
}
