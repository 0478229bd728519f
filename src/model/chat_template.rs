//! Chat templates: how an instruct checkpoint wants a conversation written before it is
//! tokenized. The template is the checkpoint's own Jinja source, found where transformers 5 looks
//! (`chat_template.jinja`, else `tokenizer_config.json`'s `chat_template`, a string or a list of
//! named templates of which `default` is used) or in a GGUF file's `tokenizer.chat_template`. It is
//! rendered the way transformers' `apply_chat_template` renders it: `trim_blocks` and
//! `lstrip_blocks` on, `raise_exception`, `strftime_now` and a `tojson` that writes Python's
//! `json.dumps(ensure_ascii=False)`, Python string methods (`.strip()`, `.startswith()`), the
//! special tokens as variables, and the result tokenized without adding special tokens again.

use crate::error::{Error, Result};
use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A checkpoint's chat template with the special-token strings it may refer to.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    pub source: String,
    /// Where the template came from (for error messages).
    pub path: PathBuf,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub unk_token: Option<String>,
    pub pad_token: Option<String>,
}

impl ChatTemplate {
    /// The template of the checkpoint folder `dir`, if it has one.
    pub fn from_dir(dir: &Path) -> Result<Option<Self>> {
        let config_path = dir.join("tokenizer_config.json");
        let config: serde_json::Value = if config_path.is_file() {
            let text = read(&config_path)?;
            serde_json::from_str(&text).map_err(|e| bad(&config_path, e.to_string()))?
        } else {
            serde_json::Value::Null
        };
        let jinja_path = dir.join("chat_template.jinja");
        let (source, path) = if jinja_path.is_file() {
            (read(&jinja_path)?, jinja_path)
        } else {
            match config.get("chat_template") {
                None | Some(serde_json::Value::Null) => return Ok(None),
                Some(serde_json::Value::String(s)) => (s.clone(), config_path.clone()),
                Some(serde_json::Value::Array(named)) => {
                    let default = named
                        .iter()
                        .find(|t| t.get("name") == Some(&"default".into()));
                    let template = default
                        .and_then(|t| t.get("template"))
                        .and_then(|t| t.as_str())
                        .ok_or_else(|| {
                            bad(
                                &config_path,
                                "chat_template lists no template named \"default\"".into(),
                            )
                        })?;
                    (template.to_owned(), config_path.clone())
                }
                Some(other) => {
                    return Err(bad(
                        &config_path,
                        format!("chat_template is {other}, not a string or a list"),
                    ))
                }
            }
        };
        // Special tokens are a string or an AddedToken object with "content".
        let token = |name: &str| match config.get(name) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(object) => object.get("content")?.as_str().map(str::to_owned),
            None => None,
        };
        Ok(Some(Self {
            source,
            path,
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
            unk_token: token("unk_token"),
            pad_token: token("pad_token"),
        }))
    }

    /// The conversation as the text the model is prompted with; with `add_generation_prompt` the
    /// text ends where the assistant's answer begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", python_tojson);
        let fail = |e: minijinja::Error| {
            // The template's own message (raise_exception) reads best without the kind prefix.
            let detail = e.detail().map_or_else(|| e.to_string(), str::to_owned);
            bad(&self.path, format!("chat template: {detail}"))
        };
        let template = env.template_from_str(&self.source).map_err(fail)?;
        let context = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
            unk_token => self.unk_token,
            pad_token => self.pad_token,
            tools => Value::from(()),
            documents => Value::from(()),
        };
        template.render(context).map_err(fail)
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

fn bad(path: &Path, problem: String) -> Error {
    Error::BadConfig {
        path: path.to_owned(),
        problem,
    }
}

/// transformers' `tojson`: `json.dumps(value, ensure_ascii=False, indent=indent)`, whose
/// separators are `", "` and `": "` without an indent, keys in the order the template wrote them
/// (minijinja's own filter writes compact, HTML-escaped JSON, which would change the prompt).
fn python_tojson(
    value: Value,
    kwargs: minijinja::value::Kwargs,
) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_python_json(&value, indent, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

fn write_python_json(
    value: &Value,
    indent: Option<usize>,
    depth: usize,
    out: &mut String,
) -> std::result::Result<(), minijinja::Error> {
    use minijinja::value::ValueKind;
    let newline = |out: &mut String, depth: usize| {
        if let Some(width) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * depth));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    let json_string = |s: &str| serde_json::to_string(s).unwrap_or_default();
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::String => out.push_str(&json_string(value.as_str().unwrap_or_default())),
        ValueKind::Number => {
            let json = serde_json::to_string(value)
                .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
            out.push_str(&json);
        }
        ValueKind::Map => {
            let keys: Vec<Value> = value.try_iter()?.collect();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                out.push_str(&json_string(&key.to_string()));
                out.push_str(": ");
                write_python_json(&value.get_item(key)?, indent, depth + 1, out)?;
            }
            if !keys.is_empty() {
                newline(out, depth);
            }
            out.push('}');
        }
        _ => {
            let items: Vec<Value> = value.try_iter()?.collect();
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_python_json(item, indent, depth + 1, out)?;
            }
            if !items.is_empty() {
                newline(out, depth);
            }
            out.push(']');
        }
    }
    Ok(())
}

/// `strftime_now(format)`: the local time formatted by the C library's strftime, as Python's
/// `datetime.now().strftime` does (Llama-3 templates print the date with it).
fn strftime_now(format: String) -> std::result::Result<String, minijinja::Error> {
    let c_format = std::ffi::CString::new(format)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let mut buffer = vec![0u8; 256];
    // SAFETY: `time` and `localtime_r` fill the values passed; `strftime` writes at most
    // `buffer.len()` bytes into `buffer` and returns how many.
    let written = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        libc::strftime(
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            c_format.as_ptr(),
            &tm,
        )
    };
    buffer.truncate(written);
    Ok(String::from_utf8_lossy(&buffer).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(source: &str) -> ChatTemplate {
        ChatTemplate {
            source: source.into(),
            path: "tokenizer_config.json".into(),
            bos_token: Some("<s>".into()),
            eos_token: Some("</s>".into()),
            unk_token: None,
            pad_token: None,
        }
    }

    #[test]
    fn blocks_are_trimmed_and_python_methods_work() {
        let t = template(
            "{% for m in messages %}\n  {{ m['role'] | upper }}: {{ m.content.strip() }}\n{% endfor %}\n{% if add_generation_prompt %}ASSISTANT:{% endif %}",
        );
        let messages = [ChatMessage::new("user", "  hi  ")];
        // As jinja2 renders it: lstrip_blocks strips before `{%` tags, not before `{{`.
        assert_eq!(t.render(&messages, true).unwrap(), "  USER: hi\nASSISTANT:");
    }

    #[test]
    fn raise_exception_is_a_one_line_error_naming_the_file() {
        let t = template("{{ raise_exception('Only user and assistant roles are supported!') }}");
        let err = t.render(&[], false).unwrap_err().to_string();
        assert!(
            err.contains("Only user and assistant roles are supported!"),
            "{err}"
        );
        assert!(err.contains("tokenizer_config.json"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn tojson_writes_what_python_json_dumps_writes() {
        let t = template(
            "{{ [1, {'a': messages[0].content}] | tojson }}|{{ [1, 'é'] | tojson(indent=2) }}",
        );
        let out = t
            .render(&[ChatMessage::new("user", "<a & b>")], false)
            .unwrap();
        assert_eq!(out, "[1, {\"a\": \"<a & b>\"}]|[\n  1,\n  \"é\"\n]");
    }
}
