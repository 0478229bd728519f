//! The tokenizer a GGUF file carries (`tokenizer.ggml.*`), rebuilt as a Hugging Face
//! `tokenizers::Tokenizer`, so a .gguf downloaded alone takes text prompts.
//!
//! llama.cpp stores the vocabulary, not the tokenizer: a list of pieces with scores and types,
//! merges for byte-level BPE, and a pre-tokenizer *name* (`tokenizer.ggml.pre`) whose regexes live
//! in llama.cpp's code. The rebuilt tokenizer is the one the original tokenizer.json describes:
//!
//! - `llama` (SentencePiece BPE, Mixtral/Llama-2): pieces as a BPE model with byte fallback, its
//!   merges derived from the scores in the order of the Hub's tokenizer.json files (every split of a
//!   piece into two pieces, ranked by the whole piece's score), spaces as `▁` with a leading `▁`.
//! - `gpt2` (byte-level BPE): the stored merges, and per pre-tokenizer name the Split regexes of the
//!   family's tokenizer.json ([`PRE_TOKENIZERS`]), then the byte-level mapping.
//!
//! Control, unknown and user-defined pieces become added tokens, matched in text as
//! tokenizer.json's added tokens are. BOS/EOS are added when the file says so
//! (`tokenizer.ggml.add_bos_token`) or, when it is silent, when llama.cpp would.
//! `tests/gguf.rs` checks the ids against the reference ids llama.cpp ships with its vocabulary
//! files (produced by `transformers`' tokenizer of each model).
//!
//! The rebuild is bounded: a file may declare at most [`MAX_PIECES`] pieces and merges, and only
//! pieces up to [`MAX_MERGED_PIECE_CHARS`] characters are split into SentencePiece merges, so a
//! hostile vocabulary cannot make opening the file hang or exhaust memory.

use super::gguf::{GgufFile, MetaValue};
use crate::error::{Error, Result};
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

/// Most pieces (and merges) a vocabulary may have: 16 M, 100 times the largest released ones.
pub const MAX_PIECES: usize = 1 << 24;

/// Longest piece split into SentencePiece merges (each split of a piece is a candidate merge, so
/// the work grows with the square of its length). Released SentencePiece pieces are under 20
/// characters; a longer piece stays in the vocabulary and is matched when a merge builds it.
pub const MAX_MERGED_PIECE_CHARS: usize = 128;

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
    /// The tokenizer.json composes characters first (NFC: Qwen's); llama.cpp does not.
    pub nfc: bool,
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
        nfc: false,
    },
    PreTokenizerProfile {
        names: &["llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"],
        splits: &[LLAMA3],
        ignore_merges: true,
        add_bos: true,
        nfc: false,
    },
    PreTokenizerProfile {
        names: &["dbrx", "smaug-bpe"],
        splits: &[LLAMA3],
        ignore_merges: false,
        add_bos: false,
        nfc: false,
    },
    PreTokenizerProfile {
        names: &["chatglm-bpe", "glm4", "glm5"],
        splits: &[LLAMA3],
        ignore_merges: true,
        add_bos: false,
        nfc: false,
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
        nfc: true,
    },
    PreTokenizerProfile {
        names: &["qwen35"],
        splits: &[QWEN35],
        ignore_merges: false,
        add_bos: false,
        nfc: true,
    },
    PreTokenizerProfile {
        names: &["gpt-4o", "llama4", "minimax-m2"],
        splits: &[O200K],
        ignore_merges: false,
        add_bos: false,
        nfc: false,
    },
    PreTokenizerProfile {
        names: &["deepseek-v3", "hunyuan-dense"],
        splits: &[r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+", DEEPSEEK3_WORDS],
        ignore_merges: false,
        add_bos: false,
        nfc: false,
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
        nfc: false,
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
        nfc: false,
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
        nfc: false,
    },
    PreTokenizerProfile {
        // llama.cpp's own choice for a file that names no pre-tokenizer (or "default").
        names: &["default", ""],
        splits: &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
        ignore_merges: false,
        add_bos: false,
        nfc: false,
    },
];

/// A tokenizer rebuilt from a file, and the one-line account `info` gives of it.
pub struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    /// "gpt2 byte-level BPE, pre-tokenizer qwen2, 151936 pieces".
    pub description: String,
}

/// What went wrong rebuilding, said of the file (`Error::GgufVocabulary` adds its path).
type Problem = String;

/// The file's tokenizer; `Ok(None)` when it carries none (`tokenizer.ggml.model` missing or
/// `none`); [`Error::GgufVocabulary`] when it carries one moescope cannot rebuild faithfully.
pub fn tokenizer_of(file: &GgufFile) -> Result<Option<GgufTokenizer>> {
    rebuild(file).map_err(|problem| Error::GgufVocabulary {
        path: file.path.clone(),
        problem,
    })
}

fn rebuild(file: &GgufFile) -> std::result::Result<Option<GgufTokenizer>, Problem> {
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
    let pre = file
        .get("tokenizer.ggml.pre")
        .and_then(MetaValue::as_str)
        .unwrap_or("");
    let (mut tokenizer, kind, default_bos) = match model {
        "llama" => (
            sentencepiece_bpe(file, &vocabulary)?,
            "llama SentencePiece BPE".to_owned(),
            true,
        ),
        "gpt2" => {
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
                profile.add_bos,
            )
        }
        other => {
            return Err(format!(
                "its tokenizer model `{}` is not rebuilt (llama and gpt2 are); put the model's \
                 tokenizer.json beside the file",
                shortened(other)
            ))
        }
    };
    add_special_pieces(&mut tokenizer, &vocabulary)?;
    // llama.cpp's SentencePiece defaults when the file names no ids.
    let (default_bos_id, default_eos_id) = match model {
        "llama" => (Some(1), Some(2)),
        _ => (None, None),
    };
    let flag = |key: &str, default: bool| match file.get(key) {
        Some(MetaValue::Bool(b)) => *b,
        _ => default,
    };
    let bos = flag("tokenizer.ggml.add_bos_token", default_bos)
        .then(|| vocabulary.special_id(file, "tokenizer.ggml.bos_token_id", default_bos_id))
        .transpose()?
        .flatten();
    let eos = flag("tokenizer.ggml.add_eos_token", false)
        .then(|| vocabulary.special_id(file, "tokenizer.ggml.eos_token_id", default_eos_id))
        .transpose()?
        .flatten();
    add_bos_eos(&mut tokenizer, &vocabulary, bos, eos)?;
    Ok(Some(GgufTokenizer {
        tokenizer,
        description: format!("{kind}, {} pieces", vocabulary.pieces.len()),
    }))
}

/// A name from the file, cut short for a message (a hostile file may hold megabytes).
fn shortened(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    match text.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn profile_named(pre: &str) -> std::result::Result<&'static PreTokenizerProfile, Problem> {
    PRE_TOKENIZERS
        .iter()
        .find(|p| p.names.contains(&pre))
        .ok_or_else(|| {
            format!(
                "its pre-tokenizer `{}` is not one moescope rebuilds; put the model's \
                 tokenizer.json beside the file",
                shortened(pre)
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
    fn read(file: &GgufFile) -> std::result::Result<Self, Problem> {
        let array = |key: &str| match file.get(key) {
            Some(MetaValue::Array(a)) => Ok(Some(a)),
            None => Ok(None),
            Some(_) => Err(format!("{key} is not an array")),
        };
        let tokens = array("tokenizer.ggml.tokens")?.ok_or("tokenizer.ggml.tokens is missing")?;
        if tokens.len as usize > MAX_PIECES {
            return Err(format!(
                "tokenizer.ggml.tokens declares {} pieces, more than the {MAX_PIECES} a vocabulary may have",
                tokens.len
            ));
        }
        let mut pieces = file
            .array_strings(tokens)
            .map_err(|e| format!("tokenizer.ggml.tokens: {e}"))?;
        if pieces.is_empty() {
            return Err("tokenizer.ggml.tokens is empty".into());
        }
        // llama.cpp renames empty pieces the same way, so ids stay where they are.
        for (i, piece) in pieces.iter_mut().enumerate() {
            if piece.is_empty() {
                *piece = format!("[EMPTY_{i}]");
            }
        }
        let numbers = |key: &str, default: f64| -> std::result::Result<Vec<f64>, Problem> {
            match array(key)? {
                None => Ok(vec![default; pieces.len()]),
                Some(a) if a.len as usize > MAX_PIECES => Err(format!(
                    "{key} declares {} entries, more than the {MAX_PIECES} a vocabulary may have",
                    a.len
                )),
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

    /// Piece → id. A piece listed twice keeps its last id, as llama.cpp's lookup and a
    /// tokenizer.json's vocabulary (a JSON object) both do; the earlier id stays decodable.
    fn ids(&self) -> Vocab {
        let mut ids = Vocab::default();
        ids.reserve(self.pieces.len());
        for (i, piece) in self.pieces.iter().enumerate() {
            ids.insert(piece.clone(), i as u32);
        }
        ids
    }

    /// The id under `key`, or `default` when the file has none. Only ids that will be added are
    /// asked for, so a bad id the tokenizer never uses does not stop it.
    fn special_id(
        &self,
        file: &GgufFile,
        key: &str,
        default: Option<u32>,
    ) -> std::result::Result<Option<u32>, Problem> {
        let n = self.pieces.len();
        match file.get(key) {
            None => Ok(default.filter(|&id| (id as usize) < n)),
            Some(value) => match value.as_u64() {
                Some(id) if (id as usize) < n => Ok(Some(id as u32)),
                Some(id) => Err(format!("{key} = {id} is not a token id below {n}")),
                None => Err(format!("{key} is not an integer")),
            },
        }
    }
}

/// SentencePiece BPE as the Hugging Face Llama tokenizer.json has it.
fn sentencepiece_bpe(
    file: &GgufFile,
    vocabulary: &Vocabulary,
) -> std::result::Result<Tokenizer, Problem> {
    let ids = vocabulary.ids();
    let merges = sentencepiece_merges(vocabulary, &ids)?;
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

/// Merges from scores in the order of the Hub's Llama-2 and Mistral tokenizer.json files (their
/// converter's): for each piece (in id order) every split into two pieces of the vocabulary,
/// ordered by the parts' ids; then all of them ordered by the whole piece's score, highest first,
/// the sort stable. SentencePiece merges the best-scoring adjacent pair first, the same order.
/// (transformers 5's own converter breaks score ties by the parts' lengths instead; the files
/// users have were written before it.) Pieces over [`MAX_MERGED_PIECE_CHARS`] are not split, and
/// more than 8 merges a piece on average is refused.
fn sentencepiece_merges(
    vocabulary: &Vocabulary,
    ids: &Vocab,
) -> std::result::Result<Vec<(String, String)>, Problem> {
    let limit = vocabulary.pieces.len().saturating_mul(8).min(MAX_PIECES);
    let mut merges: Vec<(u32, u32, f64)> = Vec::new();
    for (piece, &score) in vocabulary.pieces.iter().zip(&vocabulary.scores) {
        if piece.chars().nth(MAX_MERGED_PIECE_CHARS).is_some() {
            continue;
        }
        let start = merges.len();
        for (split, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(split);
            if let (Some(&l), Some(&r)) = (ids.get(left), ids.get(right)) {
                merges.push((l, r, score));
            }
        }
        if merges.len() > limit {
            return Err(format!(
                "its pieces split into more than {limit} merges (8 a piece): not a SentencePiece vocabulary"
            ));
        }
        merges[start..].sort_by_key(|&(l, r, _)| (l, r));
    }
    merges.sort_by(|a, b| b.2.total_cmp(&a.2));
    Ok(merges
        .into_iter()
        .map(|(l, r, _)| {
            (
                vocabulary.pieces[l as usize].clone(),
                vocabulary.pieces[r as usize].clone(),
            )
        })
        .collect())
}

/// Byte-level BPE with the stored merges and the named pre-tokenizer.
fn byte_level_bpe(
    file: &GgufFile,
    vocabulary: &Vocabulary,
    profile: &PreTokenizerProfile,
) -> std::result::Result<Tokenizer, Problem> {
    let merges = match file.get("tokenizer.ggml.merges") {
        Some(MetaValue::Array(a)) if a.len as usize > MAX_PIECES => {
            return Err(format!(
                "tokenizer.ggml.merges declares {} merges, more than the {MAX_PIECES} a vocabulary may have",
                a.len
            ))
        }
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
            // From the second byte on, as llama.cpp splits: a left piece may start with a space.
            let first = m.chars().next().map_or(0, char::len_utf8);
            m[first..]
                .find(' ')
                .map(|at| (m[..first + at].to_owned(), m[first + at + 1..].to_owned()))
                .ok_or_else(|| {
                    format!(
                        "tokenizer.ggml.merges[{i}] `{}` is not two pieces",
                        shortened(m)
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let model = BPE::builder()
        .vocab_and_merges(vocabulary.ids(), merges)
        .ignore_merges(profile.ignore_merges)
        .build()
        .map_err(|e| format!("its vocabulary: {e}"))?;
    let mut tokenizer = Tokenizer::new(model);
    if profile.nfc {
        tokenizer
            .with_normalizer(Some(tokenizers::normalizers::unicode::NFC))
            .map_err(|e| e.to_string())?;
    }
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
fn add_special_pieces(
    tokenizer: &mut Tokenizer,
    vocabulary: &Vocabulary,
) -> std::result::Result<(), Problem> {
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

/// BOS before and EOS after the text, where given, as a template post-processor.
fn add_bos_eos(
    tokenizer: &mut Tokenizer,
    vocabulary: &Vocabulary,
    bos: Option<u32>,
    eos: Option<u32>,
) -> std::result::Result<(), Problem> {
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
