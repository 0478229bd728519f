#!/usr/bin/env python3
"""How decisive each sample model's routing is, on the same held-out windows as domain_stats.py.

    python3 sample_models/recipe/routing_check.py MODEL_DIR [MODEL_DIR ...] [--data gpu-run/data] [--windows 32] [--seq 256]

transformers float32, eager, CPU. Per MoE layer:

  * max |router logit|
  * tied: fraction of (token) routings whose k-th and (k+1)-th selection scores are exactly equal
    in float32 (for a softmax router: the probabilities have underflowed to 0, so the last slots
    are filled among tied zeros, in whatever order the top-k implementation returns them -- torch
    and moescope differ; those experts get weight 0 and change nothing in the output)
  * top-1 balance: the utilization balance (normalized entropy of the load, domains pooled with
    equal weight, as domain_stats.py) counting only each token's highest-weighted expert, which is
    never tied in these models; beside it the top-k balance domain_stats.py reports.

Prints one markdown table per model.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import domain_stats as ds  # noqa: E402  (windows, norm_entropy, DOMAINS)
from make_references import MF, family_of, selection_scores  # noqa: E402


@torch.no_grad()
def check(model_dir: Path, data: Path, n_windows: int, seq: int) -> str:
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"
    ).eval()
    cfg = model.config
    family = family_of(cfg)
    k = cfg.num_experts_per_tok
    gates = [(i, layer.mlp.gate) for i, layer in enumerate(model.model.layers)
             if hasattr(getattr(layer.mlp, "gate", None), "top_k")]
    E = cfg.n_routed_experts if family == "deepseek_v3" else cfg.num_local_experts
    L = len(gates)
    top1 = {d: torch.zeros(L, E, dtype=torch.float64) for d in ds.DOMAINS}
    topk = {d: torch.zeros(L, E, dtype=torch.float64) for d in ds.DOMAINS}
    tied, total, max_logit = [0] * L, [0] * L, [0.0] * L
    dom = ds.DOMAINS[0]

    def hook(j):
        def fn(mod, _inp, out):
            logits, weights, ids = out[0].float(), out[1].float(), out[2]
            first = ids.gather(1, weights.argmax(dim=-1, keepdim=True)).reshape(-1)
            top1[dom][j] += torch.bincount(first, minlength=E)[:E].double()
            topk[dom][j] += torch.bincount(ids.reshape(-1), minlength=E)[:E].double()
            bias = getattr(mod, "e_score_correction_bias", None)
            scores, _ = selection_scores(family, cfg, logits, bias)
            s = scores.sort(dim=-1, descending=True).values
            tied[j] += int((s[:, k - 1] == s[:, k]).sum())
            total[j] += logits.shape[0]
            max_logit[j] = max(max_logit[j], float(logits.abs().max()))
        return fn

    handles = [g.register_forward_hook(hook(j)) for j, (_, g) in enumerate(gates)]
    for dom in ds.DOMAINS:
        w = ds.windows(tok, data, dom, seq, n_windows)
        for i in range(0, w.shape[0], 8):
            model(input_ids=w[i : i + 8])
    for h in handles:
        h.remove()

    def balance(counts: dict, j: int) -> float:
        pooled = sum(counts[d][j] / counts[d][j].sum() for d in ds.DOMAINS) / len(ds.DOMAINS)
        return ds.norm_entropy(pooled)

    rows = [f"#### {model_dir.name} ({type(model).__name__}, {E} experts, top-{k}): routing decisiveness", "",
            "| layer | max \\|router logit\\| | tied k-th slot | top-1 balance | top-k balance |",
            "|---|---|---|---|---|"]
    b1, bk = [], []
    for j, (li, _) in enumerate(gates):
        b1.append(balance(top1, j))
        bk.append(balance(topk, j))
        rows.append(f"| {li} | {max_logit[j]:.1f} | {100 * tied[j] / total[j]:.1f} % | {b1[-1]:.3f} | {bk[-1]:.3f} |")
    rows.append(f"| **mean** | | {100 * sum(tied) / sum(total):.1f} % | **{sum(b1) / L:.3f}** | **{sum(bk) / L:.3f}** |")
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "gpu-run" / "data")
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--seq", type=int, default=256)
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    for m in a.models:
        print(check(m, a.data, a.windows, a.seq))


if __name__ == "__main__":
    main()
