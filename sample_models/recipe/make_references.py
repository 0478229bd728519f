#!/usr/bin/env python3
"""transformers reference traces of the trained sample models, for tests/sample_models.rs.

    python3 sample_models/recipe/make_references.py [MODEL_DIR ...]
        # default: sample_models/{deepseek-tiny,mixtral-tiny,collapsed-tiny}

For each model folder: load it with AutoModelForCausalLM as saved (bf16 weights, the DeepSeek-V3
correction bias in F32), cast to float32 (`.float()`), eager attention and eager experts, CPU, one
thread; tokenize three short prompts written for this file (English, Chinese, code; none of them is
in the training corpus) with the folder's tokenizer.json; run each and record the router logits,
the chosen experts and their weights at every MoE layer, and the last position's logits. The
capture is tests/fixtures/make_fixtures.py's `capture` (forward hooks on `mlp.gate` and on the
experts module, checked against an independent re-implementation of the routing), imported from
there, so the sample references mean exactly what the fixture references mean.

Writes MODEL_DIR/reference.json in the fixtures' schema (tests/common/mod.rs `Reference`):
`input_ids` / `moe_layers` / `last_logits` and `prompt*` are the English prompt, and `prompts`
lists all three as {domain, text, ids, tokens, moe_layers, last_logits, min_selection_gap,
near_ties}. Floats are written as the shortest decimal that reads back as the same float32 (what
the traces hold), so nothing is lost and the file stays small.

Selection margin: the gap between the k-th and the (k+1)-th selection score (and, for DeepSeek-V3,
between the last kept and the first dropped group), per (layer, token); `min_selection_gap` is its
minimum. Every (layer, token) with a gap below 1e-4 is listed in `near_ties` with the chosen experts
that are decisive anyway (`decisive_ids`) and, for softmax routers (Mixtral), `logit_gap`: the
smallest chosen router logit minus the largest unchosen one (`min_logit_gap` per prompt covers
every (layer, token)). A softmax is monotonic, so where the logit gap is clear of the engines'
router-logit differences (~1e-5) the choice is well defined even though the probabilities are
close in absolute terms: collapsed-tiny's top expert takes nearly all the probability (|router
logit| up to ~22), so its 2nd and 3rd probabilities are ~1e-9 and most of its selections fall under
1e-4, with logit gaps of 6e-3 and more. tests/sample_models.rs compares the experts strictly and
fails on an exact tie (gap 0) or on a near-tie not ordered by at least 1e-3 in the logits. (The
first collapsed-tiny, without the router z-loss and logit cap, had logits of ±2000, a one-hot
float32 softmax and its second choice among exact zeros.)
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODELS = ["deepseek-tiny", "mixtral-tiny", "collapsed-tiny"]
NEAR_TIE = 1e-4

# Written for this file; checked not to occur in the training or held-out corpus (the longest
# substrings they share with it are "s before breakfast, ", "，我们" and "d):\n    return ").
PROMPTS = [
    ("english", "The lighthouse keeper counted seven grey ships before breakfast, then wrote to his "
                "sister that the storm had finally passed."),
    ("chinese", "今天下午，我们在图书馆讨论了新的研究计划，大家都认为应该先收集更多的数据再做决定。"),
    ("code", "def count_vowels(word):\n    return sum(1 for ch in word.lower() if ch in \"aeiou\")\n"),
]


def load_fixture_module():
    path = REPO / "tests" / "fixtures" / "make_fixtures.py"
    spec = importlib.util.spec_from_file_location("make_fixtures", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # sets torch.set_num_threads(1), silences transformers
    return mod


MF = load_fixture_module()


def family_of(cfg) -> str:
    return {"mixtral": "mixtral", "deepseek_v3": "deepseek_v3"}[cfg.model_type]


def selection_scores(family: str, cfg, logits: torch.Tensor, bias) -> tuple[torch.Tensor, torch.Tensor]:
    """The scores top-k selects from ([T, E], as in MF.route) and the per-token gap of the group
    choice (DeepSeek-V3's kept vs dropped group; +inf for Mixtral)."""
    logits = logits.float()
    if family == "mixtral":
        return logits.softmax(dim=-1), torch.full((logits.shape[0],), math.inf)
    s = logits.sigmoid()
    sc = s + bias if bias is not None else s
    E, G = s.shape[-1], cfg.n_group
    gs = sc.view(-1, G, E // G).topk(2, dim=-1).values.sum(dim=-1)
    g = gs.sort(dim=-1, descending=True).values
    group_gap = g[:, cfg.topk_group - 1] - g[:, cfg.topk_group]
    return sc.masked_fill(~MF._group_mask(gs, cfg.topk_group, E // G), float("-inf")), group_gap


def logit_gap(logits: torch.Tensor, chosen: list[int]) -> float:
    """Smallest chosen router logit minus the largest unchosen one (softmax routers: the margin of
    the choice in logit space, which the softmax's rounding does not blur)."""
    mask = torch.zeros(logits.shape[-1], dtype=torch.bool)
    mask[chosen] = True
    return float(logits[mask].min()) - float(logits[~mask].max())


def near_ties(model, cap: dict, family: str) -> tuple[float, float, list[dict]]:
    """Smallest selection margin over every (layer, token) -- MF.route's min_gap, row by row --,
    the smallest logit gap (softmax routers; +inf otherwise), and every (layer, token) whose
    margin is below NEAR_TIE, with the chosen experts that are decisive anyway (score above the
    (k+1)-th by at least NEAR_TIE, their group not tied) and, for softmax routers, its logit gap."""
    cfg, k = model.config, model.config.num_experts_per_tok
    min_gap, min_lgap, ties = math.inf, math.inf, []
    for m in cap["moe_layers"]:
        li = m["layer"]
        logits, bias = cap["_logits_by_layer"][li], cap["_bias_by_layer"][li]
        scores, group_gap = selection_scores(family, cfg, logits, bias)
        for t in range(logits.shape[0]):
            _, _, gap = MF.route(family, cfg, logits[t : t + 1], bias)
            min_gap = min(min_gap, gap)
            lgap = logit_gap(logits[t].float(), m["topk_ids"][t]) if family == "mixtral" else None
            if lgap is not None:
                min_lgap = min(min_lgap, lgap)
            if gap >= NEAR_TIE:
                continue
            kth1 = float(scores[t].sort(descending=True).values[k])
            decisive = [] if float(group_gap[t]) < NEAR_TIE else sorted(
                e for e in m["topk_ids"][t] if float(scores[t, e]) - kth1 >= NEAR_TIE)
            tie = {"layer": li, "token": t, "gap": gap, "decisive_ids": decisive}
            if lgap is not None:
                tie["logit_gap"] = lgap
            ties.append(tie)
    return min_gap, min_lgap, ties


# ------------------------------------------------------------------------------ float32 JSON
def f32(x: float) -> str:
    if not math.isfinite(x):
        raise ValueError(f"non-finite value {x}")
    s = np.format_float_positional(np.float32(x), unique=True, trim="-") if abs(x) >= 1e-4 or x == 0 \
        else np.format_float_scientific(np.float32(x), unique=True, trim="-")
    assert np.float32(float(s)) == np.float32(x), (s, x)
    return s


def dumps(obj, indent: int = 0, float_key: bool = False) -> str:
    """JSON with float32-shortest floats; numeric lists on one line."""
    pad = " " * indent
    if isinstance(obj, dict):
        items = [f'{pad} {json.dumps(k)}: {dumps(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj):
            return "[" + ",".join(str(v) if isinstance(v, int) else f32(v) for v in obj) + "]"
        items = [pad + " " + dumps(v, indent + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(obj, float):
        return repr(obj)  # scalars (gaps, losses): full double precision
    return json.dumps(obj, ensure_ascii=False)


# ------------------------------------------------------------------------------------ driver
def reference(model_dir: Path) -> dict:
    import tokenizers
    import transformers

    model = MF.load(model_dir)  # dtype="auto" (bf16, bias F32), eager attention and experts
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16, model.model.embed_tokens.weight.dtype
    model = model.float().eval()
    cfg = model.config
    family = family_of(cfg)
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))

    prompts, n_ties, min_gap = [], 0, math.inf
    for domain, text in PROMPTS:
        ids = tok.encode(text).ids
        cap = MF.capture(model, torch.tensor([ids]), family)
        g, lg, tied = near_ties(model, cap, family)
        assert g == cap["_min_gap"], (g, cap["_min_gap"])
        min_gap = min(min_gap, g)
        n_ties += len(tied)
        prompts.append({
            "domain": domain,
            "text": text,
            "ids": ids,
            "tokens": [tok.id_to_token(i) for i in ids],
            "moe_layers": cap["moe_layers"],
            "last_logits": cap["last_logits"],
            "aux_loss": cap["aux_loss"],
            "min_selection_gap": g,
            **({"min_logit_gap": lg} if math.isfinite(lg) else {}),
            "near_ties": tied,
        })
        print(f"  {model_dir.name} {domain}: {len(ids)} tokens, min selection gap {g:.3g}"
              + (f", min logit gap {lg:.3g}" if math.isfinite(lg) else "")
              + f", {len(tied)} near-tie(s) < {NEAR_TIE:g}")

    en = prompts[0]
    ref = {
        "name": model_dir.name,
        "family": family,
        "model_type": cfg.model_type,
        "architecture": type(model).__name__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "config_layout": "v5",
        "weights_layout": "per_expert",
        "weights_dtype": "bfloat16",
        "compute_dtype": "float32",
        "attn_implementation": "eager",
        "experts_implementation": "eager",
        "num_experts": cfg.n_routed_experts if family == "deepseek_v3" else cfg.num_local_experts,
        "top_k": cfg.num_experts_per_tok,
        "input_ids": en["ids"],
        "moe_layers": en["moe_layers"],
        "last_logits": en["last_logits"],
        "aux_loss": en["aux_loss"],
        "prompt": en["text"],
        "prompt_ids": en["ids"],
        "prompt_moe_layers": en["moe_layers"],
        "prompt_last_logits": en["last_logits"],
        "min_selection_gap": min_gap,
        "near_tie_count": n_ties,
        "prompts": prompts,
    }
    return ref


def main() -> None:
    dirs = [Path(a) for a in sys.argv[1:]] or [REPO / "sample_models" / m for m in DEFAULT_MODELS]
    for d in dirs:
        ref = reference(d)
        text = dumps(ref) + "\n"
        json.loads(text)  # valid JSON
        (d / "reference.json").write_text(text, encoding="utf-8")
        n = ref["near_tie_count"]
        tokens = sum(len(m["topk_ids"]) for p in ref["prompts"] for m in p["moe_layers"])
        exact = sum(1 for p in ref["prompts"] for x in p["near_ties"] if x["gap"] == 0.0)
        tie = (f"{n} of {tokens} (layer, token) selections are near-ties < {NEAR_TIE:g} "
               f"({exact} exact ties)" if n else f"no near-tie < {NEAR_TIE:g}")
        lgaps = [p["min_logit_gap"] for p in ref["prompts"] if "min_logit_gap" in p]
        if lgaps:
            tie += f", min logit gap {min(lgaps):.4g}"
        print(f"{d.name}: min selection gap {ref['min_selection_gap']:.4g}, {tie}, "
              f"reference.json {len(text) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
