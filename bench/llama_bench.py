#!/usr/bin/env python3
"""Prefill speed of moescope against llama.cpp's `llama-bench` on the same GGUF files.

Usage:
    python bench/llama_bench.py FILE.gguf [FILE.gguf ...] --llama-cpp LLAMA_CPP
        [--tokens 128,512] [--threads 2] [--repeat 3] [--moescope target/release/moescope]

Per file and token count, llama-bench (`-p N -n 0 -t T -r R -o json`, the build under
LLAMA_CPP/build/bin) and `moescope bench FILE --tokens N --repeat R --json` (RAYON_NUM_THREADS=T)
run one after the other in this sitting; prints both speeds in tokens/s, the ratio
(moescope / llama.cpp) and moescope's resident memory after its runs against the file's size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from compare import run_json


def llama_bench(tree: Path, path: Path, tokens: int, threads: int, repeat: int) -> float:
    """llama.cpp's mean prefill tokens/s."""
    binary = tree / "build" / "bin" / "llama-bench"
    cmd = [str(binary), "-m", str(path), "-p", str(tokens), "-n", "0", "-t", str(threads),
           "-r", str(repeat), "-o", "json"]
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    (result,) = json.loads(out)
    return float(result["avg_ts"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--llama-cpp", required=True, type=Path)
    parser.add_argument("--tokens", default="128,512")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--moescope", default="target/release/moescope")
    args = parser.parse_args()

    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    rows = []
    for path in args.files:
        for tokens in map(int, args.tokens.split(",")):
            theirs = llama_bench(args.llama_cpp, path, tokens, args.threads, args.repeat)
            ours = run_json([args.moescope, "bench", str(path), "--tokens", str(tokens),
                             "--repeat", str(args.repeat), "--json"], env)
            rows.append((path, tokens, theirs, ours))

    print(f"\n{args.threads} threads, {args.repeat} runs each, prefill tokens/s")
    print(f"{'file':28} {'tokens':>6} {'llama.cpp':>10} {'moescope':>9} {'ratio':>6} "
          f"{'resident MB':>12} {'file MB':>8}")
    for path, tokens, theirs, ours in rows:
        resident = ours.get("rss_mb") or float("nan")
        print(f"{path.name:28} {tokens:6d} {theirs:10.0f} {ours['tokens_per_s']:9.0f} "
              f"{ours['tokens_per_s'] / theirs:5.2f}x {resident:12.0f} "
              f"{path.stat().st_size / 1e6:8.0f}")


if __name__ == "__main__":
    main()
