//! The tokenizer a GGUF file carries (`tokenizer.ggml.*`), rebuilt as a Hugging Face
//! `tokenizers::Tokenizer`, so a .gguf downloaded alone takes text prompts.
//!
//! llama.cpp stores the vocabulary, not the tokenizer: a list of pieces with scores and types,
//! merges for byte-level BPE, and a pre-tokenizer *name* (`tokenizer.ggml.pre`) whose regexes live
//! in llama.cpp's code. The rebuilt tokenizer is the one the original tokenizer.json describes:
//!
//! - `llama` (SentencePiece BPE, Mixtral/Llama-2): pieces as a BPE model with byte fallback, its
//!   merges derived from the scores the way the Hugging Face converter derives them (every split of a
//!   piece into two pieces, ranked by the whole piece's score), spaces as `▁` with a leading `▁`.
//! - `gpt2` (byte-level BPE): the stored merges, and per pre-tokenizer name the Split regexes of the
//!   family's tokenizer.json ([`PRE_TOKENIZERS`]), then the byte-level mapping.
//!
//! Control, unknown and user-defined pieces become added tokens, matched in text as
//! tokenizer.json's added tokens are. BOS/EOS are added when the file says so
//! (`tokenizer.ggml.add_bos_token`) or, when it is silent, when llama.cpp would.
//! `tests/gguf_tokenizer.rs` checks the ids against the reference ids llama.cpp ships with its
//! vocabulary files (produced by `transformers`' tokenizer of each model).

use super::gguf::{GgufFile, MetaValue};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{AddedToken, DecoderWrapper, SplitDelimiterBehavior, Tokenizer};

/// GGUF token types (llama.cpp's `llama_token_type`).
const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

/// SentencePiece's word-boundary mark, which stands for a space.
const SPACE_MARK: &str = "\u{2581}";

/// GPT-2's pre-tokenizer regex (also OLMo's, MPT's, …).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama-3's (also DBRX's and GLM-4's, which differ only in `ignore_merges`).
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's (Qwen1.5/2/2.5/3 and their MoE models): digits one by one.
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen3.5's: combining marks stay with their letters.
const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// o200k (GPT-4o, GPT-OSS, Llama-4, MiniMax-M2).
const O200K: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// DeepSeek-V3's last split (also HunYuan-dense's).
const DEEPSEEK3_WORDS: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
/// DeepSeek-LLM's (DeepSeek-V2) Latin-and-other-alphabets letter class, as its tokenizer.json spells it.
const DEEPSEEK_LLM_LETTERS: &str = r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+";

/// A byte-level BPE pre-tokenizer llama.cpp knows by name: the regexes its tokenizer.json splits
/// with, in order (each split keeps the matches as pieces), and the BPE options that go with it.
pub struct PreTokenizerProfile {
    pub names: &'static [&'static str],
    pub splits: &'static [&'static str],
    /// A word that is itself a vocabulary piece is taken whole (Llama-3, GLM-4).
    pub ignore_merges: bool,
    /// llama.cpp's default when the file has no `tokenizer.ggml.add_bos_token`.
    pub add_bos: bool,
}

/// The pre-tokenizers of the MoE families moescope runs, and the common ones around them. A name not
/// here is refused with a message (a wrong split gives wrong ids, and a wrong id routes wrongly).
pub const PRE_TOKENIZERS: &[PreTokenizerProfile] = &[
    PreTokenizerProfile {
        names: &[
            "gpt-2",
            "gpt2",
            "olmo",
            "mpt",
            "phi-2",
            "jais",
            "trillion",
            "exaone4",
            "granite-docling",
            "a.x-4.0",
        ],
        splits: &[GPT2],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizerProfile {
        names: &["llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"],
        splits: &[LLAMA3],
        ignore_merges: true,
        add_bos: true,
    },
    PreTokenizerProfile {
        names: &["dbrx", "smaug-bpe"],
        splits: &[LLAMA3],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizerProfile {
        names: &["chatglm-bpe", "glm4", "glm5"],
        splits: &[LLAMA3],
        ignore_merges: true,
        add_bos: false,
    },
    PreTokenizerProfile {
        names: &[
            "qwen2",
            "deepseek-r1-qwen",
            "stablelm2",
            "hunyuan",
            "megrez",
        ],
        splits: &[QWEN2],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizerProfile {
        names: &["qwen35"],
        splits: &[QWEN35],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizerProfile {
        names: &["gpt-4o", "llama4", "minimax-m2"],
        splits: &[O200K],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizerProfile {
        names: &["deepseek-v3", "hunyuan-dense"],
        splits: &[r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+", DEEPSEEK3_WORDS],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizerProfile {
        names: &["deepseek-llm"],
        splits: &[
            r"[\r\n]",
            DEEPSEEK_LLM_LETTERS,
            r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
            r"\s+$",
            r"[一-龥ࠀ-一가-퟿]+",
            r"\p{N}+",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizerProfile {
        names: &["deepseek-coder"],
        splits: &[
            r"[\r\n]",
            r"\s?\p{L}+",
            r"\s?\p{P}+",
            r"[一-龥ࠀ-一가-퟿]+",
            r"\p{N}",
        ],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizerProfile {
        names: &[
            "starcoder",
            "refact",
            "command-r",
            "smollm",
            "codeshell",
            "exaone",
        ],
        splits: &[r"\p{N}", GPT2],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizerProfile {
        // llama.cpp's own choice for a file that names no pre-tokenizer (or "default").
        names: &["default", ""],
        splits: &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
        ignore_merges: false,
        add_bos: false,
    },
];

/// A tokenizer rebuilt from a file, and the one-line account `info` gives of it.
pub struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    /// "gpt2 byte-level BPE, pre-tokenizer qwen2, 151,936 pieces".
    pub description: String,
}

/// The file's tokenizer; `Ok(None)` when it carries none (`tokenizer.ggml.model` missing or
/// `none`); `Err(problem)` when it carries one moescope cannot rebuild faithfully.
pub fn tokenizer_of(file: &GgufFile) -> Result<Option<GgufTokenizer>, String> {
    let model = match file.get("tokenizer.ggml.model") {
        None => return Ok(None),
        Some(value) => value
            .as_str()
            .ok_or("tokenizer.ggml.model is not a string")?,
    };
    if model == "none" {
        return Ok(None);
    }
    let vocabulary = Vocabulary::read(file)?;
    let (mut tokenizer, kind) = match model {
        "llama" => (
            sentencepiece_bpe(file, &vocabulary)?,
            "llama SentencePiece BPE".to_owned(),
        ),
        "gpt2" => {
            let pre = file
                .get("tokenizer.ggml.pre")
                .and_then(MetaValue::as_str)
                .unwrap_or("");
            let profile = profile_named(pre)?;
            let tokenizer = byte_level_bpe(file, &vocabulary, profile)?;
            let pre = if pre.is_empty() {
                "default (none named)"
            } else {
                pre
            };
            (
                tokenizer,
                format!("gpt2 byte-level BPE, pre-tokenizer {pre}"),
            )
        }
        other => {
            return Err(format!(
            "its tokenizer model `{other}` is not rebuilt (llama and gpt2 are); put the model's \
                 tokenizer.json beside the file"
        ))
        }
    };
    add_special_pieces(&mut tokenizer, &vocabulary)?;
    let default_bos = match model {
        "llama" => true,
        _ => {
            let pre = file.get("tokenizer.ggml.pre").and_then(MetaValue::as_str);
            profile_named(pre.unwrap_or(""))?.add_bos
        }
    };
    add_bos_eos(&mut tokenizer, file, &vocabulary, default_bos)?;
    Ok(Some(GgufTokenizer {
        tokenizer,
        description: format!("{kind}, {} pieces", vocabulary.pieces.len()),
    }))
}

fn profile_named(pre: &str) -> Result<&'static PreTokenizerProfile, String> {
    PRE_TOKENIZERS
        .iter()
        .find(|p| p.names.contains(&pre))
        .ok_or_else(|| {
            format!(
                "its pre-tokenizer `{pre}` is not one moescope rebuilds; put the model's \
                 tokenizer.json beside the file"
            )
        })
}

/// The pieces with their scores and types, checked against one another.
struct Vocabulary {
    pieces: Vec<String>,
    scores: Vec<f64>,
    types: Vec<i64>,
}

impl Vocabulary {
    fn read(file: &GgufFile) -> Result<Self, String> {
        let array = |key: &str| match file.get(key) {
            Some(MetaValue::Array(a)) => Ok(Some(a)),
            None => Ok(None),
            Some(_) => Err(format!("{key} is not an array")),
        };
        let tokens = array("tokenizer.ggml.tokens")?.ok_or("tokenizer.ggml.tokens is missing")?;
        let mut pieces = file
            .array_strings(tokens)
            .map_err(|e| format!("tokenizer.ggml.tokens: {e}"))?;
        if pieces.is_empty() {
            return Err("tokenizer.ggml.tokens is empty".into());
        }
        if pieces.len() > u32::MAX as usize {
            return Err("tokenizer.ggml.tokens has more pieces than token ids".into());
        }
        // llama.cpp renames empty pieces the same way, so ids stay where they are.
        for (i, piece) in pieces.iter_mut().enumerate() {
            if piece.is_empty() {
                *piece = format!("[EMPTY_{i}]");
            }
        }
        let numbers = |key: &str, default: f64| -> Result<Vec<f64>, String> {
            match array(key)? {
                None => Ok(vec![default; pieces.len()]),
                Some(a) => {
                    let values = file.array_numbers(a).map_err(|e| format!("{key}: {e}"))?;
                    if values.len() < pieces.len() {
                        return Err(format!(
                            "{key} has {} entries for {} pieces",
                            values.len(),
                            pieces.len()
                        ));
                    }
                    Ok(values)
                }
            }
        };
        let scores = numbers("tokenizer.ggml.scores", 0.0)?;
        let types = numbers("tokenizer.ggml.token_type", 1.0)?
            .into_iter()
            .map(|t| t as i64)
            .collect();
        Ok(Self {
            pieces,
            scores,
            types,
        })
    }

    /// Piece → id; a piece listed twice keeps its first id (the later one is unreachable by text,
    /// as in llama.cpp, whose lookup keeps the last: such files do not come out of its converter).
    fn ids(&self) -> Vocab {
        let mut ids = Vocab::default();
        ids.reserve(self.pieces.len());
        for (i, piece) in self.pieces.iter().enumerate() {
            ids.entry(piece.clone()).or_insert(i as u32);
        }
        ids
    }

    fn id_key(&self, file: &GgufFile, key: &str) -> Result<Option<u32>, String> {
        match file.get(key) {
            None => Ok(None),
            Some(value) => match value.as_u64() {
                Some(id) if (id as usize) < self.pieces.len() => Ok(Some(id as u32)),
                _ => Err(format!(
                    "{key} = {value} is not a token id below {}",
                    self.pieces.len()
                )),
            },
        }
    }
}

/// SentencePiece BPE as the Hugging Face Llama tokenizer.json has it.
fn sentencepiece_bpe(file: &GgufFile, vocabulary: &Vocabulary) -> Result<Tokenizer, String> {
    let ids = vocabulary.ids();
    let merges = sentencepiece_merges(vocabulary, &ids);
    let mut builder = BPE::builder()
        .vocab_and_merges(ids, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = vocabulary.types.iter().position(|&t| t == TYPE_UNKNOWN) {
        builder = builder.unk_token(vocabulary.pieces[unk].clone());
    }
    let model = builder
        .build()
        .map_err(|e| format!("its vocabulary: {e}"))?;
    let mut tokenizer = Tokenizer::new(model);
    let add_space_prefix = match file.get("tokenizer.ggml.add_space_prefix") {
        Some(MetaValue::Bool(b)) => *b,
        _ => true,
    };
    let replace_spaces = Replace::new(" ", SPACE_MARK).map_err(|e| e.to_string())?;
    let normalizer = if add_space_prefix {
        NormalizerSequence::new(vec![
            Prepend::new(SPACE_MARK.into()).into(),
            replace_spaces.into(),
        ])
    } else {
        NormalizerSequence::new(vec![replace_spaces.into()])
    };
    tokenizer
        .with_normalizer(Some(normalizer))
        .map_err(|e| e.to_string())?;
    let mut decoders: Vec<DecoderWrapper> = vec![Replace::new(SPACE_MARK, " ")
        .map_err(|e| e.to_string())?
        .into()];
    decoders.push(ByteFallback::default().into());
    decoders.push(Fuse::default().into());
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// Merges from scores as the Hugging Face converter makes them: for each piece (in id order) every
/// split into two pieces of the vocabulary, ordered by the parts' ids; then all of them ordered by
/// the whole piece's score, highest first, the sort stable. SentencePiece merges the best-scoring
/// adjacent pair first, which is the same order.
fn sentencepiece_merges(vocabulary: &Vocabulary, ids: &Vocab) -> Vec<(String, String)> {
    let mut merges: Vec<(u32, u32, f64)> = Vec::new();
    for (piece, &score) in vocabulary.pieces.iter().zip(&vocabulary.scores) {
        let start = merges.len();
        for (split, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(split);
            if let (Some(&l), Some(&r)) = (ids.get(left), ids.get(right)) {
                merges.push((l, r, score));
            }
        }
        merges[start..].sort_by_key(|&(l, r, _)| (l, r));
    }
    merges.sort_by(|a, b| b.2.total_cmp(&a.2));
    merges
        .into_iter()
        .map(|(l, r, _)| {
            (
                vocabulary.pieces[l as usize].clone(),
                vocabulary.pieces[r as usize].clone(),
            )
        })
        .collect()
}

/// Byte-level BPE with the stored merges and the named pre-tokenizer.
fn byte_level_bpe(
    file: &GgufFile,
    vocabulary: &Vocabulary,
    profile: &PreTokenizerProfile,
) -> Result<Tokenizer, String> {
    let merges = match file.get("tokenizer.ggml.merges") {
        Some(MetaValue::Array(a)) => file
            .array_strings(a)
            .map_err(|e| format!("tokenizer.ggml.merges: {e}"))?,
        Some(_) => return Err("tokenizer.ggml.merges is not an array".into()),
        None => return Err("tokenizer.ggml.merges is missing (a gpt2 vocabulary needs it)".into()),
    };
    let merges = merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(l, r)| (l.to_owned(), r.to_owned()))
                .ok_or_else(|| format!("tokenizer.ggml.merges[{i}] `{m}` is not two pieces"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let model = BPE::builder()
        .vocab_and_merges(vocabulary.ids(), merges)
        .ignore_merges(profile.ignore_merges)
        .build()
        .map_err(|e| format!("its vocabulary: {e}"))?;
    let mut tokenizer = Tokenizer::new(model);
    let mut steps = Vec::with_capacity(profile.splits.len() + 1);
    for regex in profile.splits {
        let split = Split::new(
            SplitPattern::Regex((*regex).to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| format!("pre-tokenizer regex: {e}"))?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, true, false).into());
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(steps)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tokenizer)
}

/// Control, unknown and user-defined pieces are matched in the text before the model sees it.
fn add_special_pieces(tokenizer: &mut Tokenizer, vocabulary: &Vocabulary) -> Result<(), String> {
    let mut special = Vec::new();
    let mut user = Vec::new();
    for (piece, &kind) in vocabulary.pieces.iter().zip(&vocabulary.types) {
        match kind {
            TYPE_CONTROL | TYPE_UNKNOWN => {
                special.push(AddedToken::from(piece.clone(), true).normalized(false))
            }
            TYPE_USER_DEFINED => {
                user.push(AddedToken::from(piece.clone(), false).normalized(false))
            }
            _ => {}
        }
    }
    tokenizer
        .add_special_tokens(special)
        .map_err(|e| format!("its control pieces: {e}"))?;
    tokenizer
        .add_tokens(user)
        .map_err(|e| format!("its user-defined pieces: {e}"))?;
    Ok(())
}

fn add_bos_eos(
    tokenizer: &mut Tokenizer,
    file: &GgufFile,
    vocabulary: &Vocabulary,
    default_bos: bool,
) -> Result<(), String> {
    let flag = |key: &str, default: bool| match file.get(key) {
        Some(MetaValue::Bool(b)) => *b,
        _ => default,
    };
    let bos = vocabulary
        .id_key(file, "tokenizer.ggml.bos_token_id")?
        .filter(|_| flag("tokenizer.ggml.add_bos_token", default_bos));
    let eos = vocabulary
        .id_key(file, "tokenizer.ggml.eos_token_id")?
        .filter(|_| flag("tokenizer.ggml.add_eos_token", false));
    if bos.is_none() && eos.is_none() {
        return Ok(());
    }
    // Template pieces are named `$A` and special-token names; names made of ids keep the pieces'
    // own text (which may hold spaces or colons) out of the template syntax.
    let mut single = Vec::new();
    let mut specials = Vec::new();
    for (name, id) in [("bos", bos), ("$A", None), ("eos", eos)] {
        match id {
            None if name == "$A" => single.push(name.to_owned()),
            None => {}
            Some(id) => {
                let name = format!("{name}{id}");
                specials.push(
                    SpecialToken::new(
                        name.clone(),
                        vec![id],
                        vec![vocabulary.pieces[id as usize].clone()],
                    )
                    .map_err(|e| e.to_string())?,
                );
                single.push(name);
            }
        }
    }
    let template = TemplateProcessing::builder()
        .try_single(single.join(" "))
        .map_err(|e| format!("BOS/EOS template: {e}"))?
        .special_tokens(specials)
        .build()
        .map_err(|e| format!("BOS/EOS template: {e}"))?;
    tokenizer.with_post_processor(Some(template));
    Ok(())
}
