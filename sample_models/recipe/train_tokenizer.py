#!/usr/bin/env python3
"""Train the sample models' byte-level BPE tokenizer on the corpus's train split.

    python3 train_tokenizer.py --corpus /tmp/moescope-corpus --out DIR [--vocab 8192]

Writes DIR/tokenizer.json (loads in the Rust `tokenizers` crate, default features off +
fancy-regex) and DIR/tokenizer_config.json (for transformers' AutoTokenizer).

* special tokens: <|bos|>=0, <|eos|>=1, <|pad|>=2
* pre-tokenizer: Digits(individual_digits=True) then ByteLevel(add_prefix_space=False), so that
  every number is spelled digit by digit (the arithmetic domain) and Chinese, code and English
  are learnt from bytes with the GPT-2 split pattern
* post-processor: TemplateProcessing that prepends <|bos|>
* decoder: ByteLevel
Each domain contributes the same number of bytes to the training iterator (the smaller domains
are repeated), so the 8k merges are not all spent on the biggest domain. Deterministic.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

DOMAINS = ("english", "chinese", "code", "numbers")
SPECIALS = ["<|bos|>", "<|eos|>", "<|pad|>"]
SAMPLES = {
    "english": "The quick brown fox jumps over the lazy dog. Nothing is as easy as it looks.",
    "chinese": "床前明月光，疑是地上霜。如果需要，您也可以在页脚中添加边框。",
    "code": "def forward(self, x):\n    return self.proj(x) + 1\n",
    "rust": "fn main() {\n    let v: Vec<u32> = (0..10).collect();\n}\n",
    "numbers": "123 + 456 = 579\n2024-03-15 is a Friday.",
}


def domain_docs(corpus: Path, dom: str, split: str = "train") -> list[str]:
    with open(corpus / split / f"{dom}.jsonl", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh]


def balanced_iterator(corpus: Path, budget: int):
    for dom in DOMAINS:
        docs = domain_docs(corpus, dom)
        n, i = 0, 0
        while n < budget:
            t = docs[i % len(docs)]
            yield t
            n += len(t.encode())
            i += 1


def build(vocab: int, corpus: Path, budget: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        min_frequency=2,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(balanced_iterator(corpus, budget), trainer=trainer)
    bos = tok.token_to_id("<|bos|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B", special_tokens=[("<|bos|>", bos)]
    )
    return tok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/moescope-corpus"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--budget", type=int, default=2_500_000, help="bytes per domain fed to the trainer")
    args = ap.parse_args()

    tok = build(args.vocab, args.corpus, args.budget)
    assert [tok.token_to_id(s) for s in SPECIALS] == [0, 1, 2]
    args.out.mkdir(parents=True, exist_ok=True)
    tok.save(str(args.out / "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>",
        "add_bos_token": False,  # the post-processor already prepends <|bos|>
        "model_max_length": 1024,
        "clean_up_tokenization_spaces": False,
    }
    (args.out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")

    tok = Tokenizer.from_file(str(args.out / "tokenizer.json"))
    print(f"vocab size {tok.get_vocab_size()}")
    for name, text in SAMPLES.items():
        enc = tok.encode(text)
        assert tok.decode(enc.ids) == text, (name, tok.decode(enc.ids))
        print(f"{name:8s} {len(enc.ids):3d} ids  {enc.tokens}")
    # bytes per token on the held-out split
    for dom in DOMAINS:
        docs = domain_docs(args.corpus, dom, "heldout")
        nb = sum(len(d.encode()) for d in docs)
        nt = sum(len(e.ids) for e in tok.encode_batch(docs))
        print(f"held-out {dom:8s} {nb / nt:5.2f} bytes/token  ({nt} tokens)")


if __name__ == "__main__":
    main()
