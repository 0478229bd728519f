#!/usr/bin/env python3
"""Tokenize the corpus into the small data bundle that travels to the training machine.

    python3 make_bundle.py --corpus /tmp/moescope-corpus --tokenizer DIR --out gpu-run/data

Writes to OUT:
    train_<domain>.npy, heldout_<domain>.npy   uint16 token streams; every document is
                                               <|bos|> ids <|eos|> (the tokenizer adds <|bos|>)
    heldout_<domain>.jsonl                     the held-out documents as text
    tokenizer.json, tokenizer_config.json      copied from --tokenizer
    meta.json                                  token counts, the corpus manifest, a checksum
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

DOMAINS = ("english", "chinese", "code", "numbers")


def encode_docs(tok: Tokenizer, docs: list[str], eos: int) -> np.ndarray:
    out = []
    for i in range(0, len(docs), 512):
        for e in tok.encode_batch(docs[i : i + 512]):
            out.extend(e.ids)
            out.append(eos)
    arr = np.asarray(out, dtype=np.int64)
    assert arr.max() < 65536
    return arr.astype(np.uint16)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/moescope-corpus"))
    ap.add_argument("--tokenizer", type=Path, required=True, help="folder with tokenizer.json")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    tok = Tokenizer.from_file(str(args.tokenizer / "tokenizer.json"))
    eos = tok.token_to_id("<|eos|>")
    args.out.mkdir(parents=True, exist_ok=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(args.tokenizer / f, args.out / f)
    meta = {"domains": {}, "vocab_size": tok.get_vocab_size(), "bos_id": tok.token_to_id("<|bos|>"),
            "eos_id": eos, "pad_id": tok.token_to_id("<|pad|>"), "dtype": "uint16"}
    h = hashlib.sha256()
    for dom in DOMAINS:
        meta["domains"][dom] = {}
        for split in ("train", "heldout"):
            src = args.corpus / split / f"{dom}.jsonl"
            docs = [json.loads(line)["text"] for line in src.open(encoding="utf-8")]
            arr = encode_docs(tok, docs, eos)
            np.save(args.out / f"{split}_{dom}.npy", arr)
            h.update(arr.tobytes())
            if split == "heldout":
                shutil.copy(src, args.out / f"heldout_{dom}.jsonl")
            nbytes = sum(len(d.encode()) for d in docs)
            meta["domains"][dom][split] = {"docs": len(docs), "tokens": int(arr.size), "text_bytes": nbytes}
            print(f"{split:8s} {dom:8s} {len(docs):6d} docs {arr.size:9d} tokens {nbytes / arr.size:5.2f} bytes/token")
    meta["tokens_sha256"] = h.hexdigest()
    manifest = args.corpus / "manifest.json"
    if manifest.exists():
        meta["corpus_manifest"] = json.loads(manifest.read_text())
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"bundle {args.out}: {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
