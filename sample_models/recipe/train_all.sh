#!/usr/bin/env bash
# Train the three sample models, then compute their per-domain routing statistics.
#
#   sample_models/recipe/train_all.sh [DATA_DIR] [OUT_DIR] [extra train.py arguments...]
#
# DATA_DIR defaults to gpu-run/data (written by make_bundle.py), OUT_DIR to sample_models.
# Needs python3 with torch, transformers, numpy, safetensors and tokenizers (matplotlib optional:
# without it there is no training_curves.png; run plot_curves.py later). Uses the GPU when there
# is one. If gpu-run/wheels/ holds a transformers wheel (the version the parity fixtures were
# made with), it is installed into /tmp/moescope-site and used instead of the machine's own.
#
# The tiny models leave a GPU mostly idle (each step is bound by kernel launches), so the three
# trainings run side by side by default; PARALLEL=0 runs them one after the other. Each model's
# result depends only on its seed, not on this choice. stdout goes to OUT_DIR/train_logs/.
# MODELS picks the models (default all three), e.g. MODELS=collapsed-tiny to retrain only that one;
# domain_stats.py then runs on those models alone.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DATA="${1:-$REPO/gpu-run/data}"
OUT="${2:-$REPO/sample_models}"
shift $(( $# > 2 ? 2 : $# ))
PY="${PYTHON:-python3}"
PARALLEL="${PARALLEL:-1}"
MODELS="${MODELS:-deepseek-tiny mixtral-tiny collapsed-tiny}"
export PYTHONUNBUFFERED=1

source "$HERE/use_wheels.sh"
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"

mkdir -p "$OUT/train_logs"
start=$(date +%s)
pids=()
for m in $MODELS; do
    if [[ "$PARALLEL" == 1 ]]; then
        "$PY" "$HERE/train.py" "$m" --data "$DATA" --out "$OUT/$m" "$@" > "$OUT/train_logs/$m.txt" 2>&1 &
        pids+=($!)
    else
        "$PY" "$HERE/train.py" "$m" --data "$DATA" --out "$OUT/$m" "$@" 2>&1 | tee "$OUT/train_logs/$m.txt"
    fi
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
for m in $MODELS; do
    echo "== $m"
    grep -E "^(step .*(00|50) |held-out|saved|experts:|router|done)" "$OUT/train_logs/$m.txt" | grep -v "it/s" | tail -10 || true
done
(( fail == 0 )) || { echo "error: a training failed (see $OUT/train_logs/)" >&2; exit 1; }
echo "== trained in $(( $(date +%s) - start )) s"
dirs=()
for m in $MODELS; do dirs+=("$OUT/$m"); done
"$PY" "$HERE/domain_stats.py" "${dirs[@]}" --data "$DATA" > "$OUT/train_logs/domain_stats_all.md" 2>/dev/null
for m in $MODELS; do grep -H -E "^\| \*\*mean" "$OUT/$m/domain_stats.md" || true; done
echo "== all done in $(( $(date +%s) - start )) s"
