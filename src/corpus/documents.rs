//! Corpus input: `.txt` files (one document each), `.jsonl` files (one document per line) and
//! folders of them, read line by line so a large file never sits in memory whole.
//!
//! A document's domain is its line's `domain` (or `label`) field when a `.jsonl` line has one;
//! else the file's name without extension — for a file in a subfolder of a folder given on the
//! command line, that subfolder's name, so `data/code/*.txt` and `data/zh/*.txt` are the domains
//! `code` and `zh`, and `data/arxiv.jsonl` is `arxiv`. Bad lines are skipped, counted and
//! reported with file and line; they never stop the run.

use crate::analysis::corpus::InputSummary;
use crate::error::{Error, Result};
use std::io::BufRead;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// Documents are tokenized in pieces of at most this many bytes (split at line ends, or at a
/// character boundary inside a longer line): the tokenizer's input limit, with room to spare.
pub const PIECE_BYTES: usize = 256 * 1024;

/// Warnings kept word for word; the rest are only counted.
pub const MAX_WARNINGS: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// The whole file is one document.
    Text,
    /// One JSON object per line, the text in a field.
    JsonLines,
}

/// One input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    /// The domain of its documents unless a line names its own.
    pub domain: String,
    pub kind: SourceKind,
    pub bytes: u64,
}

/// Text of one document, or of one piece of a long one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub domain: String,
    pub text: String,
    /// The first piece of its document (the tokenizer adds BOS to it only).
    pub starts_document: bool,
    /// Bytes of the input file consumed up to the end of this piece, for progress.
    pub bytes_read: u64,
}

/// What reading skipped and why, with the first [`MAX_WARNINGS`] reasons in words.
#[derive(Clone, Debug, Default)]
pub struct ReadLog {
    pub summary: InputSummary,
    pub warnings: Vec<String>,
    pub warnings_dropped: u64,
}

impl ReadLog {
    fn warn(&mut self, message: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(message);
        } else {
            self.warnings_dropped += 1;
        }
    }
}

/// The files to read, in a fixed order: each path as given; folders walked in name order.
pub fn sources(paths: &[PathBuf]) -> Result<Vec<Source>> {
    let mut found = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            let before = found.len();
            walk(path, path, &mut found)?;
            if found.len() == before {
                return Err(Error::Corpus {
                    path: path.clone(),
                    problem: "the folder holds no .txt or .jsonl files".into(),
                });
            }
        } else {
            let Some(kind) = kind_of(path) else {
                return Err(Error::Corpus {
                    path: path.clone(),
                    problem: "not a .txt or .jsonl file".into(),
                });
            };
            found.push(Source {
                path: path.clone(),
                domain: stem(path),
                kind,
                bytes: meta.len(),
            });
        }
    }
    Ok(found)
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<Source>) -> Result<()> {
    let io = |source| Error::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(io)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(root, &path, found)?;
        } else if let Some(kind) = kind_of(&path) {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let domain = match relative.components().count() {
                0 | 1 => stem(&path),
                _ => relative
                    .components()
                    .next()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .unwrap_or_else(|| stem(&path)),
            };
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            found.push(Source {
                path,
                domain,
                kind,
                bytes,
            });
        }
    }
    Ok(())
}

fn kind_of(path: &Path) -> Option<SourceKind> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "txt" => Some(SourceKind::Text),
        "jsonl" => Some(SourceKind::JsonLines),
        _ => None,
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Reads `source` piece by piece into `each`, which may stop the reading; skips are logged.
pub fn read_source(
    source: &Source,
    field: &str,
    log: &mut ReadLog,
    each: &mut dyn FnMut(Piece) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let file = match std::fs::File::open(&source.path) {
        Ok(f) => f,
        Err(e) => {
            log.summary.skipped_unreadable += 1;
            log.warn(format!(
                "{}: cannot read: {e}; skipped",
                source.path.display()
            ));
            return ControlFlow::Continue(());
        }
    };
    log.summary.files += 1;
    let mut reader = std::io::BufReader::new(file);
    match source.kind {
        SourceKind::Text => read_text(source, &mut reader, log, each),
        SourceKind::JsonLines => read_json_lines(source, field, &mut reader, log, each),
    }
}

/// The next line (without its end), its byte count, or `None` at the end; `Err` on a read error.
fn next_line(reader: &mut dyn BufRead, buffer: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    buffer.clear();
    let n = reader.read_until(b'\n', buffer)?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(n))
}

fn read_text(
    source: &Source,
    reader: &mut dyn BufRead,
    log: &mut ReadLog,
    each: &mut dyn FnMut(Piece) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut buffer = Vec::new();
    let mut text = String::new();
    let (mut read, mut line_number, mut first, mut any) = (0u64, 0usize, true, false);
    let mut emit = |text: &mut String, first: &mut bool, read: u64| {
        let piece = Piece {
            domain: source.domain.clone(),
            text: std::mem::take(text),
            starts_document: std::mem::replace(first, false),
            bytes_read: read,
        };
        each(piece)
    };
    loop {
        let n = match next_line(reader, &mut buffer) {
            Ok(Some(n)) => n,
            Ok(None) => break,
            Err(e) => {
                log.summary.skipped_unreadable += 1;
                log.warn(format!(
                    "{}: read failed after line {line_number}: {e}; the rest is skipped",
                    source.path.display()
                ));
                break;
            }
        };
        line_number += 1;
        read += n as u64;
        let Ok(line) = std::str::from_utf8(&buffer) else {
            log.summary.skipped_invalid_utf8 += 1;
            log.warn(format!(
                "{}:{line_number}: not valid UTF-8; the line is skipped",
                source.path.display()
            ));
            continue;
        };
        if text.len() + line.len() > PIECE_BYTES && !text.is_empty() {
            emit(&mut text, &mut first, read - n as u64)?;
        }
        for part in split_at_chars(line, PIECE_BYTES) {
            if text.len() + part.len() > PIECE_BYTES {
                emit(&mut text, &mut first, read)?;
            }
            any |= !part.trim().is_empty();
            text.push_str(part);
        }
    }
    if !any {
        log.summary.skipped_empty += 1;
        log.warn(format!(
            "{}: empty document; skipped",
            source.path.display()
        ));
        return ControlFlow::Continue(());
    }
    if !text.trim().is_empty() {
        emit(&mut text, &mut first, read)?;
    }
    ControlFlow::Continue(())
}

fn read_json_lines(
    source: &Source,
    field: &str,
    reader: &mut dyn BufRead,
    log: &mut ReadLog,
    each: &mut dyn FnMut(Piece) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut buffer = Vec::new();
    let (mut read, mut line_number) = (0u64, 0usize);
    let path = source.path.display();
    loop {
        let n = match next_line(reader, &mut buffer) {
            Ok(Some(n)) => n,
            Ok(None) => break,
            Err(e) => {
                log.summary.skipped_unreadable += 1;
                log.warn(format!(
                    "{path}: read failed after line {line_number}: {e}; the rest is skipped"
                ));
                break;
            }
        };
        line_number += 1;
        read += n as u64;
        let Ok(line) = std::str::from_utf8(&buffer) else {
            log.summary.skipped_invalid_utf8 += 1;
            log.warn(format!("{path}:{line_number}: not valid UTF-8; skipped"));
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                log.summary.skipped_without_field += 1;
                log.warn(format!(
                    "{path}:{line_number}: not a JSON object ({e}); skipped"
                ));
                continue;
            }
        };
        let Some(text) = value.get(field).and_then(|v| v.as_str()) else {
            log.summary.skipped_without_field += 1;
            log.warn(format!(
                "{path}:{line_number}: no string field '{field}'; skipped"
            ));
            continue;
        };
        if text.trim().is_empty() {
            log.summary.skipped_empty += 1;
            log.warn(format!("{path}:{line_number}: empty document; skipped"));
            continue;
        }
        let domain = ["domain", "label"]
            .iter()
            .find_map(|k| value.get(*k).and_then(|v| v.as_str()))
            .filter(|d| !d.trim().is_empty())
            .map_or_else(|| source.domain.clone(), str::to_owned);
        let parts = split_at_chars(text, PIECE_BYTES);
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            each(Piece {
                domain: domain.clone(),
                text: part.to_owned(),
                starts_document: i == 0,
                bytes_read: if i == last { read } else { read - n as u64 },
            })?;
        }
    }
    ControlFlow::Continue(())
}

/// `text` in parts of at most `max_bytes` bytes, cut at character boundaries.
fn split_at_chars(text: &str, max_bytes: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.len() > max_bytes {
        let mut cut = max_bytes;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            // One character wider than the limit: it goes whole.
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(source: &Source, field: &str) -> (Vec<Piece>, ReadLog) {
        let mut log = ReadLog::default();
        let mut got = Vec::new();
        let _ = read_source(source, field, &mut log, &mut |p| {
            got.push(p);
            ControlFlow::Continue(())
        });
        (got, log)
    }

    #[test]
    fn domains_come_from_labels_file_names_and_first_subfolders() {
        let root =
            std::env::temp_dir().join(format!("moescope-corpus-docs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("code/deep")).unwrap();
        std::fs::write(root.join("arxiv.jsonl"), "{\"text\": \"a\"}\n").unwrap();
        std::fs::write(root.join("code/a.txt"), "fn main() {}").unwrap();
        std::fs::write(root.join("code/deep/b.txt"), "let x = 1;").unwrap();
        std::fs::write(root.join("notes.md"), "ignored").unwrap();
        let found = sources(std::slice::from_ref(&root)).unwrap();
        let got: Vec<(String, SourceKind)> =
            found.iter().map(|s| (s.domain.clone(), s.kind)).collect();
        assert_eq!(
            got,
            [
                ("arxiv".into(), SourceKind::JsonLines),
                ("code".into(), SourceKind::Text),
                ("code".into(), SourceKind::Text)
            ]
        );
        // A file given directly is its own domain; other extensions and missing paths are errors.
        let direct = sources(&[root.join("code/a.txt")]).unwrap();
        assert_eq!(direct[0].domain, "a");
        let md = sources(&[root.join("notes.md")]).unwrap_err().to_string();
        assert!(
            md.contains("notes.md") && md.contains("not a .txt or .jsonl file"),
            "{md}"
        );
        assert!(sources(&[root.join("missing")]).is_err());
        std::fs::create_dir_all(root.join("empty")).unwrap();
        let empty = sources(&[root.join("empty")]).unwrap_err().to_string();
        assert!(empty.contains("no .txt or .jsonl files"), "{empty}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn bad_lines_are_skipped_counted_and_named() {
        let root = std::env::temp_dir().join(format!("moescope-corpus-bad-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let path = root.join("mixed.jsonl");
        let mut bytes = b"{\"text\": \"one\", \"domain\": \"news\"}\n".to_vec();
        bytes.extend(b"{\"body\": \"no text field\"}\n");
        bytes.extend(b"{\"text\": \"\xff\xfe\"}\n");
        bytes.extend(b"\n{\"text\": \"   \"}\nnot json\n{\"text\": \"two\"}");
        std::fs::write(&path, &bytes).unwrap();
        let source = &sources(std::slice::from_ref(&path)).unwrap()[0];
        let (got, log) = pieces(source, "text");
        let texts: Vec<(&str, &str)> = got
            .iter()
            .map(|p| (p.domain.as_str(), p.text.as_str()))
            .collect();
        assert_eq!(texts, [("news", "one"), ("mixed", "two")]);
        assert_eq!(got[1].bytes_read, bytes.len() as u64);
        let s = &log.summary;
        assert_eq!(
            (
                s.skipped_without_field,
                s.skipped_invalid_utf8,
                s.skipped_empty
            ),
            (2, 1, 1)
        );
        assert!(
            log.warnings[0].ends_with("mixed.jsonl:2: no string field 'text'; skipped"),
            "{:?}",
            log.warnings
        );
        assert!(log.warnings[1].ends_with("mixed.jsonl:3: not valid UTF-8; skipped"));
        // A text file with an invalid line keeps the rest; an empty one is skipped.
        std::fs::write(root.join("t.txt"), b"first\n\xc3(\nthird\n").unwrap();
        std::fs::write(root.join("e.txt"), b"\n  \n").unwrap();
        let found = sources(&[root.join("t.txt"), root.join("e.txt")]).unwrap();
        let (got, log) = pieces(&found[0], "text");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text, "first\nthird\n");
        assert!(got[0].starts_document);
        assert!(log.warnings[0].ends_with("t.txt:2: not valid UTF-8; the line is skipped"));
        let (got, log) = pieces(&found[1], "text");
        assert!(got.is_empty() && log.summary.skipped_empty == 1);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn long_text_is_cut_into_pieces_at_character_boundaries() {
        let parts = split_at_chars("aé€😀", 3);
        assert_eq!(parts, ["aé", "€", "😀"]);
        let root =
            std::env::temp_dir().join(format!("moescope-corpus-long-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let line = "字".repeat(PIECE_BYTES / 3 + 10) + "\n";
        std::fs::write(root.join("long.txt"), format!("{line}{line}")).unwrap();
        let found = sources(&[root.join("long.txt")]).unwrap();
        let (got, _) = pieces(&found[0], "text");
        assert!(got.len() >= 2);
        assert!(got.iter().all(|p| p.text.len() <= PIECE_BYTES));
        assert!(got[0].starts_document && got[1..].iter().all(|p| !p.starts_document));
        let joined: String = got.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(joined, format!("{line}{line}"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
