#!/usr/bin/env python3
"""One markdown summary of the trained sample models (for sample_models/README.md).

    python3 summary.py [--distributions] sample_models/deepseek-tiny sample_models/mixtral-tiny sample_models/collapsed-tiny

Reads each folder's training_log.json and domain_stats.json (run domain_stats.py first) and
prints: a table of the training facts, held-out perplexity per domain, utilization balance and
mean Jensen-Shannon divergence per MoE layer, then every model's domain_stats.md. With
--distributions, also every model's full expert distribution per domain per MoE layer (percent of
the domain's top-k assignments that went to each expert).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DOMAINS = ("english", "chinese", "code", "numbers")


def main() -> None:
    args = sys.argv[1:]
    full = "--distributions" in args
    dirs = [Path(a) for a in args if a != "--distributions"]
    if not dirs:
        sys.exit(__doc__)
    rows = []
    for d in dirs:
        log = json.loads((d / "training_log.json").read_text())
        st = json.loads((d / "domain_stats.json").read_text())
        t, f = log["train"], log["final"]
        bal = ("bias γ=%g" % t["bias_gamma"] if t["bias_gamma"] else
               "aux %g" % t["router_aux_loss_coef"] if t["router_aux_loss_coef"] else
               "none (router lr ×%g)" % t["router_lr_mult"])
        rows.append((d.name, log, st, bal, f))
    out = [
        "| model | architecture | experts | balancing | steps | final LM loss | model.safetensors | "
        + " | ".join(f"ppl {d}" for d in DOMAINS) + " | balance (mean) | balance per layer | JS mean (bits) |",
        "|---|---|---|---|---|---|---|" + "---|" * len(DOMAINS) + "---|---|---|",
    ]
    for name, log, st, bal, f in rows:
        per_layer = ", ".join(f"{l['utilization_balance']:.2f}" for l in st["layers"])
        out.append(
            f"| {name} | {log['architecture']} | {log['num_experts']} top-{log['top_k']} | {bal} | {log['steps']} | "
            f"{log['log'][-1]['lm_loss']:.3f} | {f['check']['safetensors_bytes'] / 2**20:.2f} MiB | "
            + " | ".join(f"{st['heldout_ppl_f32'][d]:.1f}" for d in DOMAINS)
            + f" | {st['utilization_balance_mean']:.3f} | {per_layer} | {st['js_mean_over_layers']:.3f} |"
        )
    out.append("")
    print("\n".join(out))
    for d in dirs:
        print((d / "domain_stats.md").read_text())
    if full:
        for d in dirs:
            print(distributions(d))


def distributions(d: Path) -> str:
    st = json.loads((d / "domain_stats.json").read_text())
    E = st["num_experts"]
    out = [f"#### {d.name}: expert distribution per domain (% of the domain's top-{st['top_k']} assignments)", "",
           "| layer | domain | " + " | ".join(str(e) for e in range(E)) + " |",
           "|---|---|" + "---:|" * E]
    for layer in st["layers"]:
        for dom in DOMAINS:
            cells = [f"{100 * v:.0f}" for v in layer["distribution"][dom]]
            out.append(f"| {layer['layer']} | {dom} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
