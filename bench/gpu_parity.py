#!/usr/bin/env python3
"""Routing parity of a moescope binary on a GPU, against the transformers references of the fixtures.

Usage:
    python bench/gpu_parity.py MOESCOPE [--device cuda] [--out DIR]

For every folder of tests/fixtures, and every GGUF conversion in tests/fixtures/gguf/models (against its
own <name>.reference.json, or its fixture's for f32 files without one): runs `MOESCOPE trace` on the
input ids in f32 on the device with both expert kernels and checks that every token's chosen experts
equal the reference's (written by transformers on CPU), and that router logits, weights and the last position's logits
agree within 1e-4. Then runs bf16 with both expert
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
    parser.add_argument("--gguf-only", action="store_true", help="only the GGUF conversions")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    failures = 0
    rows = []
    models = [] if args.gguf_only else [(p.parent, p) for p in sorted(ROOT.glob("tests/fixtures/*/reference.json"))]
    for gguf in sorted(ROOT.glob("tests/fixtures/gguf/models/*.gguf")):
        own = gguf.with_suffix(".reference.json")
        ref = own if own.is_file() else ROOT / "tests/fixtures" / gguf.stem.removesuffix("-f32") / "reference.json"
        models.append((gguf, ref))
    for model, ref_path in models:
        try:
            rows.append(check_fixture(args, out, model, ref_path))
        except subprocess.CalledProcessError as e:
            rows.append((model.name, "-", 0, 0, float("nan"), False, {"grouped": -1, "fused": -1}, 0, 0,
                         float("nan")))
            print(f"{model.name}: {' '.join(e.cmd)} failed: {e.stderr}", file=sys.stderr)
        failures += not rows[-1][5]
    report(rows, failures, args.device)
    sys.exit(1 if failures else 0)


def check_fixture(args, out: Path, fixture: Path, ref_path: Path) -> tuple:
    """`fixture` is a checkpoint folder or a .gguf file."""
    ref = json.loads(ref_path.read_text())
    ids = ",".join(str(i) for i in ref["input_ids"])
    # f32 with both expert kernels: experts identical to transformers', logits, weights and the last
    # position's logits within 1e-4 (relative to the logits' scale for the last ones).
    same = total = 0
    max_logit_diff = 0.0
    ok = True
    device = "-"
    for kernel in ["fused", "grouped"]:
        trace_path = out / f"{fixture.name}-f32-{kernel}.json"
        subprocess.run([args.moescope, "trace", str(fixture), "--token-ids", ids, "--device", args.device,
                        "--dtype", "f32", "--expert-kernel", kernel, "--out", str(trace_path)],
                       check=True, stderr=subprocess.PIPE, text=True)
        trace = json.loads(trace_path.read_text())
        device = trace["model"]["device"]
        for got, want in zip(trace["moe_layers"], ref["moe_layers"], strict=True):
            for t, ids_want in enumerate(want["topk_ids"]):
                total += 1
                same += got["topk_ids"][t] == ids_want
                max_logit_diff = max(max_logit_diff, max(
                    abs(a - b) for a, b in zip(got["router_logits"][t], want["router_logits"][t])))
                ok &= max(abs(a - b) for a, b in zip(got["topk_weights"][t], want["topk_weights"][t])) <= 1e-4
        scale = max(1.0, max(abs(v) for v in ref["last_logits"]))
        ok &= max(abs(a - b) for a, b in zip(trace["last_logits"], ref["last_logits"])) <= 1e-4 * scale
    ok &= same == total and max_logit_diff <= 1e-4 and device.startswith(args.device)
    total //= 2
    same //= 2
    # The two expert kernels in bf16: same routing expected, outputs within bf16 noise.
    kernel_traces = {}
    for kernel in ["grouped", "fused"]:
        path = out / f"{fixture.name}-bf16-{kernel}.json"
        subprocess.run([args.moescope, "trace", str(fixture), "--token-ids", ids, "--device", args.device,
                        "--dtype", "bf16", "--expert-kernel", kernel, "--out", str(path)],
                       check=True, stderr=subprocess.PIPE, text=True)
        kernel_traces[kernel] = json.loads(path.read_text())
    g, f = kernel_traces["grouped"], kernel_traces["fused"]
    kernel_same = sum(a == b for la, lb in zip(g["moe_layers"], f["moe_layers"])
                      for a, b in zip(la["topk_ids"], lb["topk_ids"]))
    scale = max(1.0, max(abs(v) for v in g["last_logits"]))
    kernel_logit_diff = max(abs(a - b) for a, b in zip(g["last_logits"], f["last_logits"])) / scale
    flips = {}
    for kernel in ["grouped", "fused"]:
        stats = subprocess.run([args.moescope, "stats", str(fixture), "--token-ids", ids, "--device",
                                args.device, "--dtype", "bf16", "--expert-kernel", kernel,
                                "--compare-dtype", "f32", "--json"],
                               check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        f = json.loads(stats.stdout)["routing_flips"]
        flips[kernel] = f["tokens_with_any_flip"]
    return (fixture.name, device, same, total, max_logit_diff, ok, flips, len(ref["input_ids"]),
            kernel_same, kernel_logit_diff)


def report(rows: list, failures: int, device_name: str) -> None:

    print(f"{'fixture':34} {'device':7} {'f32 experts':>12} {'max |Δlogit|':>13} {'bf16 flips g/f':>15} "
          f"{'bf16 g=f experts':>17} {'rel Δ last logits g/f':>22}")
    for name, device, same, total, diff, ok, flips, n, kernel_same, kernel_diff in rows:
        print(f"{name:34} {device:7} {same:>5}/{total:<6} {diff:13.2e} "
              f"{flips['grouped']:>6}/{flips['fused']} of {n:<3} {kernel_same:>10}/{total:<6} {kernel_diff:22.2e}  "
              f"{'ok' if ok else 'MISMATCH'}")
    print(f"{len(rows) - failures}/{len(rows)} fixtures route identically to transformers in f32 on {device_name}")


if __name__ == "__main__":
    main()
