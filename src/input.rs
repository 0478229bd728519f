//! What a user hands moescope: a path that is either a trace file or a checkpoint, and tokens as
//! text or ids. The CLI and the desktop app read both by these rules, so a file that opens as a
//! trace in one opens as a trace in the other.

use crate::error::Result;
use crate::model::checkpoint::Checkpoint;
use std::path::Path;

/// A trace file rather than a checkpoint: a `.json` file that is not a checkpoint's own
/// `config.json` or safetensors shard index (`*.index.json`).
pub fn is_trace_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    path.is_file()
        && name.ends_with(".json")
        && name != "config.json"
        && !name.ends_with(".index.json")
}

/// Whether `path` holds a corpus JSON rather than a trace: `moescope corpus` writes its format name
/// first, so the head of the file tells without parsing it all.
pub fn is_corpus_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 256];
    let read = std::fs::File::open(path).and_then(|mut f| f.read(&mut head));
    read.is_ok_and(|n| head[..n].windows(17).any(|w| w == b"\"moescope-corpus\""))
}

/// Tokens to run: text for the checkpoint's tokenizer, or ids fed as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenInput {
    Prompt(String),
    Ids(Vec<u32>),
}

impl TokenInput {
    /// The ids to feed `checkpoint`; text needs its tokenizer (the error names the missing file).
    pub fn ids(&self, checkpoint: &Checkpoint) -> Result<Vec<u32>> {
        match self {
            TokenInput::Prompt(text) => checkpoint.encode(text),
            TokenInput::Ids(ids) => Ok(ids.clone()),
        }
    }
}

/// `1, 2 3` → `[1, 2, 3]`: ids separated by commas and/or white space.
pub fn parse_token_ids(text: &str) -> std::result::Result<Vec<u32>, String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| format!("'{s}' is not a token id"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_accept_commas_and_spaces_and_name_the_bad_one() {
        assert_eq!(parse_token_ids("1, 2 3,,4"), Ok(vec![1, 2, 3, 4]));
        assert_eq!(parse_token_ids(""), Ok(vec![]));
        assert_eq!(
            parse_token_ids("1,x,3"),
            Err("'x' is not a token id".to_string())
        );
        assert!(parse_token_ids("-1").is_err());
    }

    #[test]
    fn checkpoint_json_files_are_not_traces() {
        let dir = std::env::temp_dir().join(format!("moescope-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["config.json", "model.safetensors.index.json", "run.JSON"] {
            std::fs::write(dir.join(name), "{}").unwrap();
        }
        assert!(!is_trace_file(&dir.join("config.json")));
        assert!(!is_trace_file(&dir.join("model.safetensors.index.json")));
        assert!(is_trace_file(&dir.join("run.JSON")));
        assert!(!is_trace_file(&dir.join("missing.json")));
        assert!(!is_trace_file(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
