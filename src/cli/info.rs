//! `moescope info`: what a checkpoint or GGUF file is and how moescope runs it.

use anyhow::Result;
use moescope::model::checkpoint::Checkpoint;
use moescope::model::weights::Quantization;

pub fn info(model: &std::path::Path, json: bool) -> Result<()> {
    if moescope::model::gguf::is_gguf_path(model) {
        return gguf_info(model, json);
    }
    let ckpt = Checkpoint::open(model)?;
    let spec = &ckpt.spec;
    let size_bytes: u64 = ckpt
        .weight_files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    if json {
        let value = serde_json::json!({
            "path": ckpt.dir.display().to_string(),
            "family": ckpt.family.name,
            "spec": spec,
            "num_moe_layers": spec.num_moe_layers(),
            "weight_files": ckpt.weight_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "size_bytes": size_bytes,
            "tokenizer": ckpt.tokenizer_path.as_ref().map(|p| p.display().to_string()),
            "tokenizer_note": ckpt.tokenizer_note,
            "declared_dtype": ckpt.config.dtype.map(|d| d.label()),
            "quantization": ckpt.quantization.label(),
            "ram_bytes": moescope::engine::memory::total_ram_bytes(),
            "description": moescope::model::describe::describe(spec)
                .into_iter()
                .map(|(label, text)| serde_json::json!({"label": label, "text": text}))
                .collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("{:<15}{}", "path", ckpt.dir.display());
    println!(
        "{:<15}{} ({})",
        "architecture", spec.architecture, ckpt.family.name
    );
    for (label, text) in moescope::model::describe::describe(spec) {
        println!("{label:<15}{text}");
    }
    println!(
        "{:<15}{} file(s), {:.2} MB, declared dtype {}{}",
        "weights",
        ckpt.weight_files.len(),
        size_bytes as f64 / 1e6,
        ckpt.config.dtype.map_or("none", |d| d.label()),
        match &ckpt.quantization {
            Quantization::None => String::new(),
            Quantization::Fp8 { block } => {
                format!(", FP8 e4m3 in {}×{} blocks", block[0], block[1])
            }
            Quantization::Mxfp4 => ", MXFP4 experts".into(),
        }
    );
    println!(
        "{:<15}on the CPU {}",
        "memory",
        moescope::engine::memory::cpu_residency_note(size_bytes)
    );
    println!(
        "tokenizer      {}",
        ckpt.tokenizer_path
            .as_ref()
            .map_or(ckpt.tokenizer_note.clone(), |p| p.display().to_string())
    );
    Ok(())
}

/// `info` for a GGUF file (or split set): what its header says, checked.
fn gguf_info(path: &std::path::Path, json: bool) -> Result<()> {
    use moescope::model::gguf::{GgufModel, MetaValue};
    let model = GgufModel::open(path)?;
    let first = model.metadata();
    let size_bytes = model.size_bytes();
    // How moescope runs it: the spec its metadata becomes, or why it does not run.
    let runs = moescope::model::gguf_spec::spec_of(&model);
    // Text input: what a prompt is tokenized with (the rebuilt vocabulary or a tokenizer.json).
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let (tokenizer_path, tokenizer_note) =
        match moescope::model::checkpoint::gguf_tokenizer_of(&model, dir) {
            Ok((_, path, note)) => (path, note),
            Err(e) => (None, e.to_string()),
        };
    if json {
        let metadata: serde_json::Map<String, serde_json::Value> = first
            .metadata
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    MetaValue::Uint(v) => serde_json::json!(v),
                    MetaValue::Int(v) => serde_json::json!(v),
                    MetaValue::Float(v) => serde_json::json!(v),
                    // The decimal the file's writer meant, not the f32's f64 widening.
                    MetaValue::Float32(v) => {
                        serde_json::json!(v.to_string().parse::<f64>().unwrap_or(f64::NAN))
                    }
                    MetaValue::Bool(v) => serde_json::json!(v),
                    MetaValue::Str(v) => serde_json::json!(v),
                    MetaValue::Array(a) => {
                        serde_json::json!({"array_of": a.element_name(), "len": a.len})
                    }
                };
                (key.clone(), value)
            })
            .collect();
        let tensors: Vec<serde_json::Value> = model
            .tensors()
            .map(|t| {
                serde_json::json!({"name": t.name, "type": t.ggml_type.to_string(), "dims": t.dims, "bytes": t.size_bytes})
            })
            .collect();
        let value = serde_json::json!({
            "path": path.display().to_string(),
            "format": "gguf",
            "version": first.version,
            "parts": model.parts.iter().map(|p| p.path.display().to_string()).collect::<Vec<_>>(),
            "architecture": first.architecture(),
            "size_bytes": size_bytes,
            "metadata": metadata,
            "tensors": tensors,
            "family": runs.as_ref().ok().map(|(family, _, _)| family.name),
            "spec": runs.as_ref().ok().map(|(_, _, spec)| spec),
            "not_runnable": runs.as_ref().err().map(|e| e.to_string()),
            "tokenizer": tokenizer_path.map(|p| p.display().to_string()),
            "tokenizer_note": tokenizer_note,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let mut lines = vec![("path".to_owned(), path.display().to_string())];
    lines.extend(model.describe());
    // DeepSeek's kv_b_proj rebuilt at load is held beside the mapping.
    let rebuilt = runs.as_ref().map_or(0, |(_, _, spec)| {
        moescope::model::gguf_spec::rebuilt_bytes(&model, spec)
    });
    lines.push((
        "memory".into(),
        format!(
            "on the CPU {}{}",
            moescope::engine::memory::cpu_residency_note(size_bytes + rebuilt),
            if rebuilt > 0 {
                format!(
                    " (with {} of kv_b_proj rebuilt in f32 from attn_k_b/attn_v_b)",
                    moescope::units::human_bytes(rebuilt)
                )
            } else {
                String::new()
            }
        ),
    ));
    match &runs {
        Ok((family, _, spec)) => {
            lines.push(("runs as".into(), family.name.to_owned()));
            lines.extend(
                moescope::model::describe::describe(spec)
                    .into_iter()
                    .map(|(label, text)| (label.to_owned(), text)),
            );
        }
        Err(e) => lines.push(("runs as".into(), format!("does not run: {e}"))),
    }
    lines.push(("prompts".into(), tokenizer_note));
    // Architecture keys are long (`attention.layer_norm_rms_epsilon`): one column for all.
    let width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    for (label, text) in lines {
        println!("{label:<width$}{text}");
    }
    Ok(())
}
