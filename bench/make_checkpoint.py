#!/usr/bin/env python3
"""Write a random-weight MoE checkpoint at the dimensions of a real model, for benchmarks.

Usage:
    python bench/make_checkpoint.py SHAPE OUT_DIR [--layers N] [--dtype f32|bf16] [--vocab V]

SHAPE is one of:
    olmoe      OLMoE-1B-7B:    hidden 2048, 16 heads, 64 experts x 1024, top-8, no renormalization
    qwen3-30b  Qwen3-30B-A3B:  hidden 2048, 32/4 heads of 128, 128 experts x 768, top-8, renormalized

Only the number of layers (default 2) and optionally the vocabulary differ from the real model,
so one layer costs what it costs in the real model. Weights are transformers' own initialization
(normal, std 0.02) from a fixed seed; the folder is what `save_pretrained` writes (safetensors,
transformers-5 config layout), so both moescope and bench/torch_baseline.py read it unchanged.

--stream writes checkpoints larger than this machine's RAM (a 24-layer Qwen3-30B slice is 31 GB):
tensors are generated and written one at a time (normal, std 0.02; norms 1) straight into one
safetensors file, names and shapes taken from the model built on PyTorch's meta device, experts in
transformers 5's packed layout. Nothing but the file and one tensor is ever in memory.
"""

from __future__ import annotations

import argparse
import time

import torch
import transformers
from transformers import OlmoeConfig, OlmoeForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

SHAPES = {
    "olmoe": (
        OlmoeConfig,
        OlmoeForCausalLM,
        dict(
            hidden_size=2048,
            intermediate_size=1024,
            num_attention_heads=16,
            num_key_value_heads=16,
            num_experts=64,
            num_experts_per_tok=8,
            norm_topk_prob=False,
            vocab_size=50304,
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
        ),
    ),
    "qwen3-30b": (
        Qwen3MoeConfig,
        Qwen3MoeForCausalLM,
        dict(
            hidden_size=2048,
            intermediate_size=6144,
            moe_intermediate_size=768,
            num_attention_heads=32,
            num_key_value_heads=4,
            head_dim=128,
            num_experts=128,
            num_experts_per_tok=8,
            norm_topk_prob=True,
            decoder_sparse_step=1,
            mlp_only_layers=[],
            vocab_size=151936,
            max_position_embeddings=40960,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
        ),
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("out")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    parser.add_argument("--vocab", type=int, help="vocabulary size (default: the real model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stream", action="store_true", help="write tensor by tensor (checkpoints larger than RAM)")
    args = parser.parse_args()
    if args.stream:
        return stream(args)

    config_cls, model_cls, fields = SHAPES[args.shape]
    fields = dict(fields, num_hidden_layers=args.layers)
    if args.vocab:
        fields["vocab_size"] = args.vocab
    config = config_cls(**fields)
    started = time.time()
    torch.manual_seed(args.seed)
    model = model_cls(config).eval()
    if args.dtype == "bf16":
        model = model.to(torch.bfloat16)
    model.save_pretrained(args.out)
    size_gb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e9
    print(
        f"{args.shape}: {args.layers} layers, {size_gb:.2f} GB {args.dtype} in {args.out} "
        f"({time.time() - started:.0f} s, transformers {transformers.__version__})"
    )


def stream(args) -> None:
    """Writes the checkpoint tensor by tensor: header first, then each tensor's bytes."""
    import json
    import os

    import numpy as np

    config_cls, model_cls, fields = SHAPES[args.shape]
    fields = dict(fields, num_hidden_layers=args.layers)
    if args.vocab:
        fields["vocab_size"] = args.vocab
    config = config_cls(**fields)
    config.dtype = "bfloat16" if args.dtype == "bf16" else "float32"
    with torch.device("meta"):
        model = model_cls(config)
    started = time.time()
    itemsize = 2 if args.dtype == "bf16" else 4
    tensors = [(name, list(t.shape)) for name, t in model.state_dict().items()]
    header, offset = {}, 0
    for name, shape in tensors:
        size = int(np.prod(shape)) * itemsize
        header[name] = {"dtype": "BF16" if itemsize == 2 else "F32", "shape": shape,
                        "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    os.makedirs(args.out, exist_ok=True)
    config.save_pretrained(args.out)
    rng = np.random.default_rng(args.seed)
    chunk = 1 << 24
    with open(os.path.join(args.out, "model.safetensors"), "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for name, shape in tensors:
            n = int(np.prod(shape))
            for start in range(0, n, chunk):
                count = min(chunk, n - start)
                if name.endswith("norm.weight"):
                    values = np.ones(count, dtype=np.float32)
                else:
                    values = rng.standard_normal(count, dtype=np.float32) * 0.02
                if itemsize == 2:
                    bits = values.view(np.uint32)
                    # Round to nearest even, as torch's float → bfloat16 cast does.
                    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
                    f.write(bits.astype(np.uint16).tobytes())
                else:
                    f.write(values.tobytes())
    print(f"{args.shape}: {args.layers} layers, {offset / 1e9:.2f} GB {args.dtype} streamed to {args.out} "
          f"({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
