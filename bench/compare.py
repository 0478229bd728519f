#!/usr/bin/env python3
"""Run `moescope bench` and the transformers baseline on one checkpoint and print the ratios.

Usage:
    python bench/compare.py MODEL --tokens N [--device cpu|cuda] [--dtype f32|bf16] [--repeat R]
        [--threads T] [--moescope PATH] [--experts eager,grouped_mm] [--json OUT]

Both engines run the same token ids with the same thread count (moescope: RAYON_NUM_THREADS;
transformers: torch.set_num_threads), one after the other, so the figures come from one machine in
one sitting. Prints, per transformers experts implementation, prefill and MoE-layer speed-ups
(baseline time / moescope time), plus moescope's FLOP efficiency, capture overhead and memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_json(cmd: list[str], env: dict) -> dict:
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out[out.index("{"):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="f32")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--moescope", default="target/release/moescope")
    parser.add_argument("--experts", default="eager,grouped_mm")
    parser.add_argument("--expert-kernel", default="fused")
    parser.add_argument("--json", help="also write all reports to this file")
    args = parser.parse_args()

    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    common = [args.model, "--tokens", str(args.tokens), "--device", args.device, "--dtype", args.dtype,
              "--repeat", str(args.repeat), "--json"]
    ours = run_json([args.moescope, "bench", *common, "--expert-kernel", args.expert_kernel], env)
    baselines = [
        run_json([sys.executable, str(HERE / "torch_baseline.py"), *common, "--threads", str(args.threads),
                  "--experts", impl], env)
        for impl in args.experts.split(",")
    ]

    print(f"\n{args.model}: {args.tokens} tokens, {args.device} {args.dtype}, {args.threads} threads")
    print(f"{'engine':34} {'prefill ms':>11} {'tok/s':>8} {'MoE layer ms':>13} {'peak RSS MB':>12}")
    for r in [ours, *baselines]:
        name = f"{r['engine']} ({r['implementation']})"
        print(f"{name:34} {r['prefill_ms']['median']:11.1f} {r['tokens_per_s']:8.0f} "
              f"{r['moe_layer_ms']:13.2f} {r['peak_rss_mb'] or 0:12.0f}")
    for b in baselines:
        print(f"speed-up over transformers {b['implementation']:>10}: prefill "
              f"{b['prefill_ms']['median'] / ours['prefill_ms']['median']:.2f}x, MoE layer "
              f"{b['moe_layer_ms'] / ours['moe_layer_ms']:.2f}x")
    print(f"moescope MoE layer at {ours['moe_flop_efficiency'] * 100:.0f} % of a dense matmul's FLOP rate "
          f"({ours['expert_gflops_per_s']:.1f} GFLOP/s); capture overhead "
          f"{(ours['capture_overhead'] or 0) * 100:+.1f} %; resident after load "
          f"{ours['rss_after_load_mb'] or 0:.0f} MB for {ours['weights_mb']:.0f} MB of weights "
          f"({(ours['rss_after_load_mb'] or 0) / ours['weights_mb']:.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"moescope": ours, "transformers": baselines}, indent=2))


if __name__ == "__main__":
    main()
