//! `corpus` on the sample model: its counts are the sums of `trace` over the same sequences, a
//! cancelled run keeps what it counted, the known specialization of mixtral-tiny shows, and bad
//! input is skipped with its file and line.

mod common;

use moescope::analysis::corpus::CorpusReport;
use moescope::corpus::{documents, run_corpus, CorpusOptions};
use moescope::engine::capture::CaptureLevel;
use moescope::engine::{Engine, EngineOptions};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

fn engine() -> Engine {
    let options = EngineOptions {
        capture: CaptureLevel::Routing,
        ..EngineOptions::default()
    };
    Engine::load(&common::sample_models_dir().join("mixtral-tiny"), options).unwrap()
}

fn corpus_dir() -> std::path::PathBuf {
    common::fixtures_dir().join("corpus")
}

/// `[domain][moe layer][expert]` as the report counts it.
fn report_counts(report: &CorpusReport) -> BTreeMap<String, Vec<Vec<u64>>> {
    report
        .domains
        .iter()
        .map(|d| {
            let layers = d
                .moe_layers
                .iter()
                .map(|l| l.expert_counts.clone())
                .collect();
            (d.name.clone(), layers)
        })
        .collect()
}

/// The same counts from one `run` per sequence: every document read as the corpus reads it,
/// tokenized, cut at `max_seq` tokens.
fn traced_counts(max_seq: usize) -> (BTreeMap<String, Vec<Vec<u64>>>, u64) {
    let mut engine = engine();
    let sources = documents::sources(&[corpus_dir()]).unwrap();
    let mut counts: BTreeMap<String, Vec<Vec<u64>>> = BTreeMap::new();
    let mut tokens = 0;
    let mut log = documents::ReadLog::default();
    for source in &sources {
        let _ = documents::read_source(source, "text", &mut log, &mut |piece| {
            let ids = engine
                .checkpoint
                .encode_with(&piece.text, piece.starts_document)
                .unwrap();
            for chunk in ids.chunks(max_seq) {
                let trace = engine.run(chunk).unwrap();
                tokens += trace.tokens.len() as u64;
                let e = trace.model.num_experts;
                let domain = counts
                    .entry(piece.domain.clone())
                    .or_insert_with(|| vec![vec![0; e]; trace.moe_layers.len()]);
                for (l, layer) in trace.moe_layers.iter().enumerate() {
                    for row in layer.topk_ids.iter_rows() {
                        for &x in row {
                            domain[l][x as usize] += 1;
                        }
                    }
                }
            }
            std::ops::ControlFlow::Continue(())
        });
    }
    (counts, tokens)
}

#[test]
fn corpus_counts_are_the_sums_of_traces_over_the_same_sequences() {
    for max_seq in [512, 16] {
        let options = CorpusOptions {
            max_seq_tokens: max_seq,
            ..CorpusOptions::default()
        };
        let sources = documents::sources(&[corpus_dir()]).unwrap();
        let run = run_corpus(
            &mut engine(),
            &sources,
            &options,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        let (want, tokens) = traced_counts(max_seq);
        assert_eq!(report_counts(&run.report), want, "max_seq_tokens {max_seq}");
        assert_eq!(run.report.tokens, tokens);
        // Nine .txt documents and three labelled lines, in three domains.
        assert_eq!(run.report.documents, 12);
        let per_domain: Vec<(String, u64)> = run
            .report
            .domains
            .iter()
            .map(|d| (d.name.clone(), d.documents))
            .collect();
        assert_eq!(
            per_domain,
            [
                ("chinese".into(), 4),
                ("code".into(), 4),
                ("english".into(), 4)
            ]
        );
        let split = run.report.input.documents_split;
        if max_seq == 512 {
            assert_eq!(split, 0);
        } else {
            assert!(split >= 9, "{split} documents longer than 16 tokens");
        }
    }
}

#[test]
fn the_sample_models_domain_specialization_shows() {
    let sources = documents::sources(&[corpus_dir()]).unwrap();
    let run = run_corpus(
        &mut engine(),
        &sources,
        &CorpusOptions::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    // domain_stats.json: the distributions transformers measured on 8192 held-out tokens per
    // domain when the sample model was made.
    let stats: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::sample_models_dir().join("mixtral-tiny/domain_stats.json")).unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = run.report.domains.iter().map(|d| d.name.as_str()).collect();
    for (l, layer) in run.report.moe_layers.iter().enumerate() {
        let chinese_code = layer
            .domain_jsd_bits
            .iter()
            .find(|p| p.a == "chinese" && p.b == "code")
            .unwrap();
        assert!(
            chinese_code.jsd_bits > 0.3,
            "layer {l}: {}",
            chinese_code.jsd_bits
        );
        for (d, shares) in layer.domain_distribution.iter().enumerate() {
            let ours = (0..shares.len())
                .max_by(|&a, &b| shares[a].total_cmp(&shares[b]))
                .unwrap();
            let theirs: Vec<f64> = stats["layers"][l]["distribution"][names[d]]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let mut top: Vec<usize> = (0..theirs.len()).collect();
            top.sort_by(|&a, &b| theirs[b].total_cmp(&theirs[a]));
            assert!(
                top[..3].contains(&ours),
                "layer {l}, {}: our top expert {ours} is not among {:?}",
                names[d],
                &top[..3]
            );
        }
    }
}

#[test]
fn a_cancelled_run_keeps_what_it_counted() {
    let sources = documents::sources(&[corpus_dir()]).unwrap();
    let cancel = AtomicBool::new(false);
    let run = run_corpus(
        &mut engine(),
        &sources,
        &CorpusOptions::default(),
        &cancel,
        &mut |p| {
            if p.documents >= 2 {
                cancel.store(true, Ordering::Relaxed);
            }
        },
    )
    .unwrap();
    assert!(run.report.input.cancelled);
    assert_eq!(run.report.documents, 2);
    assert!(run.report.tokens > 0);
}

#[test]
fn bad_input_is_skipped_with_file_and_line_and_an_empty_corpus_is_refused() {
    let root = std::env::temp_dir().join(format!("moescope-corpus-cli-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let data = root.join("news.jsonl");
    let mut bytes = b"{\"text\": \"The river flows past the mill.\"}\n".to_vec();
    bytes.extend(b"{\"body\": \"wrong field\"}\n{\"text\": \"\xff\"}\n{\"text\": \"\"}\n");
    std::fs::write(&data, &bytes).unwrap();
    let out = root.join("corpus.json");
    let model = common::sample_models_dir().join("mixtral-tiny");
    let (ok, stdout, stderr) = common::moescope(&[
        "corpus",
        model.to_str().unwrap(),
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("news.jsonl:2: no string field 'text'; skipped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("news.jsonl:3: not valid UTF-8; skipped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("news.jsonl:4: empty document; skipped"),
        "{stderr}"
    );
    assert!(stderr.contains("corpus: 1 documents"), "{stderr}");
    assert!(stdout.starts_with("layer  domain JSD (bits)"), "{stdout}");
    let report: CorpusReport = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(report.format, "moescope-corpus");
    assert_eq!(report.domains[0].name, "news");
    assert_eq!(
        (
            report.input.skipped_without_field,
            report.input.skipped_invalid_utf8,
            report.input.skipped_empty
        ),
        (1, 1, 1)
    );
    // Nothing to run: one line naming the file, and no output written.
    std::fs::write(root.join("empty.txt"), "\n\n").unwrap();
    let out2 = root.join("none.json");
    let (ok, _, stderr) = common::moescope(&[
        "corpus",
        model.to_str().unwrap(),
        root.join("empty.txt").to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("empty.txt: no document with any text to run"),
        "{stderr}"
    );
    assert!(!out2.exists());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn compare_lines_up_two_corpus_files_and_export_draws_one() {
    let root = std::env::temp_dir().join(format!("moescope-corpus-compare-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let model = common::sample_models_dir().join("mixtral-tiny");
    let data = corpus_dir();
    let (f32_out, bf16_out) = (root.join("f32.json"), root.join("bf16.json"));
    for (dtype, out) in [("f32", &f32_out), ("bf16", &bf16_out)] {
        let (ok, _, stderr) = common::moescope(&[
            "corpus",
            model.to_str().unwrap(),
            data.to_str().unwrap(),
            "--dtype",
            dtype,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{stderr}");
    }
    let (ok, stdout, stderr) = common::moescope(&[
        "compare",
        f32_out.to_str().unwrap(),
        bf16_out.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let c: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        c["domains"],
        serde_json::json!(["chinese", "code", "english"])
    );
    for layer in c["moe_layers"].as_array().unwrap() {
        // The sample model's bf16 weights route nearly as f32 does.
        assert!(layer["load_jsd_bits"].as_f64().unwrap() < 0.01, "{layer}");
        assert_eq!(layer["domain_jsd_bits"].as_array().unwrap().len(), 3);
    }
    // Its figure: domains × experts of one layer, as SVG naming the domains.
    let svg = root.join("domains.svg");
    let (ok, _, stderr) = common::moescope(&[
        "export",
        f32_out.to_str().unwrap(),
        "--layer",
        "3",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.contains("chinese") && drawn.contains("layer 3 expert share per domain"));
    // A corpus against a trace: refused in one line naming the file.
    let trace = root.join("t.json");
    let (ok, _, stderr) = common::moescope(&[
        "trace",
        model.to_str().unwrap(),
        "--prompt",
        "hello",
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = common::moescope(&[
        "compare",
        f32_out.to_str().unwrap(),
        trace.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("t.json") && stderr.contains("not a corpus file"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    std::fs::remove_dir_all(&root).unwrap();
}
