#!/usr/bin/env bash
# Collect the sample models' training corpus (Debian 12 "bookworm", run as root or with sudo).
#
#   sample_models/recipe/collect_corpus.sh [OUT_DIR]        # default /tmp/moescope-corpus
#
# The Debian packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
# OUT_DIR/root: nothing is installed system-wide, so heavy dependencies (LibreOffice) are not
# pulled in. The pinned Rust crates come from cargo's registry cache, filled by `cargo fetch` on
# a throwaway manifest (OUT_DIR/rust-fetch). The corpus itself is not committed;
# OUT_DIR/manifest.json records the sources, package versions, licences and sizes.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-/tmp/moescope-corpus}"
PYTHON="${PYTHON:-python3}"

PKGS="fortunes-min fortunes debian-reference-en fortunes-zh libreoffice-help-zh-cn
      debian-reference-zh-cn debian-faq-zh-cn libpython3.11-stdlib"

mkdir -p "$OUT/debs" "$OUT/root"
apt-get update -qq
# -o APT::Sandbox::User=root: the download folder need not be readable by the _apt user.
(cd "$OUT/debs" && apt-get download -q -o APT::Sandbox::User=root $PKGS)
for f in "$OUT"/debs/*.deb; do dpkg-deb -x "$f" "$OUT/root"; done

mkdir -p "$OUT/rust-fetch/src"
: > "$OUT/rust-fetch/src/lib.rs"
"$PYTHON" "$HERE/collect_corpus.py" --print-cargo-manifest > "$OUT/rust-fetch/Cargo.toml"
cargo fetch -q --manifest-path "$OUT/rust-fetch/Cargo.toml"

"$PYTHON" "$HERE/collect_corpus.py" --root "$OUT/root" --debs "$OUT/debs" --out "$OUT"
