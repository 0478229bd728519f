#!/usr/bin/env python3
"""Corpus mode against `moescope bench` in the same sitting: tokens/s and peak RSS.

Builds corpora of about 10^4, 10^5 and 10^6 tokens from the texts in tests/fixtures/corpus (each
document ~1500 bytes of one domain, lines shuffled, seeded), runs `moescope bench` on the same model
with as many tokens as one corpus sequence at most holds, then `moescope corpus` on each corpus
under /usr/bin/time, and prints throughput as a ratio of bench's and the peak resident memory.

    python3 bench/corpus_throughput.py [--moescope target/release/moescope]
        [--model sample_models/mixtral-tiny] [--sizes 1e4,1e5,1e6] [--device cpu|cuda]
"""

import argparse
import glob
import json
import os
import random
import re
import resource
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_corpus(path, total_bytes, seed=1):
    random.seed(seed)
    texts = {}
    for domain in ("english", "chinese", "code"):
        files = sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/corpus", domain, "*.txt")))
        texts[domain] = [open(f, encoding="utf-8").read() for f in files]
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < total_bytes:
            domain = random.choice(sorted(texts))
            parts, size = [], 0
            while size < 1500:
                lines = random.choice(texts[domain]).splitlines()
                random.shuffle(lines)
                piece = "\n".join(lines) + "\n"
                parts.append(piece)
                size += len(piece.encode())
            text = "".join(parts)
            out.write(json.dumps({"text": text, "domain": domain}, ensure_ascii=False) + "\n")
            written += len(text.encode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moescope", default=os.path.join(ROOT, "target/release/moescope"))
    ap.add_argument("--model", default=os.path.join(ROOT, "sample_models/mixtral-tiny"))
    ap.add_argument("--sizes", default="1e4,1e5,1e6", help="approximate tokens per corpus")
    ap.add_argument("--seq-tokens", type=int, default=512, help="bench tokens (the corpus's sequence cap)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    bench = json.loads(subprocess.run(
        [args.moescope, "bench", args.model, "--tokens", str(args.seq_tokens), "--capture", "routing",
         "--repeat", "5", "--device", args.device, "--json"], check=True, capture_output=True, text=True).stdout)
    bench_tps = bench["tokens"] / (bench["prefill_ms"]["median"] / 1e3)
    print(f"bench: {bench['tokens']} tokens on {bench['device']}, {bench_tps:.0f} tokens/s (median of 5)")
    print(f"{'corpus':>8} {'tokens':>9} {'tok/s':>7} {'÷ bench':>8} {'peak RSS':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            data = os.path.join(tmp, f"corpus-{size}.jsonl")
            make_corpus(data, int(float(size) * 4))
            out = os.path.join(tmp, f"corpus-{size}.json")
            command = [args.moescope, "corpus", args.model, data, "--device", args.device, "--out", out]
            timed = os.path.exists("/usr/bin/time")
            if timed:
                command = ["/usr/bin/time", "-f", "maxrss_kb=%M"] + command
            run = subprocess.run(command, check=True, capture_output=True, text=True)
            if timed:
                rss_kb = int(re.search(r"maxrss_kb=(\d+)", run.stderr).group(1))
            else:
                # Without /usr/bin/time: the largest child so far (bench's included).
                rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            summary = re.search(r"corpus: .* (\d+) tokens, .* \((\d+) tok/s\)", run.stderr)
            tokens, tps = int(summary.group(1)), float(summary.group(2))
            print(f"{size:>8} {tokens:>9} {tps:>7.0f} {tps / bench_tps:>8.2f} {rss_kb / 1024:>7.1f} MB")


if __name__ == "__main__":
    main()
