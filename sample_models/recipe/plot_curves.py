#!/usr/bin/env python3
"""Plot a sample model's training curves from its training_log.json.

    python3 plot_curves.py MODEL_DIR [MODEL_DIR ...]     # writes MODEL_DIR/training_curves.png

Three panels: LM loss (total and per domain), the balancing signal (the Mixtral aux loss, or
the DeepSeek correction-bias spread), and the normalized load entropy of every MoE layer.
Needs matplotlib (train.py calls plot() when it is importable and skips the PNG otherwise).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def plot(log: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = log["log"]
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))

    a = ax[0]
    a.plot(steps, [r["lm_loss"] for r in rows], color="black", lw=2, label="all")
    for dom in rows[0]["lm_loss_by_domain"]:
        a.plot(steps, [r["lm_loss_by_domain"][dom] for r in rows], lw=1, label=dom)
    a.set_title("LM loss (train, nats/token)")
    a.set_xlabel("step")
    a.set_ylim(bottom=0)
    a.legend(fontsize=8)

    a = ax[1]
    if rows[0].get("aux_loss") is not None:
        coef = log["train"]["router_aux_loss_coef"]
        k = log["top_k"]
        a.plot(steps, [r["aux_loss"] for r in rows], color="tab:red")
        a.axhline(k, color="gray", ls="--", lw=1, label=f"uniform routing = {k}")
        what = f"coefficient {coef:g}" if coef else "monitored only, not in the loss"
        a.set_title(f"Switch aux loss (per layer, mean), {what}", fontsize=10)
        a.legend(fontsize=8)
    elif rows[0].get("bias") is not None:
        nl = len(log["moe_layers"])
        for i, layer in enumerate(log["moe_layers"]):
            c = plt.cm.viridis(i / max(1, nl - 1))
            a.plot(steps, [r["bias"]["max"][i] for r in rows], color=c, lw=1, label=f"layer {layer} max")
            a.plot(steps, [r["bias"]["min"][i] for r in rows], color=c, lw=1, ls="--", label=f"layer {layer} min")
        a.set_title(f"e_score_correction_bias (γ = {log['train']['bias_gamma']:g})")
        a.legend(fontsize=7, ncol=2)
    a.set_xlabel("step")

    a = ax[2]
    for i, layer in enumerate(log["moe_layers"]):
        a.plot(steps, [r["load_entropy"][i] for r in rows], lw=1, label=f"layer {layer}")
    a.plot(steps, [r["load_entropy_mean"] for r in rows], color="black", lw=2, label="mean")
    a.axhline(0.8, color="green", ls=":", lw=1)
    a.axhline(0.7, color="red", ls=":", lw=1)
    a.set_ylim(0, 1.02)
    a.set_title("load entropy (normalized, per MoE layer)")
    a.set_xlabel("step")
    a.legend(fontsize=8)

    fig.suptitle(f"{log['model']}: {log['architecture']}, {log['steps']} steps, seed {log['seed']}")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for d in sys.argv[1:]:
        d = Path(d)
        log = json.loads((d / "training_log.json").read_text())
        plot(log, d / "training_curves.png")
        print(f"wrote {d / 'training_curves.png'}")


if __name__ == "__main__":
    main()
