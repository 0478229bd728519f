#!/usr/bin/env bash
# Side-by-side variants of collapsed-tiny's router settings, to choose or check its z-loss and
# logit cap on the GPU (collapse must survive: held-out balance < 0.7; the router must not saturate:
# small max |logit|, ~no k-th vs (k+1)-th near ties).
#
#   sample_models/recipe/sweep_collapsed.sh [DATA_DIR] [OUT_DIR]      # OUT_DIR defaults to /tmp/collapsed-sweep
#
# Each variant is `train.py collapsed-tiny` with extra arguments (VARIANTS below, "name: args" per
# line; override with the VARIANTS environment variable). Prints one table row per variant from its
# training_log.json. Can run at the same time as train_all.sh (the shared wheel install is locked).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DATA="${1:-$REPO/gpu-run/data}"
OUT="${2:-/tmp/collapsed-sweep}"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
# The defaults are the sweep that chose train.py's cap of 30 (recipe/README.md, "Why the cap is 30");
# train_all.sh's collapsed-tiny is the cap30 row (z-loss 1e-3, cap 30).
VARIANTS="${VARIANTS:-cap10: --router-z-coef 1e-3 --router-logit-cap 10
cap20: --router-z-coef 1e-3 --router-logit-cap 20
cap30: --router-z-coef 1e-3 --router-logit-cap 30
cap40: --router-z-coef 1e-3 --router-logit-cap 40
cap30_noz: --router-z-coef 0 --router-logit-cap 30}"

source "$HERE/use_wheels.sh"
mkdir -p "$OUT"
names=()
pids=()
while IFS= read -r line; do
    [[ -z "${line// }" ]] && continue
    name="${line%%:*}"
    args="${line#*:}"
    # shellcheck disable=SC2086  # args is a list of words
    "$PY" "$HERE/train.py" collapsed-tiny --data "$DATA" --out "$OUT/$name" $args > "$OUT/$name.txt" 2>&1 &
    names+=("$name")
    pids+=($!)
done <<< "$VARIANTS"
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
"$PY" - "$OUT" "${names[@]}" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| variant | z | cap | router lr x | balance (held-out, train.py eval) | per layer | max abs logit (f32) | gap<1e-6 | tied | ppl en/zh/code/num |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name in sys.argv[2:]:
    p = out / name / "training_log.json"
    if not p.exists():
        print(f"| {name} | failed: see {out / (name + '.txt')} |")
        continue
    log = json.loads(p.read_text())
    t, f = log["train"], log["final"]
    r = f["router"]
    ppl = "/".join(f"{v:.1f}" for v in f["heldout_ppl"].values())
    cap = f"{t['router_logit_cap']:g}" + (" final" if t["router_logit_cap_mode"] == "final" else "")
    print(f"| {name} | {t['router_z_coef']:g} | {cap} | {t['router_lr_mult']:g} | {f['utilization_balance']:.3f} | "
          f"{f['utilization_balance_per_layer']} | {max(r['max_abs_logit']):.1f} | {100 * r['near_tie_frac_all']:.2f} % | "
          f"{100 * r['tied_frac_all']:.2f} % | {ppl} |")
PYEOF
exit $fail
