#!/usr/bin/env bash
# Everything before training, on a Debian 12 machine with the package registries (run as root):
# collect the corpus, train the tokenizer, write the tokenized bundle that travels to the GPU.
#
#   sample_models/recipe/prepare_data.sh [CORPUS_DIR] [BUNDLE_DIR]
#
# CORPUS_DIR defaults to /tmp/moescope-corpus (not committed, ~11 MB of text), BUNDLE_DIR to
# gpu-run/data (git-ignored, ~9 MB). Needs python3 with numpy and tokenizers (PYTHON=... to pick one).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CORPUS="${1:-/tmp/moescope-corpus}"
BUNDLE="${2:-$REPO/gpu-run/data}"
PY="${PYTHON:-python3}"
PYTHON="$PY" "$HERE/collect_corpus.sh" "$CORPUS"
"$PY" "$HERE/train_tokenizer.py" --corpus "$CORPUS" --out "$CORPUS/tokenizer"
"$PY" "$HERE/make_bundle.py" --corpus "$CORPUS" --tokenizer "$CORPUS/tokenizer" --out "$BUNDLE"
