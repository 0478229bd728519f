#!/usr/bin/env bash
# bench/gpu_session.sh BINARY OUT — everything measured on the GPU machine, in one sitting:
# devices, f32 routing parity on every fixture, bf16 routing flips and kernel agreement, then
# moescope against transformers (eager and grouped_mm experts) on random checkpoints at OLMoE and
# Qwen3-30B-A3B dimensions (2 layers). BINARY is scripts/build-cuda.sh's output. Writes
# OUT/summary.txt (all tables) and OUT/reports.json (every bench report).
set -uo pipefail
bin=$(realpath "$1")
out=$(mkdir -p "$2" && realpath "$2")
cd "$(dirname "$0")/.."
work=$(mktemp -d)
{
    nvidia-smi -L
    "$bin" devices
    python3 bench/gpu_parity.py "$bin" --device cuda --out "$work/parity"
    echo "parity exit $?"
} > "$out/summary.txt" 2>&1
for shape in olmoe qwen3-30b; do
    python3 bench/make_checkpoint.py "$shape" "$work/$shape" --layers 2 --dtype bf16 >> "$out/summary.txt" 2>&1
    for tokens in 512 128; do
        python3 bench/compare.py "$work/$shape" --tokens "$tokens" --device cuda --dtype bf16 --repeat 10 \
            --moescope "$bin" --json "$work/$shape-bf16-$tokens.json" 2>/dev/null >> "$out/summary.txt"
        "$bin" bench "$work/$shape" --tokens "$tokens" --device cuda --dtype bf16 --repeat 10 \
            --expert-kernel grouped >> "$out/summary.txt" 2>&1
    done
done
python3 bench/make_checkpoint.py olmoe "$work/olmoe-f32" --layers 2 --dtype f32 >> "$out/summary.txt" 2>&1
python3 bench/compare.py "$work/olmoe-f32" --tokens 512 --device cuda --dtype f32 --repeat 10 \
    --moescope "$bin" --experts eager,grouped_mm --json "$work/olmoe-f32-512.json" 2>/dev/null >> "$out/summary.txt"
python3 - "$work" "$out/reports.json" <<'PY'
import json, sys, pathlib
work, dest = pathlib.Path(sys.argv[1]), sys.argv[2]
json.dump({p.stem: json.loads(p.read_text()) for p in sorted(work.glob("*.json"))}, open(dest, "w"), indent=1)
PY
