#!/usr/bin/env python3
"""Routing parity of a moescope binary on a GPU, against the transformers references of the fixtures.

Usage:
    python bench/gpu_parity.py MOESCOPE [--device cuda] [--out DIR]

For every folder of tests/fixtures: runs `MOESCOPE trace` on the fixture's input ids in f32 on the
device and checks that every token's chosen experts equal reference.json's (written by
transformers on CPU), and that router logits agree within 1e-4. Then runs bf16 with both expert
kernels and reports routing flips against the device's f32 run (`stats --compare-dtype f32`), which
precision may cause and which are reported, not failed. Exits 1 on any f32 mismatch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("moescope")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=tempfile.mkdtemp())
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    failures = 0
    rows = []
    for ref_path in sorted(ROOT.glob("tests/fixtures/*/reference.json")):
        fixture = ref_path.parent
        ref = json.loads(ref_path.read_text())
        ids = ",".join(str(i) for i in ref["input_ids"])
        trace_path = out / f"{fixture.name}-f32.json"
        subprocess.run([args.moescope, "trace", str(fixture), "--token-ids", ids, "--device", args.device,
                        "--dtype", "f32", "--out", str(trace_path)], check=True, stderr=subprocess.DEVNULL)
        trace = json.loads(trace_path.read_text())
        device = trace["model"]["device"]
        same = total = 0
        max_logit_diff = 0.0
        for got, want in zip(trace["moe_layers"], ref["moe_layers"]):
            for t, ids_want in enumerate(want["topk_ids"]):
                total += 1
                same += got["topk_ids"][t] == ids_want
                max_logit_diff = max(max_logit_diff, max(
                    abs(a - b) for a, b in zip(got["router_logits"][t], want["router_logits"][t])))
        ok = same == total and max_logit_diff <= 1e-4 and device.startswith(args.device)
        failures += not ok
        flips = {}
        for kernel in ["grouped", "fused"]:
            stats = subprocess.run([args.moescope, "stats", str(fixture), "--token-ids", ids, "--device",
                                    args.device, "--dtype", "bf16", "--expert-kernel", kernel,
                                    "--compare-dtype", "f32", "--json"],
                                   check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            f = json.loads(stats.stdout)["routing_flips"]
            flips[kernel] = f["tokens_with_any_flip"]
        rows.append((fixture.name, device, same, total, max_logit_diff, ok, flips, len(ref["input_ids"])))

    print(f"{'fixture':28} {'device':7} {'f32 experts':>12} {'max |Δlogit|':>13} {'bf16 flips (grouped/fused)':>27}")
    for name, device, same, total, diff, ok, flips, n in rows:
        print(f"{name:28} {device:7} {same:>5}/{total:<6} {diff:13.2e} "
              f"{flips['grouped']:>12}/{flips['fused']} of {n} tokens  {'ok' if ok else 'MISMATCH'}")
    print(f"{len(rows) - failures}/{len(rows)} fixtures route identically to transformers in f32 on {args.device}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
