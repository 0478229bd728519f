#!/usr/bin/env python3
"""What `moescope bench` measures, measured on Hugging Face transformers: the baseline of its ratios.

Usage:
    python bench/torch_baseline.py MODEL --tokens N [--device cpu|cuda] [--dtype f32|bf16|f16]
        [--repeat R] [--threads T] [--experts eager|grouped_mm|batched_mm] [--json]

Runs the same prefill as `moescope bench MODEL --tokens N`: the same token ids
((1 + 7919 i) mod vocab), one warm-up then R timed runs, LM head on the last position only
(`logits_to_keep=1`, as moescope computes it), eager attention experts as asked. Prints the keys
moescope's report shares: engine, implementation, device, dtype, threads, tokens, repeat,
prefill_ms {median,min,max}, tokens_per_s, moe_layer_ms (forward hooks on every sparse MoE block,
synchronized on CUDA), rss_mb, peak_rss_mb. bench/compare.py runs both and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch
import transformers
from transformers import AutoModelForCausalLM

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def synthetic_ids(count: int, vocab: int) -> list[int]:
    return [(1 + 7919 * i) % vocab for i in range(count)]


def rss_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return None


def spread(samples: list[float]) -> dict:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--experts", default="eager", help="experts_implementation: eager, grouped_mm, batched_mm")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        args.model,
        dtype=DTYPES[args.dtype],
        experts_implementation=args.experts,
    ).to(device).eval()
    load_ms = (time.perf_counter() - started) * 1e3
    ids = torch.tensor([synthetic_ids(args.tokens, model.config.vocab_size)], device=device)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    # Time every sparse MoE block (the module that owns the router and the experts).
    moe_ms: list[float] = []
    marks: dict[int, float] = {}

    def before(module, _inputs):
        sync()
        marks[id(module)] = time.perf_counter()

    def after(module, _inputs, _output):
        sync()
        moe_ms.append((time.perf_counter() - marks[id(module)]) * 1e3)

    moe_blocks = [
        layer.mlp for layer in model.model.layers if hasattr(layer.mlp, "gate") and hasattr(layer.mlp, "experts")
    ]

    def prefill() -> float:
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            model(ids, logits_to_keep=1, use_cache=True)
        sync()
        return (time.perf_counter() - t0) * 1e3

    prefill()  # warm-up (allocator, kernels)
    plain = [prefill() for _ in range(args.repeat)]
    # Hooks synchronize, so per-block times come from separate runs that do not enter `plain`.
    handles = [b.register_forward_pre_hook(before) for b in moe_blocks]
    handles += [b.register_forward_hook(after) for b in moe_blocks]
    per_run = []
    for _ in range(args.repeat):
        moe_ms.clear()
        prefill()
        per_run.append(sum(moe_ms) / max(len(moe_ms), 1))
    for h in handles:
        h.remove()

    prefill_ms = spread(plain)
    report = {
        "engine": "transformers",
        "implementation": args.experts,
        "model": args.model,
        "architecture": model.config.architectures[0] if model.config.architectures else type(model).__name__,
        "device": str(device) if device.type == "cpu" else f"cuda:{device.index or 0}",
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "tokens": args.tokens,
        "repeat": args.repeat,
        "load_ms": load_ms,
        "prefill_ms": prefill_ms,
        "tokens_per_s": args.tokens / (prefill_ms["median"] / 1e3),
        "moe_layer_ms": statistics.median(per_run),
        "rss_mb": rss_mb("VmRSS:"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"transformers ({args.experts}) {args.tokens} tokens {report['device']} {args.dtype} "
            f"{report['threads']} threads: prefill {prefill_ms['median']:.1f} ms, "
            f"{report['tokens_per_s']:.0f} tokens/s, MoE layer {report['moe_layer_ms']:.2f} ms"
        )


if __name__ == "__main__":
    main()
