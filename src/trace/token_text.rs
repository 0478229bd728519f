//! How tokens read on screen and in figures: one rule for every view and export.
//!
//! Byte-level BPE splits CJK characters (and emoji) over tokens, and the trace stores such a piece
//! as its bytes, `‹e6 95›`, since it is no text by itself. Read alone, a Chinese prompt becomes a
//! row of hex. Read as a sequence, the bytes of neighbouring pieces make whole characters again:
//! each character is shown once, on the token where its first byte is; the token it spills into
//! shows `·` (it holds only the rest of that character) and both are marked as spanning, so a
//! hover can say which bytes a token really holds. Bytes that never complete a character stay hex.

use super::Token;

/// The shown text of a token holding only bytes of a character begun in an earlier token.
pub const CONTINUATION: &str = "·";

/// One token as shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenText {
    /// What to show: whole characters starting in this token, `·` for a token that only finishes
    /// one, or the token's own text when it is whole.
    pub text: String,
    /// Its last character is finished by the following token(s).
    pub opens_span: bool,
    /// It finishes a character that began in token `index` (its first bytes are that
    /// character's last).
    pub continues_from: Option<usize>,
    /// For a token that is part of a span: its own bytes, `e6 95`.
    pub bytes: Option<String>,
}

impl TokenText {
    pub fn spans(&self) -> bool {
        self.opens_span || self.continues_from.is_some()
    }
}

/// The shown text of every token of a sequence.
pub fn token_texts(tokens: &[Token]) -> Vec<TokenText> {
    let mut shown: Vec<TokenText> = tokens
        .iter()
        .map(|t| TokenText {
            text: t.text.clone(),
            opens_span: false,
            continues_from: None,
            bytes: None,
        })
        .collect();
    let mut t = 0;
    while t < tokens.len() {
        if piece_bytes(&tokens[t].text).is_none() {
            t += 1;
            continue;
        }
        // A run of byte pieces: decode their bytes together.
        let end = (t..tokens.len())
            .find(|&i| piece_bytes(&tokens[i].text).is_none())
            .unwrap_or(tokens.len());
        decode_run(&tokens[t..end], t, &mut shown[t..end]);
        t = end;
    }
    shown
}

/// Decodes a run of byte pieces (the first at sequence index `first`) into `shown`.
fn decode_run(run: &[Token], first: usize, shown: &mut [TokenText]) {
    let mut bytes = Vec::new();
    let mut owner = Vec::new();
    for (i, token) in run.iter().enumerate() {
        let own = piece_bytes(&token.text).unwrap_or_default();
        shown[i].text.clear();
        shown[i].bytes = Some(hex(&own));
        owner.extend(std::iter::repeat_n(i, own.len()));
        bytes.extend(own);
    }
    let mut invalid: Vec<u8> = Vec::new();
    let mut invalid_owner = 0;
    let flush = |invalid: &mut Vec<u8>, owner: usize, shown: &mut [TokenText]| {
        if !invalid.is_empty() {
            shown[owner].text.push_str(&format!("‹{}›", hex(invalid)));
            invalid.clear();
        }
    };
    let mut p = 0;
    while p < bytes.len() {
        let len = utf8_len(bytes[p]);
        let decoded = (len > 0 && p + len <= bytes.len())
            .then(|| std::str::from_utf8(&bytes[p..p + len]).ok())
            .flatten();
        match decoded {
            Some(character) => {
                flush(&mut invalid, invalid_owner, shown);
                let (start, last) = (owner[p], owner[p + len - 1]);
                shown[start].text.push_str(character);
                if last > start {
                    shown[start].opens_span = true;
                    for s in &mut shown[start + 1..=last] {
                        s.continues_from = Some(first + start);
                    }
                }
                p += len;
            }
            None => {
                if owner[p] != invalid_owner {
                    flush(&mut invalid, invalid_owner, shown);
                }
                invalid_owner = owner[p];
                invalid.push(bytes[p]);
                p += 1;
            }
        }
    }
    flush(&mut invalid, invalid_owner, shown);
    for s in shown.iter_mut() {
        if s.text.is_empty() {
            s.text = CONTINUATION.to_owned();
        }
        if !s.spans() {
            s.bytes = None;
        }
    }
}

/// The bytes of a piece stored as `‹e6 95›`; `None` for any other text.
fn piece_bytes(text: &str) -> Option<Vec<u8>> {
    let inner = text.strip_prefix('‹')?.strip_suffix('›')?;
    inner
        .split(' ')
        .map(|h| {
            (h.len() == 2)
                .then(|| u8::from_str_radix(h, 16).ok())
                .flatten()
        })
        .collect()
}

/// A UTF-8 sequence's length from its first byte; 0 for a byte that cannot start one.
fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

fn hex(bytes: &[u8]) -> String {
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(" ")
}

/// A token's text as an axis label: whitespace made visible, long pieces shortened to
/// `max_chars` (with `…`).
pub fn axis_label(text: &str, max_chars: usize) -> String {
    let visible = text.replace('\n', "⏎").replace('\t', "⇥");
    let visible = if visible.trim().is_empty() {
        visible.replace(' ', "␣")
    } else {
        visible.trim().to_owned()
    };
    let visible = if visible.is_empty() {
        "∅".to_owned()
    } else {
        visible
    };
    if visible.chars().count() > max_chars {
        visible
            .chars()
            .take(max_chars.saturating_sub(1))
            .collect::<String>()
            + "…"
    } else {
        visible
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(texts: &[&str]) -> Vec<Token> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| Token::given(i as u32, (*t).to_owned()))
            .collect()
    }

    fn shown(texts: &[&str]) -> Vec<String> {
        token_texts(&tokens(texts))
            .into_iter()
            .map(|t| t.text)
            .collect()
    }

    #[test]
    fn a_character_split_over_two_tokens_is_shown_once_and_marked() {
        // 敏 = e6 95 8f, split after two bytes; "the" around it is whole.
        let texts = token_texts(&tokens(&["the", "‹e6 95›", "‹8f›", " dog"]));
        let t: Vec<&str> = texts.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(t, ["the", "敏", "·", " dog"]);
        assert!(texts[1].opens_span && texts[1].continues_from.is_none());
        assert_eq!(texts[2].continues_from, Some(1));
        assert_eq!(texts[1].bytes.as_deref(), Some("e6 95"));
        assert_eq!(texts[2].bytes.as_deref(), Some("8f"));
        assert!(!texts[0].spans() && !texts[3].spans() && texts[3].bytes.is_none());
    }

    #[test]
    fn pieces_holding_a_whole_character_and_a_part_share_it_forward() {
        // 中 (e4 b8 ad) whole and the start of 敏, then the rest of 敏 and the start of 捷
        // (e6 8d b7), then its end.
        let texts = token_texts(&tokens(&["‹e4 b8 ad e6›", "‹95 8f e6 8d›", "‹b7›"]));
        let t: Vec<&str> = texts.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(t, ["中敏", "捷", "·"]);
        assert_eq!(texts[1].continues_from, Some(0));
        assert!(texts[1].opens_span);
        assert_eq!(texts[2].continues_from, Some(1));
        // A four-byte emoji (😀 = f0 9f 98 80) over three tokens.
        assert_eq!(shown(&["‹f0›", "‹9f 98›", "‹80›"]), ["😀", "·", "·"]);
        let emoji = token_texts(&tokens(&["‹f0›", "‹9f 98›", "‹80›"]));
        assert_eq!(emoji[2].continues_from, Some(0));
    }

    #[test]
    fn bytes_that_never_complete_a_character_stay_hex() {
        // The run ends before 敏 is whole; a stray continuation byte; an invalid lead byte.
        assert_eq!(shown(&["‹e6 95›", "a"]), ["‹e6 95›", "a"]);
        assert_eq!(shown(&["‹8f›", "‹e4 b8 ad›"]), ["‹8f›", "中"]);
        assert_eq!(shown(&["‹ff e4 b8›", "‹ad›"]), ["‹ff›中", "·"]);
        // Text that only looks like a piece is left alone.
        assert_eq!(shown(&["‹hello›", "‹e›"]), ["‹hello›", "‹e›"]);
        let alone = token_texts(&tokens(&["‹e6 95›"]));
        assert!(!alone[0].spans() && alone[0].bytes.is_none());
    }

    #[test]
    fn axis_labels_show_whitespace_and_shorten() {
        assert_eq!(axis_label(" the", 12), "the");
        assert_eq!(axis_label("  ", 12), "␣␣");
        assert_eq!(axis_label("\n", 12), "⏎");
        assert_eq!(axis_label("", 12), "∅");
        assert_eq!(axis_label("abcdefghijklmnop", 12), "abcdefghijk…");
    }
}
