#!/usr/bin/env python3
"""moescope's routing of a GGUF file against llama.cpp's own routing of the same file.

llama.cpp runs the file with its own kernels (activations quantized to 8 bits for quantized
weights), so near-ties may flip; the figure that matters is the share of routing decisions (token,
layer, chosen expert) both make. Builds `bench/llama_routing.cpp` against a llama.cpp tree built
with cmake (`build/bin/libllama.so`), runs it and `moescope trace` on the same token ids, and
prints per file and layer the share of chosen experts both pick and of tokens whose whole set
agrees.

    python bench/llama_routing.py --llama-cpp LLAMA_CPP --moescope target/release/moescope \
        FILE.gguf [FILE.gguf ...] [--tokens 512] [--threads 2] [--write-reference]

Token ids: a `FILE.reference.json` beside the file, or the fixture's own reference.json, gives
them (the fixtures' prompts); otherwise `--tokens` ids drawn with a fixed seed below the
vocabulary size. Files without a vocabulary get placeholder pieces in a temporary copy for
llama.cpp (`make_gguf_models.rewritten`). `--write-reference` keeps
llama.cpp's routing as `FILE.llama-cpp.json` beside the file, which `tests/gguf.rs` compares
with moescope's routing without needing llama.cpp.
"""

import argparse
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent


def build_tool(tree: pathlib.Path, out_dir: pathlib.Path) -> pathlib.Path:
    lib_dir = tree / "build" / "bin"
    if not (lib_dir / "libllama.so").exists():
        sys.exit(f"{lib_dir / 'libllama.so'}: not found; build llama.cpp with cmake first")
    tool = out_dir / "llama_routing"
    subprocess.run(
        ["g++", "-O2", "-std=c++17", str(HERE / "llama_routing.cpp"),
         "-I", str(tree / "include"), "-I", str(tree / "ggml" / "include"),
         "-L", str(lib_dir), "-lllama", "-lggml", "-lggml-base",
         f"-Wl,-rpath,{lib_dir}", "-o", str(tool)],
        check=True)
    return tool


def loadable(path: pathlib.Path, work: pathlib.Path) -> pathlib.Path:
    """The file, or a copy with placeholder pieces where it has no vocabulary (the fixtures'
    `tokenizer.ggml.model = "none"`), which llama.cpp refuses to load."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    model = reader.fields.get("tokenizer.ggml.model")
    if model is not None and model.contents() != "none":
        return path
    sys.path.insert(0, str(HERE.parent / "tests" / "fixtures"))
    import make_gguf_models

    rows = next(t for t in reader.tensors if t.name == "token_embd.weight").shape[1]
    copy = work / path.name
    make_gguf_models.rewritten(path, copy, vocab_size=int(rows))
    return copy


def vocab_size(path: pathlib.Path) -> int:
    import gguf

    reader = gguf.GGUFReader(str(path))
    return int(next(t for t in reader.tensors if t.name == "token_embd.weight").shape[1])


def token_ids(path: pathlib.Path, count: int) -> list[int]:
    reference = path.with_suffix(".reference.json")
    if reference.exists():
        return json.loads(reference.read_text())["input_ids"]
    fixtures = HERE.parent / "tests" / "fixtures"
    fixture = fixtures / path.stem.rsplit("-", 1)[0] / "reference.json"
    if path.resolve().is_relative_to(fixtures) and fixture.exists():
        return json.loads(fixture.read_text())["input_ids"]
    vocab = vocab_size(path)
    rng = random.Random(0)
    return [rng.randrange(vocab) for _ in range(count)]


def moescope_routing(moescope: str, path: pathlib.Path, ids: list[int], threads: int,
                     work: pathlib.Path) -> dict[int, list[list[int]]]:
    trace = work / "trace.json"
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    subprocess.run([moescope, "trace", str(path), "--token-ids", ",".join(map(str, ids)),
                    "--capture", "routing", "--out", str(trace)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    layers = json.loads(trace.read_text())["moe_layers"]
    return {layer["layer"]: layer["topk_ids"] for layer in layers}


def agreement(ours: dict, theirs: dict) -> list[tuple[int, int, int, int, int]]:
    """Per layer: (layer, decisions, shared decisions, tokens, tokens with the same set)."""
    if sorted(ours) != sorted(theirs):
        sys.exit(f"MoE layers differ: moescope {sorted(ours)}, llama.cpp {sorted(theirs)}")
    rows = []
    for layer in sorted(ours):
        a, b = ours[layer], theirs[layer]
        if len(a) != len(b):
            sys.exit(f"layer {layer}: {len(a)} tokens in moescope, {len(b)} in llama.cpp")
        shared = sum(len(set(x) & set(y)) for x, y in zip(a, b))
        same = sum(set(x) == set(y) for x, y in zip(a, b))
        rows.append((layer, sum(len(x) for x in a), shared, len(a), same))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=pathlib.Path)
    parser.add_argument("--llama-cpp", required=True, type=pathlib.Path,
                        help="llama.cpp source tree with a cmake build/ inside")
    parser.add_argument("--moescope", default="target/release/moescope")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write-reference", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, str(args.llama_cpp / "gguf-py"))
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        tool = build_tool(args.llama_cpp, work)
        total_decisions = total_shared = 0
        skipped = []
        for path in args.files:
            ids = token_ids(path, args.tokens)
            out = work / "llama.json"
            ran = subprocess.run([str(tool), str(loadable(path, work)), ",".join(map(str, ids)),
                                  str(out), str(args.threads)])
            if ran.returncode != 0:
                # Its own converter's output can be beyond its loader (DeepSeek-V2 without
                # q_lora_rank in this version): nothing to compare.
                print(f"{path.name}: skipped, llama.cpp did not run it")
                skipped.append(path.name)
                continue
            theirs_doc = json.loads(out.read_text())
            theirs = {layer["layer"]: layer["topk_ids"] for layer in theirs_doc["moe_layers"]}
            ours = moescope_routing(args.moescope, path, ids, args.threads, work)
            rows = agreement(ours, theirs)
            decisions = sum(r[1] for r in rows)
            shared = sum(r[2] for r in rows)
            total_decisions += decisions
            total_shared += shared
            print(f"{path.name}: {len(ids)} tokens, {shared}/{decisions} decisions shared "
                  f"({100 * shared / decisions:.2f} %)")
            for layer, n, s, tokens, same in rows:
                print(f"  layer {layer:3d}: decisions {100 * s / n:6.2f} %, "
                      f"whole sets {same}/{tokens}")
            if args.write_reference:
                theirs_doc["name"] = path.name
                theirs_doc["reference"] = ("llama.cpp's own routing of this file "
                                           "(bench/llama_routing.py, cb_eval ffn_moe_topk)")
                target = path.with_suffix(".llama-cpp.json")
                target.write_text(json.dumps(theirs_doc, indent=1) + "\n")
                print(f"  wrote {target}")
        print(f"all files: {100 * total_shared / max(total_decisions, 1):.2f} % of "
              f"{total_decisions} decisions shared"
              + (f"; llama.cpp did not run {', '.join(skipped)}" if skipped else ""))


if __name__ == "__main__":
    main()
