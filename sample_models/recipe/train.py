#!/usr/bin/env python3
"""Train one of moescope's sample MoE models from scratch with transformers' model classes.

    python3 train.py MODEL --data gpu-run/data --out DIR [--device cuda|cpu] [--steps N] [--seed S]

MODEL is one of:
  deepseek-tiny   DeepseekV3ForCausalLM: sigmoid routing, e_score_correction_bias updated by the
                  auxiliary-loss-free rule, 4 groups (2 chosen), 1 shared expert, first layer
                  dense, 16 routed experts, top-4, MLA
  mixtral-tiny    MixtralForCausalLM: 8 experts, top-2, the Switch load-balancing aux loss
                  (coefficient 0.02), computed per MoE layer and averaged (switch_aux_loss)
  collapsed-tiny  mixtral-tiny's architecture trained with NO balancing (aux coefficient 0, no bias)
                  and a 300x router learning rate, so routing collapses onto a few experts; a router
                  z-loss (1e-3) and a cap on |router logit| (30) keep the router out of float32
                  saturation (without them its logits reach ~2000 and the softmax is exactly one-hot,
                  so the second slot is an exact tie among zeros). Neither balances the load, but
                  bounded logits collapse less (held-out balance with cap 10: 0.76, cap 30: 0.67;
                  see the sweep in the recipe README).

Router options (softmax routers only; both off for the other two models):
  --router-z-coef C       ST-MoE router z-loss, C * mean over MoE layers of
                          mean over tokens of logsumexp(router logits)^2
  --router-logit-cap M    bound |router logit|: after every optimizer step each MoE layer's router
                          weight is multiplied by min(1, M / max |logit| of that step's batch) (a
                          positive rescale: the ranking of the experts for every token is unchanged),
                          and once more after training on two fresh training batches (after
                          subtracting the mean expert row, which leaves the softmax unchanged)
  --router-logit-cap-mode train|final
                          'final': no rescaling during training, only the after-training pass (a
                          temperature on the trained router; the top-1 choice of every token is kept)

Every log line also reports, over the logging window, the largest |router logit| and the share of
(layer, token) routings whose k-th and (k+1)-th selection scores differ by < 1e-6 (and by exactly
0), recomputed in float32 from the router's input; at the end the same on held-out text with the
saved checkpoint loaded in float32.

Data: the bundle written by make_bundle.py (uint16 token streams per domain). Every batch holds
the same number of sequences from each domain (random windows of --seq tokens).

Writes to DIR: config.json, generation_config.json, model.safetensors (bfloat16 weights; the
DeepSeek correction bias stays float32 as on the hub), tokenizer.json, tokenizer_config.json,
training_log.json, training_curves.png (if matplotlib is importable) and README.md.

Deterministic up to GPU kernel nondeterminism: the seed drives the initialisation and the batches.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DOMAINS = ("english", "chinese", "code", "numbers")
SEED = 20240611

TOK = dict(vocab_size=8192, bos_token_id=0, eos_token_id=1, pad_token_id=2, tie_word_embeddings=True,
           max_position_embeddings=512, rms_norm_eps=1e-6, initializer_range=0.02, hidden_act="silu")

MIXTRAL_CFG = dict(
    TOK, hidden_size=128, intermediate_size=176, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=2, head_dim=32, num_local_experts=8, num_experts_per_tok=2,
    router_jitter_noise=0.0, sliding_window=None, attention_dropout=0.0,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
)

MODELS = {
    "deepseek-tiny": dict(
        arch="DeepseekV3ForCausalLM",
        config=dict(
            TOK, hidden_size=128, intermediate_size=512, moe_intermediate_size=96, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=4, q_lora_rank=64, kv_lora_rank=48,
            qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32, n_routed_experts=16,
            n_shared_experts=1, num_experts_per_tok=4, n_group=4, topk_group=2,
            first_k_dense_replace=1, norm_topk_prob=True, routed_scaling_factor=2.5,
            rope_interleave=True, attention_bias=False, attention_dropout=0.0,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        train=dict(steps=1500, lr=3e-3, router_lr_mult=1.0, router_aux_loss_coef=0.0, bias_gamma=1e-3),
    ),
    "mixtral-tiny": dict(
        arch="MixtralForCausalLM",
        config=dict(MIXTRAL_CFG, router_aux_loss_coef=0.02),
        train=dict(steps=1500, lr=3e-3, router_lr_mult=1.0, router_aux_loss_coef=0.02, bias_gamma=0.0),
    ),
    "collapsed-tiny": dict(
        arch="MixtralForCausalLM",
        config=dict(MIXTRAL_CFG, router_aux_loss_coef=0.0),
        # No balancing. At this size and budget, plain unbalanced training only drifts to a balance
        # of ~0.8 (measured on an H100, 1500 steps, held-out balance: router lr x1 0.82, x10 0.77,
        # x30 0.85, x100 0.66 and 0.66 (two seeds), x300 0.61), so the router's learning rate is
        # 300x the rest: the rich-get-richer loop that unbalanced routers fall into runs fast
        # enough to finish inside the budget. Documented in the model's README.
        # The x300 router also saturates: unchecked, its logits reach ~2000, the float32 softmax is
        # exactly one-hot and the second of the top-2 slots is an exact tie among zero probabilities
        # (~99 % of held-out routings), which makes the routing ill-defined. The router z-loss (ST-MoE)
        # keeps logsumexp near 0 and the cap bounds |logit| (neither balances the load). Bounded
        # logits do soften the collapse, though (held-out balance, z-loss 1e-3, H100, this seed:
        # cap 10 0.757, cap 20 0.724, cap 30 0.674, cap 40 0.718; cap 30 without the z-loss 0.859),
        # so the cap is 30: the one setting of the sweep under 0.7, with no exact tie on held-out
        # text (a single seed, and 0.674 is only just under 0.7).
        train=dict(steps=1500, lr=3e-3, router_lr_mult=300.0, router_aux_loss_coef=0.0, bias_gamma=0.0,
                   router_z_coef=1e-3, router_logit_cap=30.0),
    ),
}

COMMON_TRAIN = dict(batch=64, seq=256, warmup=100, min_lr_frac=0.1, weight_decay=0.1, betas=(0.9, 0.95),
                    grad_clip=1.0, log_every=50, eval_windows=64, router_init_std=None,
                    router_z_coef=0.0, router_logit_cap=0.0, router_logit_cap_mode="train")
NEAR_TIE = 1e-6  # a k-th vs (k+1)-th selection-score gap below this counts as a near tie


# --------------------------------------------------------------------------------------- data
class Batches:
    """Equal numbers of random windows from each domain's token stream, driven by one generator."""

    def __init__(self, data: Path, batch: int, seq: int, device: torch.device, seed: int):
        assert batch % len(DOMAINS) == 0, "batch must be a multiple of the number of domains"
        self.per = batch // len(DOMAINS)
        self.seq = seq
        self.streams = [torch.from_numpy(np.load(data / f"train_{d}.npy").astype(np.int64)).to(device)
                        for d in DOMAINS]
        self.g = torch.Generator(device="cpu").manual_seed(seed)
        self.offsets = torch.arange(seq, device=device)

    def next(self) -> torch.Tensor:
        rows = []
        for s in self.streams:
            start = torch.randint(0, s.numel() - self.seq, (self.per,), generator=self.g).to(s.device)
            rows.append(s[start[:, None] + self.offsets[None, :]])
        return torch.cat(rows, 0)


def heldout_windows(data: Path, dom: str, seq: int, n: int) -> torch.Tensor:
    """Up to n non-overlapping windows from the start of the domain's held-out stream."""
    s = torch.from_numpy(np.load(data / f"heldout_{dom}.npy").astype(np.int64))
    k = min(n, s.numel() // seq)
    return s[: k * seq].view(k, seq)


# ----------------------------------------------------------------------------------- routing
def moe_gates(model) -> list[tuple[int, torch.nn.Module]]:
    """(layer index, router module) for every MoE layer. Both families name it `mlp.gate` and its
    forward returns (router_logits, top_k_weights, top_k_index)."""
    out = []
    for i, layer in enumerate(model.model.layers):
        gate = getattr(layer.mlp, "gate", None)
        if gate is not None and hasattr(gate, "top_k"):
            out.append((i, gate))
    return out


class LoadCounter:
    """Forward hooks on the routers that count top-k assignments per expert (on device)."""

    def __init__(self, model, num_experts: int):
        self.gates = moe_gates(model)
        self.E = num_experts
        dev = next(model.parameters()).device
        self.step = torch.zeros(len(self.gates), num_experts, device=dev)
        self.window = torch.zeros_like(self.step)
        self.handles = [g.register_forward_hook(self._hook(j)) for j, (_, g) in enumerate(self.gates)]

    def _hook(self, j):
        def fn(_mod, _inp, out):
            idx = out[2].reshape(-1)
            self.step[j] += torch.bincount(idx, minlength=self.E)[: self.E].to(self.step.dtype)
        return fn

    def end_step(self):
        self.window += self.step
        load = self.step.clone()
        self.step.zero_()
        return load

    def take_window(self) -> torch.Tensor:
        w = self.window.clone()
        self.window.zero_()
        return w

    def remove(self):
        for h in self.handles:
            h.remove()


def norm_entropy(counts: torch.Tensor) -> torch.Tensor:
    """Normalized entropy of the expert load along the last axis: -sum f log f / log E."""
    f = counts / counts.sum(-1, keepdim=True).clamp_min(1e-12)
    h = -(f * torch.log(f.clamp_min(1e-30))).sum(-1)
    return h / math.log(counts.shape[-1])


def switch_aux_loss(router_logits: tuple, num_experts: int, top_k: int) -> torch.Tensor:
    """The Switch-Transformer load-balancing loss E * sum_e f_e * P_e, computed for each MoE layer and
    averaged over the layers (k for uniform routing, as in transformers' aux_loss). transformers'
    own `aux_loss` concatenates all layers' router logits into one distribution, so expert e of one
    layer can offset expert e of another; per layer, every router is balanced."""
    losses = []
    for logits in router_logits:
        probs = torch.softmax(logits.float(), dim=-1)
        idx = torch.topk(probs, top_k, dim=-1).indices
        f = F.one_hot(idx, num_experts).sum(1).float().mean(0)
        losses.append(num_experts * (f * probs.mean(0)).sum())
    return torch.stack(losses).mean()


def router_z_loss(router_logits: tuple) -> torch.Tensor:
    """ST-MoE router z-loss: mean over tokens of logsumexp(logits)^2, per MoE layer, averaged over the
    layers (so the coefficient does not depend on the number of MoE layers)."""
    return torch.stack([torch.logsumexp(l.float(), dim=-1).square().mean() for l in router_logits]).mean()


def selection_scores(cfg, gate, logits: torch.Tensor) -> torch.Tensor:
    """The scores top-k selects from, [T, E] float32: the softmax for Mixtral; for DeepSeek-V3 the
    sigmoid plus the correction bias, -inf outside the kept groups."""
    if not hasattr(gate, "e_score_correction_bias"):
        return logits.softmax(dim=-1)
    sc = logits.sigmoid() + gate.e_score_correction_bias.float()
    E, G = sc.shape[-1], cfg.n_group
    gs = sc.view(-1, G, E // G).topk(2, dim=-1).values.sum(dim=-1)
    keep = torch.zeros_like(gs).scatter_(1, gs.topk(cfg.topk_group, dim=-1).indices, 1.0).bool()
    return sc.masked_fill(~keep.repeat_interleave(E // G, dim=1), float("-inf"))


class RouterStats:
    """Forward hooks on the routers that recompute the router logits in float32 from the router's
    input and keep, per MoE layer: the largest |logit|, and how many routings have a k-th vs (k+1)-th
    selection-score gap below NEAR_TIE and exactly 0. Read-only: the model's forward is untouched."""

    def __init__(self, model, top_k: int):
        self.cfg = model.config
        self.gates = moe_gates(model)
        self.k = top_k
        dev = next(model.parameters()).device
        L = len(self.gates)
        self.step_max = torch.zeros(L, device=dev)  # this step
        self.win = torch.zeros(L, 4, device=dev)  # max |logit|, near, tied, routings
        self.handles = [g.register_forward_hook(self._hook(j)) for j, (_, g) in enumerate(self.gates)]

    def _hook(self, j):
        def fn(mod, inp, _out):
            h = inp[0]
            with torch.no_grad(), torch.autocast(h.device.type, enabled=False):
                logits = F.linear(h.reshape(-1, mod.weight.shape[-1]).float(), mod.weight.float())
                m = logits.abs().max()
                s = selection_scores(self.cfg, mod, logits).topk(self.k + 1, dim=-1).values
                gap = s[:, self.k - 1] - s[:, self.k]
                self.step_max[j] = torch.maximum(self.step_max[j], m)
                self.win[j, 0] = torch.maximum(self.win[j, 0], m)
                self.win[j, 1] += (gap < NEAR_TIE).sum()
                self.win[j, 2] += (gap == 0).sum()
                self.win[j, 3] += gap.numel()
        return fn

    def end_step(self) -> torch.Tensor:
        m = self.step_max.clone()
        self.step_max.zero_()
        return m

    def take_window(self) -> dict:
        w = self.win.cpu().clone()  # .cpu() of a CPU tensor is the tensor itself
        self.win.zero_()
        n = w[:, 3].clamp_min(1)
        return {"max_abs_logit": [round(float(v), 3) for v in w[:, 0]],
                "near_tie_frac": [round(float(v), 5) for v in w[:, 1] / n],
                "tied_frac": [round(float(v), 5) for v in w[:, 2] / n],
                "routings": int(w[:, 3].sum()),
                "near_tie_frac_all": round(float(w[:, 1].sum() / n.sum()), 5),
                "tied_frac_all": round(float(w[:, 2].sum() / n.sum()), 5)}

    def remove(self):
        for h in self.handles:
            h.remove()


def fmt_router(r: dict) -> str:
    return (f"|logit|max {max(r['max_abs_logit']):.1f} {r['max_abs_logit']} "
            f"gap<{NEAR_TIE:g} {100 * r['near_tie_frac_all']:.2f}% tied {100 * r['tied_frac_all']:.2f}%")


@torch.no_grad()
def final_logit_cap(model, batches: Batches, cap: float, amp: bool, device: torch.device) -> list[float]:
    """After training: subtract each router's mean expert row (softmax-invariant), then scale each
    router so that max |logit| over two fresh training batches is at most `cap`. Returns the scales."""
    gates = [g for _, g in moe_gates(model)]
    for g in gates:
        g.weight -= g.weight.mean(0, keepdim=True)
    stats = RouterStats(model, model.config.num_experts_per_tok)
    model.eval()
    for _ in range(2):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            model(input_ids=batches.next())
    stats.remove()
    scales = torch.clamp(cap / stats.end_step().clamp_min(1e-12), max=1.0)
    for g, s in zip(gates, scales):
        g.weight *= s
    model.train()
    return [float(s) for s in scales]


@torch.no_grad()
def router_report(out: Path, data: Path, seq: int, n_windows: int, device: torch.device) -> dict:
    """The saved checkpoint in float32 (eager, no autocast) on held-out windows of every domain:
    the RouterStats numbers, as domain_stats.py / moescope see the model."""
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32, attn_implementation="eager",
                                             experts_implementation="eager").to(device).eval()
    stats = RouterStats(m, m.config.num_experts_per_tok)
    for dom in DOMAINS:
        w = heldout_windows(data, dom, seq, n_windows).to(device)
        for i in range(0, w.shape[0], 16):
            m(input_ids=w[i : i + 16])
    stats.remove()
    r = stats.take_window()
    print(f"router (held-out, saved checkpoint in float32): {fmt_router(r)}", flush=True)
    return r


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> float:
    """Jensen-Shannon divergence in bits (0 = same, 1 = disjoint)."""
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)

    def kl(a, b):
        mask = a > 0
        return float((a[mask] * torch.log2(a[mask] / b[mask])).sum())

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


# ------------------------------------------------------------------------------------- model
def build_model(spec: dict, device: torch.device, seed: int, experts: str, attn: str):
    import transformers

    cls = getattr(transformers, spec["arch"])
    cfg_cls = getattr(transformers, spec["arch"].replace("ForCausalLM", "Config"))
    torch.manual_seed(seed)
    cfg = cfg_cls(**spec["config"])
    model = cls(cfg)
    model.to(device)
    model.set_attn_implementation(attn)
    model.set_experts_implementation(experts)
    return model


def pick_experts_impl(model, batch: torch.Tensor, device: torch.device, want: str) -> str:
    """'auto': use grouped_mm on CUDA if it runs forward+backward here and agrees with eager."""
    if want != "auto":
        return want
    if device.type != "cuda":
        return "eager"
    x = batch[:4]
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model.set_experts_implementation("eager")
            ref = F.cross_entropy(model(input_ids=x).logits[:, :-1].flatten(0, 1).float(), x[:, 1:].flatten())
            model.set_experts_implementation("grouped_mm")
            out = model(input_ids=x).logits
            got = F.cross_entropy(out[:, :-1].flatten(0, 1).float(), x[:, 1:].flatten())
        got.backward()
        model.zero_grad(set_to_none=True)
        ref, got = ref.item(), got.item()
        ok = abs(ref - got) < 2e-2 * max(1.0, abs(ref))
        print(f"experts: eager loss {ref:.5f}, grouped_mm loss {got:.5f} -> "
              f"{'grouped_mm' if ok else 'eager (mismatch)'}", flush=True)
        if ok:
            return "grouped_mm"
    except Exception as e:  # noqa: BLE001 - any failure means: stay on the reference loop
        print(f"experts: grouped_mm unavailable ({type(e).__name__}: {e}); using eager", flush=True)
        model.zero_grad(set_to_none=True)
    model.set_experts_implementation("eager")
    return "eager"


def param_groups(model, lr: float, wd: float, router_lr_mult: float):
    decay, no_decay, router = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith("mlp.gate.weight"):
            router.append(p)
        elif p.ndim < 2:
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": wd, "lr_mult": 1.0},
        {"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0},
        {"params": router, "weight_decay": 0.0, "lr_mult": router_lr_mult},
    ]


def lr_at(step: int, total: int, warmup: int, peak: float, min_frac: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


# -------------------------------------------------------------------------------------- eval
@torch.no_grad()
def evaluate(model, data: Path, seq: int, n_windows: int, device: torch.device, amp: bool, E: int):
    model.eval()
    counter = LoadCounter(model, E)
    res = {"heldout_loss": {}, "heldout_ppl": {}, "heldout_tokens": {}, "load": {}}
    for dom in DOMAINS:
        w = heldout_windows(data, dom, seq, n_windows).to(device)
        tot, n = 0.0, 0
        for i in range(0, w.shape[0], 16):
            x = w[i : i + 16]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(input_ids=x).logits
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), x[:, 1:].flatten(), reduction="sum")
            tot += float(loss)
            n += x[:, 1:].numel()
        load = counter.end_step()
        counter.window.zero_()
        res["heldout_loss"][dom] = tot / n
        res["heldout_ppl"][dom] = math.exp(tot / n)
        res["heldout_tokens"][dom] = n
        res["load"][dom] = load.cpu()
    counter.remove()
    per_dom = torch.stack([res["load"][d] for d in DOMAINS])  # [D, L, E]
    frac = per_dom / per_dom.sum(-1, keepdim=True)
    pooled = frac.mean(0)  # each domain weighted equally
    ent_pooled = norm_entropy(pooled)
    res["utilization_balance_per_layer"] = [round(float(v), 4) for v in ent_pooled]
    res["utilization_balance"] = round(float(ent_pooled.mean()), 4)
    res["domain_balance_per_layer"] = {d: [round(float(v), 4) for v in norm_entropy(frac[i])]
                                       for i, d in enumerate(DOMAINS)}
    js = {}
    for a in range(len(DOMAINS)):
        for b in range(a + 1, len(DOMAINS)):
            js[f"{DOMAINS[a]}|{DOMAINS[b]}"] = [round(js_divergence(frac[a, l], frac[b, l]), 4)
                                                for l in range(frac.shape[1])]
    res["js_divergence_bits_per_layer"] = js
    res["load"] = {d: frac[i].tolist() for i, d in enumerate(DOMAINS)}
    model.train()
    return res


# -------------------------------------------------------------------------------------- save
def save_bf16(model, out: Path) -> None:
    # Buffers that stay float32: DeepSeek-V3's correction bias (as on the hub; transformers loads it
    # in float32, _keep_in_fp32_modules_strict) and the rotary inv_freq (not saved; recomputed in
    # float32 at load time). Keeping them lets check_saved() demand bit-identical logits.
    keep = {n: b.detach().float().clone() for n, b in model.named_buffers()
            if n.endswith("e_score_correction_bias") or n.endswith("inv_freq")}
    model.to(torch.bfloat16)
    for n, b in keep.items():
        mod_name, attr = n.rsplit(".", 1)
        setattr(model.get_submodule(mod_name), attr, b)
    model.config.use_cache = True
    if hasattr(model.config, "output_router_logits"):
        model.config.output_router_logits = False
    model.set_experts_implementation("eager")
    model.save_pretrained(str(out))
    for f in out.iterdir():
        os.chmod(f, 0o644)


def check_saved(model, out: Path, device: torch.device) -> dict:
    """Reload with AutoModelForCausalLM (dtype from the checkpoint) and compare with the model in memory."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    st = out / "model.safetensors"
    size = st.stat().st_size
    with safe_open(str(st), "pt") as fh:
        dtypes = sorted({str(fh.get_slice(k).get_dtype()) for k in fh.keys()})
        nkeys = len(list(fh.keys()))
    loaded = AutoModelForCausalLM.from_pretrained(str(out), dtype="auto", attn_implementation="eager",
                                                  experts_implementation="eager").to(device).eval()
    model.eval()
    model.set_attn_implementation("eager")
    x = torch.tensor([[0, 5, 17, 300, 42, 1000, 7, 99, 2048, 11, 3, 4000]], device=device)
    with torch.no_grad():
        a = model(input_ids=x).logits.float()
        b = loaded(input_ids=x).logits.float()
    diff = float((a - b).abs().max())
    info = {"safetensors_bytes": size, "safetensors_dtypes": dtypes, "tensors": nkeys,
            "reload_dtype": str(loaded.model.embed_tokens.weight.dtype), "reload_max_abs_logit_diff": diff}
    print(f"saved {st} {size / 2**20:.2f} MiB, dtypes {dtypes}, reload max |dlogit| {diff:.3g}", flush=True)
    assert loaded.model.embed_tokens.weight.dtype == torch.bfloat16
    assert diff == 0.0, "reloaded checkpoint differs from the trained model"
    assert size <= 8 * 2**20, f"model.safetensors is {size} bytes (> 8 MiB)"
    return info


def write_readme(out: Path, log: dict) -> None:
    f = log["final"]
    t = log["train"]
    cfg = log["model_config"]
    bal = "aux-loss-free correction bias, γ = %g" % t["bias_gamma"] if t["bias_gamma"] else (
        "Switch load-balancing loss per MoE layer (mean over layers), coefficient %g" % t["router_aux_loss_coef"]
        if t["router_aux_loss_coef"] else
        "none (no aux loss, no bias), router learning rate × %g" % t["router_lr_mult"])
    zc, cap = t.get("router_z_coef") or 0.0, t.get("router_logit_cap") or 0.0
    if zc or cap:
        bal += "; router " + ", ".join(
            ([f"z-loss {zc:g}"] if zc else [])
            + ([f"\\|logit\\| cap {cap:g}" + (" (after training only)" if t.get("router_logit_cap_mode") == "final" else "")]
               if cap else []))
    last = log["log"][-1]
    rr = f.get("router")
    lines = [
        f"# {log['model']}",
        "",
        f"A tiny {log['architecture']} trained from scratch by `sample_models/recipe/train.py {log['model']}` "
        f"(seed {log['seed']}) on moescope's four-domain corpus (English, Chinese, source code, numbers; "
        "see `sample_models/recipe/`). It exists to show routing, not to write text.",
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {log['params']:,} ({f['check']['safetensors_bytes'] / 2**20:.2f} MiB bf16 safetensors) |",
        f"| layers / hidden / vocab | {cfg['num_hidden_layers']} / {cfg['hidden_size']} / {cfg['vocab_size']} |",
        f"| experts | {log['num_experts']} routed, top-{log['top_k']}, MoE layers {log['moe_layers']} |",
        f"| balancing | {bal} |",
        f"| steps × batch × seq | {log['steps']} × {t['batch']} × {t['seq']} ({log['steps'] * t['batch'] * t['seq'] / 1e6:.1f} M tokens) |",
        f"| optimizer | AdamW, peak lr {t['lr']:g}, cosine to {t['min_lr_frac']:g}×, warmup {t['warmup']}, wd {t['weight_decay']:g} |",
        f"| final train LM loss | {last['lm_loss']:.3f} |",
        f"| utilization balance (held-out, mean over MoE layers) | {f['utilization_balance']:.3f} |",
    ] + ([
        f"| max \\|router logit\\| (held-out, float32, per MoE layer) | {', '.join(f'{v:.1f}' for v in rr['max_abs_logit'])} |",
        f"| k-th vs (k+1)-th selection-score gap < {NEAR_TIE:g} / exactly 0 (held-out, float32) | "
        f"{100 * rr['near_tie_frac_all']:.2f} % / {100 * rr['tied_frac_all']:.2f} % of routings |",
    ] if rr else []) + [
        f"| device / time | {log['device']} / {f['train_time_s']:.0f} s |",
        "",
        "Held-out perplexity (documents not in the training split):",
        "",
        "| domain | " + " | ".join(DOMAINS) + " |",
        "|---|" + "---|" * len(DOMAINS),
        "| perplexity | " + " | ".join(f"{f['heldout_ppl'][d]:.2f}" for d in DOMAINS) + " |",
        "",
        "![training curves](training_curves.png)",
        "",
    ]
    if not t["router_aux_loss_coef"] and not t["bias_gamma"]:
        lines += [
            "## How it was made to collapse",
            "",
            "Nothing balances the load: no auxiliary loss, no correction bias. On its own, at this size "
            "and step budget, unbalanced training drifts only to a utilization balance of about 0.8, so "
            f"the router weights get a learning rate {t['router_lr_mult']:g}x that of the rest of the "
            f"model (peak {t['lr'] * t['router_lr_mult']:g}). An over-eager router locks in its early "
            "preferences: the experts it picks get trained, become better, and are picked more. Held-out "
            "balance measured while choosing the multiplier (H100, 1500 steps): x1 0.82, x10 0.77, "
            "x30 0.85, x100 0.66 (two seeds: 0.67, 0.66), x300 0.61 (those runs had no z-loss and no cap).",
            "",
        ]
        if zc or cap:
            how = []
            if zc:
                how.append(f"a router z-loss (ST-MoE; coefficient {zc:g} times the mean over MoE layers of the "
                           "mean over tokens of logsumexp(router logits)², which pulls logsumexp towards 0)")
            if cap and t.get("router_logit_cap_mode") == "final":
                how.append(f"after training, each router centred (its mean expert row subtracted, which leaves the "
                           f"softmax unchanged) and scaled down so that |logit| ≤ {cap:g} on two training batches "
                           "(a temperature: every token's ranking of the experts is kept)")
            elif cap:
                how.append(f"a cap on |router logit|: after every optimizer step each router is scaled by "
                           f"min(1, {cap:g} / that step's max |logit|), a positive rescale that keeps every "
                           "token's ranking of the experts, and once more after training (centred, then scaled "
                           "on two training batches)")
            lines += [
                "## Bounded router logits",
                "",
                "Left alone, a router with this learning rate saturates: its logits grow to ~2000, the "
                "float32 softmax is exactly one-hot, and the second of the top-2 slots is an exact tie among "
                "experts of probability 0 (the top-k implementation then picks one arbitrarily). To keep the "
                "routing well defined the training adds " + " and ".join(how) + ". Neither balances the "
                "load: the z-loss does not depend on which expert wins, and a rescale does not change it.",
                "",
            ]
            if rr:
                lines += [
                    f"On held-out text (the saved checkpoint in float32) the largest |router logit| per MoE "
                    f"layer is {', '.join(f'{v:.1f}' for v in rr['max_abs_logit'])}, and "
                    f"{100 * rr['near_tie_frac_all']:.2f} % of the (layer, token) routings have a k-th vs "
                    f"(k+1)-th probability gap below {NEAR_TIE:g} ({100 * rr['tied_frac_all']:.2f} % exactly 0).",
                    "",
                ]
    (out / "README.md").write_text("\n".join(lines))


# -------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("--data", type=Path, default=Path("gpu-run/data"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument("--log-every", type=int, default=None)
    ap.add_argument("--eval-windows", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--router-lr-mult", type=float, default=None)
    ap.add_argument("--aux-coef", dest="router_aux_loss_coef", type=float, default=None)
    ap.add_argument("--bias-gamma", type=float, default=None)
    ap.add_argument("--router-z-coef", type=float, default=None,
                    help="router z-loss coefficient (softmax routers; mean over MoE layers of mean_t logsumexp^2)")
    ap.add_argument("--router-logit-cap", type=float, default=None,
                    help="bound |router logit| by rescaling each router after every step (0 = off)")
    ap.add_argument("--router-logit-cap-mode", choices=["train", "final"], default=None,
                    help="train: rescale after every step and once after training; final: only after training")
    ap.add_argument("--router-init-std", type=float, default=None,
                    help="re-initialise every router weight with N(0, std^2) (0 = zeros); default: the config's initializer_range")
    ap.add_argument("--experts", default="auto", choices=["auto", "eager", "grouped_mm"],
                    help="transformers experts implementation for training (auto: grouped_mm on CUDA if it checks out)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = MODELS[args.model]
    tr = dict(COMMON_TRAIN, **spec["train"])
    for k in ("steps", "batch", "seq", "log_every", "eval_windows", "lr", "router_lr_mult",
              "router_aux_loss_coef", "bias_gamma", "router_init_std", "router_z_coef", "router_logit_cap",
              "router_logit_cap_mode"):
        if getattr(args, k) is not None:
            tr[k] = getattr(args, k)
    if spec["arch"].startswith("Mixtral"):  # the saved config records the coefficient actually used
        spec = dict(spec, config=dict(spec["config"], router_aux_loss_coef=tr["router_aux_loss_coef"]))
    if (tr["router_z_coef"] or tr["router_logit_cap"]) and not spec["arch"].startswith("Mixtral"):
        sys.exit("--router-z-coef / --router-logit-cap are for the softmax (Mixtral) routers only")
    steps = tr["steps"]
    tr["log_every"] = max(1, min(tr["log_every"], steps // 4 or 1))
    device = torch.device(args.device)
    amp = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    meta = json.loads((args.data / "meta.json").read_text())
    assert meta["vocab_size"] == spec["config"]["vocab_size"], "tokenizer and model vocab differ"

    import transformers

    model = build_model(spec, device, args.seed, "eager", "sdpa")
    if tr.get("router_init_std") is not None:
        g = torch.Generator(device="cpu").manual_seed(args.seed + 1)
        with torch.no_grad():
            for _, gate in moe_gates(model):
                w = torch.randn(gate.weight.shape, generator=g) * tr["router_init_std"]
                gate.weight.copy_(w.to(gate.weight.device))
    cfg = model.config
    E = cfg.n_routed_experts if hasattr(cfg, "n_routed_experts") else cfg.num_local_experts
    top_k = cfg.num_experts_per_tok
    nparams = sum(p.numel() for p in model.parameters())
    batches = Batches(args.data, tr["batch"], tr["seq"], device, args.seed)
    experts_impl = pick_experts_impl(model, batches.next(), device, args.experts)
    batches = Batches(args.data, tr["batch"], tr["seq"], device, args.seed)  # restart the stream
    model.train()
    counter = LoadCounter(model, E)
    rstats = RouterStats(model, top_k)
    moe_layers = [i for i, _ in counter.gates]
    print(f"{args.model}: {spec['arch']} {nparams:,} params, MoE layers {moe_layers}, {E} experts top-{top_k}, "
          f"experts impl {experts_impl}, device {device}, transformers {transformers.__version__}, "
          f"torch {torch.__version__}", flush=True)

    groups = param_groups(model, tr["lr"], tr["weight_decay"], tr["router_lr_mult"])
    opt = torch.optim.AdamW(groups, lr=tr["lr"], betas=tr["betas"], eps=1e-8,
                            fused=device.type == "cuda")
    coef = tr["router_aux_loss_coef"]
    want_aux = spec["arch"].startswith("Mixtral")
    gamma = tr["bias_gamma"]
    zcoef = tr["router_z_coef"]
    cap = tr["router_logit_cap"]
    cap_each_step = bool(cap) and tr["router_logit_cap_mode"] == "train"
    if zcoef or cap:
        print(f"router: z-loss coefficient {zcoef:g}, |logit| cap {cap:g} ({tr['router_logit_cap_mode']})", flush=True)
    gates = [g for _, g in counter.gates]
    per = tr["batch"] // len(DOMAINS)

    log_rows = []
    acc_loss = torch.zeros(len(DOMAINS), device=device)
    acc_aux = torch.zeros((), device=device)
    acc_aux_hf = torch.zeros((), device=device)
    acc_z = torch.zeros((), device=device)
    acc_n = 0
    t0 = time.time()
    t_last = t0
    for step in range(steps):
        lr = lr_at(step, steps, tr["warmup"], tr["lr"], tr["min_lr_frac"])
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_mult"]
        x = batches.next()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(input_ids=x, output_router_logits=want_aux)
        logits = out.logits[:, :-1].float()
        tok_loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten(), reduction="none").view(x.shape[0], -1)
        lm = tok_loss.mean()
        loss = lm
        if want_aux:
            aux = switch_aux_loss(out.router_logits, E, top_k)
            loss = loss + coef * aux
            acc_aux += aux.detach()
            acc_aux_hf += out.aux_loss.detach().float()
        if zcoef:
            z = router_z_loss(out.router_logits)
            loss = loss + zcoef * z
            acc_z += z.detach()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tr["grad_clip"])
        opt.step()
        load = counter.end_step()
        step_max = rstats.end_step()
        if cap_each_step:
            with torch.no_grad():  # positive rescale: every token's expert ranking is unchanged
                for j, g in enumerate(gates):
                    g.weight.mul_(torch.clamp(cap / step_max[j].clamp_min(1e-12), max=1.0))
        if gamma:
            with torch.no_grad():  # auxiliary-loss-free balancing (DeepSeek-V3, section 2.1.2)
                for j, g in enumerate(gates):
                    g.e_score_correction_bias += gamma * torch.sign(load[j].mean() - load[j])
        acc_loss += tok_loss.detach().view(len(DOMAINS), per, -1).mean((1, 2))
        acc_n += 1
        if (step + 1) % tr["log_every"] == 0 or step + 1 == steps:
            w = counter.take_window()
            ent = norm_entropy(w)
            dom_loss = (acc_loss / acc_n).tolist()
            now = time.time()
            row = {
                "step": step + 1,
                "lr": lr,
                "lm_loss": sum(dom_loss) / len(dom_loss),
                "lm_loss_by_domain": dict(zip(DOMAINS, dom_loss)),
                "aux_loss": float(acc_aux / acc_n) if want_aux else None,
                "aux_loss_transformers_pooled": float(acc_aux_hf / acc_n) if want_aux else None,
                "bias": None,
                "z_loss": float(acc_z / acc_n) if zcoef else None,
                "router": rstats.take_window(),
                "load_entropy": [round(float(v), 4) for v in ent],
                "load_entropy_mean": round(float(ent.mean()), 4),
                "max_load_frac": [round(float(v), 4) for v in (w.max(-1).values / w.sum(-1))],
                "sec_per_step": (now - t_last) / acc_n,
                "elapsed_s": now - t0,
            }
            if gamma or hasattr(gates[0], "e_score_correction_bias"):
                b = torch.stack([g.e_score_correction_bias.detach().float() for g in gates])
                row["bias"] = {"min": b.min(-1).values.tolist(), "max": b.max(-1).values.tolist(),
                               "std": b.std(-1).tolist(), "mean_abs": b.abs().mean(-1).tolist()}
            log_rows.append(row)
            extra = f" aux {row['aux_loss']:.4f}" if want_aux else ""
            if row["bias"]:
                extra += f" bias±{max(row['bias']['mean_abs']):.3f}"
            if zcoef:
                extra += f" z {row['z_loss']:.3f}"
            r = row["router"]
            extra += (f" |logit|max {max(r['max_abs_logit']):.1f} gap<{NEAR_TIE:g} {100 * r['near_tie_frac_all']:.1f}%")
            print(f"step {step + 1:5d} lr {lr:.2e} lm {row['lm_loss']:.4f} "
                  + " ".join(f"{d[:2]} {v:.3f}" for d, v in zip(DOMAINS, dom_loss))
                  + f"{extra} H/logE {row['load_entropy_mean']:.3f} {row['sec_per_step'] * 1000:.0f} ms/step",
                  flush=True)
            acc_loss.zero_()
            acc_aux.zero_()
            acc_aux_hf.zero_()
            acc_z.zero_()
            acc_n = 0
            t_last = now
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_time = time.time() - t0
    counter.remove()
    rstats.remove()
    cap_scales = final_logit_cap(model, batches, cap, amp, device) if cap else None
    if cap_scales is not None:
        print(f"router: after training, centred and scaled by {[round(v, 4) for v in cap_scales]} "
              f"for |logit| <= {cap:g} on two training batches", flush=True)

    model.set_experts_implementation("eager")
    final = evaluate(model, args.data, tr["seq"], tr["eval_windows"], device, amp, E)
    final["train_time_s"] = train_time
    print("held-out ppl " + " ".join(f"{d} {final['heldout_ppl'][d]:.2f}" for d in DOMAINS)
          + f" | utilization balance {final['utilization_balance']:.3f} per layer {final['utilization_balance_per_layer']}",
          flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    save_bf16(model, args.out)
    final["check"] = check_saved(model, args.out, device)
    final["router_final_cap_scales"] = cap_scales
    final["router"] = router_report(args.out, args.data, tr["seq"], tr["eval_windows"], device)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(args.data / f, args.out / f)

    log = {
        "model": args.model,
        "architecture": spec["arch"],
        "seed": args.seed,
        "steps": steps,
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "train": {k: (list(v) if isinstance(v, tuple) else v) for k, v in tr.items()},
        "experts_implementation_train": experts_impl,
        "amp_bf16": amp,
        "params": nparams,
        "num_experts": E,
        "top_k": top_k,
        "moe_layers": moe_layers,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__},
        "data": {"tokens_sha256": meta.get("tokens_sha256"),
                 "train_tokens": {d: meta["domains"][d]["train"]["tokens"] for d in DOMAINS},
                 "heldout_tokens": {d: meta["domains"][d]["heldout"]["tokens"] for d in DOMAINS}},
        "model_config": model.config.to_dict(),
        "log": log_rows,
        "final": final,
    }
    (args.out / "training_log.json").write_text(json.dumps(log, indent=1, default=str) + "\n")
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from plot_curves import plot

        plot(log, args.out / "training_curves.png")
    except ImportError as e:
        print(f"note: no training_curves.png ({e}); run recipe/plot_curves.py {args.out} where matplotlib is installed")
    write_readme(args.out, log)
    print(f"done: {args.out}", flush=True)


if __name__ == "__main__":
    main()
