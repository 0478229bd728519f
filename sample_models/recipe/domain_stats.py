#!/usr/bin/env python3
"""Per-domain routing statistics of a trained sample model, computed with transformers.

    python3 domain_stats.py MODEL_DIR [MODEL_DIR ...] [--data gpu-run/data] [--windows 32] [--seq 256]

For each model folder: load it with AutoModelForCausalLM (float32, eager attention, eager
experts), run the held-out text of every domain (DATA/heldout_<domain>.jsonl, tokenized with the
model's own tokenizer.json, documents joined with <|eos|>, cut into non-overlapping windows), and
record at every MoE layer, from forward hooks on `mlp.gate` (the experts actually selected):

  * the expert distribution per domain: fraction of the top-k assignments that went to each expert
  * the Jensen-Shannon divergence (bits, 0..1) between every pair of domain distributions
  * the utilization balance: normalized entropy -sum f log f / log E of the load pooled over the
    domains (each domain weighted equally), and the same per domain
  * held-out perplexity per domain (float32)

Writes MODEL_DIR/domain_stats.json and MODEL_DIR/domain_stats.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

DOMAINS = ("english", "chinese", "code", "numbers")


def windows(tok, data: Path, dom: str, seq: int, n: int) -> torch.Tensor:
    eos = tok.token_to_id("<|eos|>")
    ids: list[int] = []
    for line in (data / f"heldout_{dom}.jsonl").open(encoding="utf-8"):
        ids.extend(tok.encode(json.loads(line)["text"]).ids)
        ids.append(eos)
        if len(ids) >= n * seq:
            break
    k = min(n, len(ids) // seq)
    return torch.tensor(ids[: k * seq]).view(k, seq)


def norm_entropy(f: torch.Tensor) -> float:
    f = f / f.sum()
    nz = f[f > 0]
    return float(-(nz * nz.log()).sum() / math.log(f.numel()))


def js_bits(p: torch.Tensor, q: torch.Tensor) -> float:
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a, b):
        k = a > 0
        return float((a[k] * torch.log2(a[k] / b[k])).sum())

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


@torch.no_grad()
def stats(model_dir: Path, data: Path, n_windows: int, seq: int) -> dict:
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"
    ).eval()
    cfg = model.config
    E = cfg.n_routed_experts if hasattr(cfg, "n_routed_experts") else cfg.num_local_experts
    gates = [(i, layer.mlp.gate) for i, layer in enumerate(model.model.layers)
             if hasattr(getattr(layer.mlp, "gate", None), "top_k")]
    counts = torch.zeros(len(gates), E, dtype=torch.float64)

    def hook(j):
        def fn(_m, _i, out):
            counts[j] += torch.bincount(out[2].reshape(-1), minlength=E)[:E].double()
        return fn

    handles = [g.register_forward_hook(hook(j)) for j, (_, g) in enumerate(gates)]
    per_dom, ppl, ntok = {}, {}, {}
    for dom in DOMAINS:
        counts.zero_()
        w = windows(tok, data, dom, seq, n_windows)
        tot, n = 0.0, 0
        for i in range(0, w.shape[0], 8):
            x = w[i : i + 8]
            logits = model(input_ids=x).logits
            tot += float(F.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten(), reduction="sum"))
            n += x[:, 1:].numel()
        per_dom[dom] = counts.clone()
        ppl[dom] = math.exp(tot / n)
        ntok[dom] = int(w.numel())
    for h in handles:
        h.remove()

    layers = [i for i, _ in gates]
    frac = {d: per_dom[d] / per_dom[d].sum(-1, keepdim=True) for d in DOMAINS}
    out = {"model": model_dir.name, "architecture": cfg.architectures[0], "num_experts": E,
           "top_k": cfg.num_experts_per_tok, "moe_layers": layers, "tokens_per_domain": ntok,
           "compute": "transformers float32, eager attention and experts, no_grad",
           "heldout_ppl_f32": ppl, "layers": []}
    for j, layer in enumerate(layers):
        pooled = sum(frac[d][j] for d in DOMAINS) / len(DOMAINS)
        js = {f"{a}|{b}": js_bits(frac[a][j], frac[b][j]) for a, b in itertools.combinations(DOMAINS, 2)}
        out["layers"].append({
            "layer": layer,
            "utilization_balance": norm_entropy(pooled),
            "domain_balance": {d: norm_entropy(frac[d][j]) for d in DOMAINS},
            "js_divergence_bits": js,
            "js_mean": sum(js.values()) / len(js),
            "js_min": min(js.values()),
            "distribution": {d: [round(float(v), 5) for v in frac[d][j]] for d in DOMAINS},
            "top_experts": {d: [[int(e), round(float(frac[d][j][e]), 3)]
                                for e in torch.argsort(frac[d][j], descending=True)[:3]] for d in DOMAINS},
        })
    out["utilization_balance_mean"] = sum(l["utilization_balance"] for l in out["layers"]) / len(layers)
    out["js_mean_over_layers"] = sum(l["js_mean"] for l in out["layers"]) / len(layers)
    return out


def markdown(s: dict) -> str:
    pairs = list(s["layers"][0]["js_divergence_bits"])
    short = {"english": "en", "chinese": "zh", "code": "code", "numbers": "num"}
    lines = [
        f"### {s['model']} ({s['architecture']}, {s['num_experts']} experts, top-{s['top_k']})",
        "",
        f"Held-out text, {', '.join(f'{d} {n}' for d, n in s['tokens_per_domain'].items())} tokens; "
        f"{s['compute']}. Utilization balance = normalized entropy of the expert load pooled over the "
        "four domains (equal weight); JS = Jensen-Shannon divergence between two domains' expert "
        "distributions, in bits (0 = identical, 1 = disjoint).",
        "",
        "| layer | balance | " + " | ".join("JS " + "/".join(short[x] for x in p.split("|")) for p in pairs)
        + " | JS mean | " + " | ".join(f"top experts {short[d]}" for d in DOMAINS) + " |",
        "|---|---|" + "---|" * len(pairs) + "---|" + "---|" * len(DOMAINS),
    ]
    for l in s["layers"]:
        tops = [", ".join(f"{e} ({f:.0%})" for e, f in l["top_experts"][d]) for d in DOMAINS]
        lines.append(f"| {l['layer']} | {l['utilization_balance']:.3f} | "
                     + " | ".join(f"{l['js_divergence_bits'][p]:.3f}" for p in pairs)
                     + f" | {l['js_mean']:.3f} | " + " | ".join(tops) + " |")
    lines += [
        f"| **mean** | **{s['utilization_balance_mean']:.3f}** | " + " | ".join(
            f"{sum(l['js_divergence_bits'][p] for l in s['layers']) / len(s['layers']):.3f}" for p in pairs)
        + f" | **{s['js_mean_over_layers']:.3f}** |" + " |" * len(DOMAINS),
        "",
        "Held-out perplexity (float32): " + ", ".join(f"{d} {v:.2f}" for d, v in s["heldout_ppl_f32"].items()),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, default=Path("gpu-run/data"))
    ap.add_argument("--windows", type=int, default=32, help="windows of --seq tokens per domain")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for d in args.models:
        s = stats(d, args.data, args.windows, args.seq)
        (d / "domain_stats.json").write_text(json.dumps(s, indent=1) + "\n")
        md = markdown(s)
        (d / "domain_stats.md").write_text(md)
        print(md)


if __name__ == "__main__":
    main()
