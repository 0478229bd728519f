#!/usr/bin/env bash
# What CI runs (.ci/run calls this): formatting, lints for the default and headless builds, the
# headless build's dependency tree, and the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --check

echo "== cargo clippy (default features)"
cargo clippy --all-targets -- -D warnings

echo "== cargo clippy (headless: --no-default-features)"
cargo clippy --no-default-features --all-targets -- -D warnings

echo "== headless build links no egui"
if cargo tree --no-default-features -e normal --prefix none | grep -E '^(egui|eframe|egui_plot|egui-wgpu|winit) '; then
    echo "error: the headless build depends on GUI crates" >&2
    exit 1
fi

echo "== cargo test (the README's test command)"
cargo test
