//! Export: figures and data files from a trace, through the library and the CLI.

mod common;

use moescope::engine::{Engine, EngineOptions};
use moescope::export::{figure, write_data, write_figure, FigureKind};
use moescope::trace::Trace;
use std::path::PathBuf;
use std::process::Command;

fn trace_of(fixture: &str) -> Trace {
    let dir = common::fixtures_dir().join(fixture);
    let mut engine = Engine::load(&dir, EngineOptions::default()).unwrap();
    engine.run(&[5, 17, 42, 99, 3, 64, 8, 120]).unwrap().clone()
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("moescope-export-{}-{name}", std::process::id()))
}

#[test]
fn routing_map_figure_has_one_cell_per_layer_and_token() {
    let trace = trace_of("deepseek-v3");
    let fig = figure::build(&trace, &FigureKind::RoutingMap).unwrap();
    assert_eq!((fig.rows, fig.cols), (2, 8));
    assert_eq!(
        fig.row_labels,
        vec!["1", "2"],
        "rows are transformer block indices"
    );
    assert_eq!(fig.cells.len(), 16);
    let heat = figure::build(
        &trace,
        &FigureKind::LayerHeatmap {
            moe_layer: 1,
            probabilities: true,
        },
    )
    .unwrap();
    assert_eq!((heat.rows, heat.cols), (16, 8));
    assert_eq!(
        heat.outlined.len(),
        8 * 4,
        "every chosen (expert, token) is outlined"
    );
    assert!(figure::build(
        &trace,
        &FigureKind::LayerHeatmap {
            moe_layer: 7,
            probabilities: true
        }
    )
    .is_err());
}

#[test]
fn png_and_svg_are_written_with_labels() {
    let trace = trace_of("mixtral");
    for kind in [
        FigureKind::RoutingMap,
        FigureKind::LayerHeatmap {
            moe_layer: 0,
            probabilities: false,
        },
        FigureKind::LoadHeatmap,
    ] {
        let png = temp("fig.png");
        write_figure(&trace, &kind, &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let svg = temp("fig.svg");
        write_figure(&trace, &kind, &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
        assert!(text.contains("mixtral:"), "title names the model");
    }
    let err = write_figure(&trace, &FigureKind::RoutingMap, &temp("fig.bmp")).unwrap_err();
    assert!(err.to_string().contains(".bmp"), "{err}");
}

#[test]
fn csv_is_long_format_with_probabilities() {
    let trace = trace_of("olmoe");
    let path = temp("data.csv");
    write_data(&trace, &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("layer,token_index,token,rank,expert,weight,prob")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * 8 * 8, "layers × tokens × top-8");
    // OLMoE does not renormalize: the applied weight equals the router probability.
    for row in &rows {
        let (weight, prob): (f64, f64) = (row[5].parse().unwrap(), row[6].parse().unwrap());
        assert!((weight - prob).abs() < 1e-5, "{row:?}");
    }
    let json = temp("data.json");
    write_data(&trace, &json).unwrap();
    assert_eq!(Trace::read_json(&json).unwrap(), trace);
}

#[test]
fn cli_export_from_a_model_equals_export_from_its_trace() {
    let exe = env!("CARGO_BIN_EXE_moescope");
    let dir = common::fixtures_dir().join("qwen2-moe");
    let (json, png_a, png_b) = (temp("cli.json"), temp("a.png"), temp("b.png"));
    let run = |args: &[&str]| {
        let out = Command::new(exe).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "export",
        dir.to_str().unwrap(),
        "--token-ids",
        "4,8,15,16,23,42",
        "--figure",
        "layer-heatmap",
        "--layer",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--png",
        png_a.to_str().unwrap(),
    ]);
    run(&[
        "export",
        json.to_str().unwrap(),
        "--figure",
        "layer-heatmap",
        "--layer",
        "2",
        "--png",
        png_b.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(&png_a).unwrap(),
        std::fs::read(&png_b).unwrap()
    );
    let out = Command::new(exe)
        .args([
            "export",
            json.to_str().unwrap(),
            "--figure",
            "layer-heatmap",
            "--layer",
            "0",
            "--png",
        ])
        .arg(&png_b)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("not a MoE layer"),
        "{stderr}"
    );
}

/// The child half of `a_write_killed_midway_leaves_the_old_file`: starts an atomic write of
/// `MOESCOPE_KILL_TARGET`, puts half the new bytes out, and waits to be killed.
#[test]
fn killed_writer_child() {
    let Ok(target) = std::env::var("MOESCOPE_KILL_TARGET") else {
        return;
    };
    let _ = moescope::atomic::write_with(std::path::Path::new(&target), |w| {
        w.write_all(&[b'n'; 1 << 20])?;
        w.flush()?;
        println!("half written");
        std::thread::sleep(std::time::Duration::from_secs(60));
        w.write_all(b"never")
    });
}

/// A process killed (SIGKILL) in the middle of writing a file leaves the previous file whole.
#[test]
fn a_write_killed_midway_leaves_the_old_file() {
    use std::io::BufRead;
    let path = temp("killed-write.json");
    std::fs::write(&path, "the old trace").unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "killed_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MOESCOPE_KILL_TARGET", &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let started = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("half written"));
    assert!(started, "the child never started writing");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "the old trace");
}
