#!/usr/bin/env bash
# build-cuda.sh [--headless] [OUT]
# Builds the CUDA release binary with CUDA *loaded at run time* and writes it, stripped, to OUT
# (default gpu-run/moescope-cuda).
#
# candle-core 0.11 asks its CUDA bindings (cudarc) to link libcuda/cuBLAS/cuRAND at build time, so
# such a binary does not even start where no NVIDIA driver is installed. This script builds against
# a copy of candle-core whose only change is cudarc's `dynamic-linking` feature replaced by
# `dynamic-loading` (the copy is made from the cargo registry into target/, nothing is vendored in
# the repository); moescope then probes the libraries before opening a GPU and falls back to the CPU
# with a message when they are missing. The CUDA runtime is linked statically for the same reason.
#
# Needs the CUDA toolchain of ../shared/gpu/setup-cuda-toolchain.sh (CUDA_TOOLCHAIN, default
# /tmp/cuda13). --headless leaves the desktop app out (the GPU machine has no display).
set -euo pipefail
cd "$(dirname "$0")/.."
features="cuda"
if [ "${1:-}" = "--headless" ]; then
    shift
    build_features=(--no-default-features --features cuda)
else
    build_features=(--features "gui,$features")
fi
out=${1:-gpu-run/moescope-cuda}
toolchain=${CUDA_TOOLCHAIN:-/tmp/cuda13}
# shellcheck disable=SC1091
source "$toolchain/env.sh"

version=$(sed -n '/^name = "candle-core"$/{n;s/^version = "\(.*\)"$/\1/p;}' Cargo.lock)
registry_copy=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/candle-core-"$version" | head -n1)
patched=target/cuda-patch/candle-core
if [ ! -f "$patched/Cargo.toml" ] || ! grep -q '"dynamic-loading"' "$patched/Cargo.toml"; then
    rm -rf "$patched" && mkdir -p "$(dirname "$patched")"
    cp -r "$registry_copy" "$patched"
    sed -i 's/"dynamic-linking"/"dynamic-loading"/' "$patched/Cargo.toml"
    grep -q '"dynamic-loading"' "$patched/Cargo.toml" || { echo "could not patch $patched" >&2; exit 1; }
fi

# candle-kernels links its grouped-GEMM kernels against the CUDA runtime as a shared library
# (`-lcudart`), which would again stop the binary from starting without CUDA installed. A linker
# script named libcudart.so, found first, hands the linker the static runtime instead (it loads the
# driver itself, at run time).
# gcc searches each LIBRARY_PATH entry as DIR/../lib first, so the folder must be named lib.
link_dir=$PWD/target/cuda-patch/lib
mkdir -p "$link_dir"
echo "INPUT($CUDA_ROOT/lib/libcudart_static.a -lrt -lpthread -ldl)" > "$link_dir/libcudart.so"
export LIBRARY_PATH="$link_dir:$LIBRARY_PATH"
touch src/main.rs   # relink even when only the link inputs changed

# The patch rewrites Cargo.lock's candle-core entry; keep the committed lock file as it is.
cp Cargo.lock target/cuda-patch/Cargo.lock.saved
trap 'cp target/cuda-patch/Cargo.lock.saved Cargo.lock' EXIT
cargo build --release "${build_features[@]}" \
    --config "patch.crates-io.candle-core.path=\"$patched\""
mkdir -p "$(dirname "$out")"
strip -o "$out" target/release/moescope
echo "CUDA build (CUDA loaded at run time): $out ($(du -h "$out" | cut -f1))"
