#!/usr/bin/env python3
"""Interventions of a moescope binary on a GPU: against transformers, and against the CPU.

Usage:
    python bench/gpu_interventions.py MOESCOPE [--device cuda] [--out DIR]

1. Every case of tests/fixtures/interventions (make_intervention_references.py: --top-k, --ablate,
   --zero-expert made in transformers on CPU) runs as `MOESCOPE trace` in f32 on the device with
   both expert kernels: every token's experts must equal the reference's, weights and the last
   position's logits agree within 1e-4 (relative to the logits' scale for the latter).
2. The interventions the references cannot cover — Gumbel noise and input jitter with a seed, a
   pinned token, capacity drops under both policies — run on the device and on the CPU of the same
   binary: the experts must be identical, the weights within 1e-4.
Exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def cli_args(interventions: dict) -> list[str]:
    args = []
    if "top_k" in interventions:
        args += ["--top-k", str(interventions["top_k"])]
    for key, flag in (("ablate", "--ablate"), ("zero", "--zero-expert")):
        if key in interventions:
            args += [flag, ",".join(f"{r['layer']}:{r['expert']}" for r in interventions[key])]
    return args


def trace(binary: str, model: Path, ids: list[int], device: str, kernel: str, extra: list[str],
          out: Path) -> dict:
    subprocess.run([binary, "trace", str(model), "--token-ids", ",".join(map(str, ids)), "--device", device,
                    "--dtype", "f32", "--expert-kernel", kernel, "--out", str(out), *extra],
                   check=True, stderr=subprocess.PIPE, text=True)
    return json.loads(out.read_text())


def by_expert(ids, weights):
    pairs = sorted(zip(ids, weights))
    return [p[0] for p in pairs], [p[1] for p in pairs]


def compare(got: dict, want_layers: list, want_last: list | None) -> tuple[int, int, float]:
    """(tokens with equal experts, tokens, largest weight difference); last logits checked too."""
    same = total = 0
    worst = 0.0
    for g, w in zip(got["moe_layers"], want_layers, strict=True):
        for t, (ids, weights) in enumerate(zip(w["topk_ids"], w["topk_weights"])):
            gi, gw = by_expert(g["topk_ids"][t], g["topk_weights"][t])
            wi, ww = by_expert(ids, weights)
            total += 1
            same += gi == wi
            if gi == wi:
                worst = max(worst, max(abs(a - b) for a, b in zip(gw, ww)))
    if want_last is not None:
        scale = max(1.0, max(abs(v) for v in want_last))
        worst = max(worst, max(abs(a - b) for a, b in zip(got["last_logits"], want_last)) / scale)
    return same, total, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("moescope")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=tempfile.mkdtemp())
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    cases = 0

    print("1. against transformers (tests/fixtures/interventions), f32, both expert kernels")
    for ref_path in sorted((FIXTURES / "interventions").glob("*.json")):
        ref = json.loads(ref_path.read_text())
        model = FIXTURES / ref_path.stem
        for i, case in enumerate(ref["cases"]):
            for kernel in ("fused", "grouped"):
                what = f"{ref_path.stem} {next(iter(case['interventions']))} {kernel}"
                got = trace(args.moescope, model, ref["input_ids"], args.device, kernel,
                            cli_args(case["interventions"]), out / f"{ref_path.stem}-{i}-{kernel}.json")
                same, total, worst = compare(got, case["moe_layers"], case["last_logits"])
                ok = same == total and worst <= 1e-4 and got["model"]["device"].startswith(args.device)
                failures += not ok
                cases += 1
                print(f"  {what:44} experts {same}/{total}  max diff {worst:.1e}  {'ok' if ok else 'MISMATCH'}")

    print(f"2. {args.device} against the CPU of the same binary (noise, pins, capacity drops)")
    for name in ("mixtral", "olmoe", "deepseek-v3", "gpt-oss", "llama4", "qwen3-moe", "glm4-moe"):
        model = FIXTURES / name
        ref = json.loads((model / "reference.json").read_text())
        first = ref["moe_layers"][0]["layer"]
        k = ref["top_k"]
        pin = f"{first}:1:" + "+".join(str(e) for e in range(k))
        variants = {
            "gumbel+pin": ["--router-noise", "gumbel:0.7", "--noise-seed", "3", "--force", pin],
            "jitter": ["--router-noise", "jitter:0.2", "--noise-seed", "5"],
            "capacity-position": ["--drop-over-capacity", "0.6"],
            "capacity-probs": ["--drop-over-capacity", "0.6", "--drop-policy", "probs"],
        }
        for label, extra in variants.items():
            cpu = trace(args.moescope, model, ref["input_ids"], "cpu", "fused", extra, out / f"{name}-{label}-cpu.json")
            dev = trace(args.moescope, model, ref["input_ids"], args.device, "fused", extra,
                        out / f"{name}-{label}-dev.json")
            same, total, worst = compare(dev, cpu["moe_layers"], cpu["last_logits"])
            drops_equal = all(a.get("capacity_dropped") == b.get("capacity_dropped")
                              for a, b in zip(dev["moe_layers"], cpu["moe_layers"]))
            ok = same == total and worst <= 1e-4 and drops_equal
            failures += not ok
            cases += 1
            print(f"  {name + ' ' + label:44} experts {same}/{total}  max diff {worst:.1e}  "
                  f"drops equal {drops_equal}  {'ok' if ok else 'MISMATCH'}")
    print(f"{cases - failures}/{cases} intervention runs agree on {args.device}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
