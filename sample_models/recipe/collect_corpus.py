#!/usr/bin/env python3
"""Build the multi-domain training corpus for the sample models, offline and reproducibly.

Four domains, each split by whole documents into train and held-out (~5 %, seeded):

  english  fortune cookies (Debian `fortunes-min`, `fortunes`) and the prose paragraphs of the
           Debian Reference (`debian-reference-en`)
  chinese  Chinese fortunes, Tang and Song poems (`fortunes-zh`), the Chinese LibreOffice help
           (`libreoffice-help-zh-cn`), the Debian Reference and the Debian FAQ in Simplified
           Chinese (`debian-reference-zh-cn`, `debian-faq-zh-cn`)
  code     Python standard library sources (`libpython3.11-stdlib`) and the `src/` trees of
           pinned MIT/Apache Rust crates (RUST_CRATES; .crate archives from cargo's registry cache)
  numbers  arithmetic, tables, sequences and dates generated here from the seed

`collect_corpus.sh` downloads the Debian packages with `apt-get download`, unpacks them with
`dpkg-deb -x` into DIR/root (nothing is installed system-wide), runs `cargo fetch` on a throwaway
manifest that pins the crates (`--print-cargo-manifest`), and then calls this script:

    python3 collect_corpus.py --root DIR/root --debs DIR/debs --out DIR

Output (DIR):
    train/<domain>.jsonl, heldout/<domain>.jsonl   one {"text", "src"} per line
    manifest.json                                   sources, versions, licences, sizes, seed
Standard library only (no third-party Python modules needed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import hashlib
import html
import json
import os
import random
import re
import subprocess
import tarfile
from pathlib import Path

SEED = 1234
HELDOUT_FRAC = 0.05
DOMAINS = ("english", "chinese", "code", "numbers")

# Size caps (bytes of UTF-8 text, train + held-out) so that the domains stay roughly balanced.
CAP_PY = 2_400_000
CAP_RUST = 1_100_000
CAP_NUMBERS = 1_600_000
MAX_CODE_FILE = 60_000  # longer source files are skipped (they are mostly tables)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
BOX = re.compile("[\u2500-\u257f]")  # box-drawing characters (tables dumped as text)

# Rust crates, pinned. All are MIT and/or Apache-2.0 (checked again from each Cargo.toml).
# collect_corpus.sh fetches exactly these with `cargo fetch` (rust_fetch_manifest() below).
RUST_CRATES = {
    "anyhow": "1.0.104", "candle-nn": "0.11.1", "either": "1.19.0", "half": "2.7.1",
    "indexmap": "2.14.2", "itertools": "0.14.0", "log": "0.4.35", "num-traits": "0.2.19",
    "rayon-core": "1.13.0", "safetensors": "0.8.0", "serde_json": "1.0.154", "smallvec": "1.16.6",
    "tempfile": "3.27.0", "tokenizers": "0.23.2", "walkdir": "2.5.0",
}
RUST_LICENSE_OK = re.compile(r"\b(MIT|Apache-2\.0)\b")

PACKAGES = {
    "fortunes-min": ("english", "BSD-3-Clause (fortune-mod data; see /usr/share/doc/fortunes-min/copyright)"),
    "fortunes": ("english", "BSD-3-Clause (fortune-mod data; see /usr/share/doc/fortunes/copyright)"),
    "debian-reference-en": ("english", "GPL-2+ (Osamu Aoki)"),
    "fortunes-zh": ("chinese", "GPL-3.0+ (Yu Guanghui, Mo Zhou, xiao sheng wen)"),
    "libreoffice-help-zh-cn": ("chinese", "MPL-2.0 (The Document Foundation)"),
    "debian-reference-zh-cn": ("chinese", "GPL-2+ (Osamu Aoki and translators)"),
    "debian-faq-zh-cn": ("chinese", "verbatim-copy/translation permission notice, (C) 1996-2003 SPI"),
    "libpython3.11-stdlib": ("code", "PSF-2.0 (Python Software Foundation License)"),
}


def cjk_count(s: str) -> int:
    return sum(1 for c in s if "\u4e00" <= c <= "\u9fff")


def cjk_ratio(s: str) -> float:
    n = len(re.sub(r"\s", "", s))
    return cjk_count(s) / n if n else 0.0


def html_paragraphs(path: str) -> list[str]:
    t = open(path, encoding="utf-8", errors="replace").read()
    t = re.sub(r"<(pre|script|style|table)\b.*?</\1>", " ", t, flags=re.S | re.I)
    out = []
    for p in re.findall(r"<p\b[^>]*>(.*?)</p>", t, flags=re.S | re.I):
        p = html.unescape(re.sub(r"<[^>]+>", "", p))
        p = re.sub(r"\s+", " ", p).strip()
        if p:
            out.append(p)
    return out


def chunk_paragraphs(paras: list[str], src: str, target: int, joiner: str) -> list[dict]:
    """Group consecutive paragraphs into documents of about `target` characters."""
    docs, cur, n = [], [], 0
    for p in paras:
        cur.append(p)
        n += len(p)
        if n >= target:
            docs.append({"text": joiner.join(cur), "src": src})
            cur, n = [], 0
    if cur:
        docs.append({"text": joiner.join(cur), "src": src})
    return docs


def read_fortunes(path: str) -> list[str]:
    t = open(path, encoding="utf-8", errors="replace").read()
    t = ANSI.sub("", t)
    out = []
    for f in re.split(r"\n%[ \t]*\n", t):
        f = f.strip("\n").rstrip()
        f = f.replace("\u00a0", " ")
        if f.strip():
            out.append(f)
    return out


# ----------------------------------------------------------------------------------- english
def collect_english(root: Path) -> list[dict]:
    docs = []
    fdir = root / "usr/share/games/fortunes"
    skip = {"ascii-art", "chinese", "tang300", "song100"}
    for f in sorted(os.listdir(fdir)):
        p = fdir / f
        if "." in f or f in skip or p.is_symlink() or not p.is_file():
            continue
        for x in read_fortunes(str(p)):
            if BOX.search(x) or cjk_count(x):
                continue
            if sum(c.isalpha() for c in x) < 0.5 * len(x.replace(" ", "").replace("\n", "") or "x"):
                continue  # ASCII art and tables
            docs.append({"text": x, "src": f"fortunes:{f}"})
    for f in sorted(glob.glob(str(root / "usr/share/debian-reference/*.en.html"))):
        paras = [p for p in html_paragraphs(f) if len(p) >= 40 and not cjk_count(p)]
        docs += chunk_paragraphs(paras, f"debian-reference-en:{Path(f).name}", 1500, "\n\n")
    return docs


# ----------------------------------------------------------------------------------- chinese
def collect_chinese(root: Path) -> list[dict]:
    docs = []
    fdir = root / "usr/share/games/fortunes"
    for f in ("chinese", "tang300", "song100"):
        for x in read_fortunes(str(fdir / f)):
            if BOX.search(x) or cjk_ratio(x) < 0.5:
                continue  # the `chinese` file also quotes Debian Reference tables and commands
            docs.append({"text": x, "src": f"fortunes-zh:{f}"})
    seen: set[str] = set()

    def cjk_paras(path: str) -> list[str]:
        out = []
        for p in html_paragraphs(path):
            if len(p) < 8 or cjk_ratio(p) < 0.4 or p in seen:
                continue
            seen.add(p)
            out.append(p)
        return out

    lo = sorted(glob.glob(str(root / "usr/share/libreoffice/help/zh-CN/**/*.html"), recursive=True))
    for f in lo:
        paras = cjk_paras(f)
        if sum(len(p) for p in paras) >= 30:
            rel = os.path.relpath(f, root / "usr/share/libreoffice/help/zh-CN")
            docs.append({"text": "\n".join(paras), "src": f"libreoffice-help-zh-cn:{rel}"})
    for f in sorted(glob.glob(str(root / "usr/share/debian-reference/*.zh-cn.html"))):
        docs += chunk_paragraphs(cjk_paras(f), f"debian-reference-zh-cn:{Path(f).name}", 600, "\n")
    for f in sorted(glob.glob(str(root / "usr/share/doc/debian/FAQ/zh-cn/*.html"))):
        docs += chunk_paragraphs(cjk_paras(f), f"debian-faq-zh-cn:{Path(f).name}", 600, "\n")
    return docs


# -------------------------------------------------------------------------------------- code
def read_source(path: str) -> str | None:
    try:
        t = open(path, encoding="utf-8").read()
    except (UnicodeDecodeError, OSError):
        return None
    if not t.strip() or len(t.encode()) > MAX_CODE_FILE:
        return None
    return t.replace("\r\n", "\n").replace("\t", "    ")


def capped_sample(items: list[tuple[str, str]], cap: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    items = sorted(items)
    rng.shuffle(items)
    out, n = [], 0
    for name, text in items:
        b = len(text.encode())
        if n + b > cap:
            continue
        out.append((name, text))
        n += b
    return sorted(out)


def rust_fetch_manifest() -> str:
    """A throwaway Cargo.toml whose `cargo fetch` downloads exactly RUST_CRATES."""
    deps = "\n".join(f'{n} = {{ version = "={v}", default-features = false }}' for n, v in RUST_CRATES.items())
    return ('[package]\nname = "moescope-corpus-fetch"\nversion = "0.0.0"\nedition = "2021"\n'
            "publish = false\n\n[dependencies]\n" + deps + "\n")


def crate_files(name: str, version: str) -> dict[str, str] | None:
    """{path inside the crate: text} of the crate's .crate archive in cargo's registry cache."""
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    hits = sorted(glob.glob(str(home / "registry/cache/*" / f"{name}-{version}.crate")))
    if not hits:
        return None
    out = {}
    with tarfile.open(hits[0], "r:gz") as tf:
        for m in tf.getmembers():
            if m.isfile():
                data = tf.extractfile(m).read()
                try:
                    out[m.name.split("/", 1)[1]] = data.decode("utf-8")
                except UnicodeDecodeError:
                    pass
    return out


def collect_code(root: Path, seed: int, sources: dict) -> list[dict]:
    pyroot = root / "usr/lib/python3.11"
    skip_dirs = ("test", "tests", "idlelib", "lib2to3", "encodings", "pydoc_data", "ensurepip",
                 "turtledemo", "site-packages", "dist-packages", "config-3.11")
    py = []
    for f in sorted(glob.glob(str(pyroot / "**/*.py"), recursive=True)):
        rel = os.path.relpath(f, pyroot)
        if any(part in skip_dirs for part in Path(rel).parts[:-1]):
            continue
        t = read_source(f)
        if t:
            py.append((rel, t))
    py = capped_sample(py, CAP_PY, seed)
    docs = [{"text": t, "src": f"python3.11-stdlib:{n}"} for n, t in py]

    rs = []
    crates = {}
    for c, v in RUST_CRATES.items():
        files = crate_files(c, v)
        if files is None:
            raise SystemExit(f"crate {c} {v} is not in cargo's registry cache: run collect_corpus.sh (cargo fetch)")
        lic = re.search(r'^license\s*=\s*"([^"]+)"', files.get("Cargo.toml", ""), flags=re.M)
        lic = lic.group(1) if lic else "?"
        if not RUST_LICENSE_OK.search(lic):
            print(f"warning: crate {c} licence {lic!r} not MIT/Apache; skipped")
            continue
        crates[f"{c}-{v}"] = lic
        for path in sorted(files):
            t = files[path].replace("\r\n", "\n").replace("\t", "    ")
            if path.startswith("src/") and path.endswith(".rs") and t.strip() and len(t.encode()) <= MAX_CODE_FILE:
                rs.append((f"{c}-{v}/{path}", t))
    rs = capped_sample(rs, CAP_RUST, seed + 1)
    docs += [{"text": t, "src": f"rust:{n}"} for n, t in rs]
    used = sorted({n.split("/")[0] for n, _ in rs})
    sources["rust_crates"] = {k: crates[k] for k in used}
    return docs


# ----------------------------------------------------------------------------------- numbers
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]


def gen_numbers_doc(rng: random.Random) -> str:
    kind = rng.choice(["add", "sub", "mul", "div", "table", "seq", "date", "days", "pow", "mixed",
                       "sum", "mod"])
    lines = []
    n = rng.randint(8, 24)
    if kind == "add":
        hi = rng.choice([99, 999, 9999])
        for _ in range(n):
            a, b = rng.randint(0, hi), rng.randint(0, hi)
            lines.append(f"{a} + {b} = {a + b}")
    elif kind == "sub":
        hi = rng.choice([99, 999, 9999])
        for _ in range(n):
            a, b = rng.randint(0, hi), rng.randint(0, hi)
            lines.append(f"{a} - {b} = {a - b}")
    elif kind == "mul":
        op = rng.choice(["*", "x", "×"])
        for _ in range(n):
            a, b = rng.randint(2, rng.choice([12, 99, 999])), rng.randint(2, 99)
            lines.append(f"{a} {op} {b} = {a * b}")
    elif kind == "div":
        for _ in range(n):
            b, q = rng.randint(2, 99), rng.randint(1, 999)
            lines.append(f"{b * q} / {b} = {q}")
    elif kind == "mod":
        for _ in range(n):
            a, b = rng.randint(10, 9999), rng.randint(2, 97)
            lines.append(f"{a} mod {b} = {a % b}")
    elif kind == "table":
        k = rng.randint(2, 19)
        op = rng.choice(["x", "×", "*"])
        lines.append(f"Multiplication table of {k}:")
        for i in range(1, rng.choice([10, 12, 20]) + 1):
            lines.append(f"{k} {op} {i} = {k * i}")
    elif kind == "seq":
        for _ in range(rng.randint(3, 8)):
            start, step = rng.randint(-50, 500), rng.randint(1, 50)
            m = rng.randint(6, 14)
            if rng.random() < 0.25:
                r = rng.randint(2, 5)
                seq = [start if start != 0 else 1]
                for _ in range(m - 1):
                    seq.append(seq[-1] * r)
                seq = seq[:8]
            else:
                seq = [start + i * step for i in range(m)]
            lines.append(", ".join(str(x) for x in seq))
    elif kind == "date":
        base = dt.date(1900, 1, 1)
        for _ in range(n):
            d = base + dt.timedelta(days=rng.randint(0, 200 * 365))
            style = rng.randint(0, 2)
            if style == 0:
                lines.append(f"{d.isoformat()} is a {WEEKDAYS[d.weekday()]}.")
            elif style == 1:
                lines.append(f"{MONTHS[d.month - 1]} {d.day}, {d.year} was a {WEEKDAYS[d.weekday()]}.")
            else:
                lines.append(f"{d.day:02d}/{d.month:02d}/{d.year} -> day {d.timetuple().tm_yday} of {d.year}")
    elif kind == "days":
        base = dt.date(1950, 1, 1)
        for _ in range(n):
            d1 = base + dt.timedelta(days=rng.randint(0, 100 * 365))
            d2 = d1 + dt.timedelta(days=rng.randint(1, 2000))
            lines.append(f"From {d1.isoformat()} to {d2.isoformat()}: {(d2 - d1).days} days.")
    elif kind == "pow":
        for _ in range(n):
            b, e = rng.randint(2, 12), rng.randint(2, 10)
            lines.append(f"{b}^{e} = {b ** e}")
    elif kind == "sum":
        for _ in range(n):
            xs = [rng.randint(1, 999) for _ in range(rng.randint(3, 6))]
            lines.append(f"{' + '.join(map(str, xs))} = {sum(xs)}")
    else:  # mixed expressions with parentheses
        for _ in range(n):
            a, b, c = rng.randint(1, 99), rng.randint(1, 99), rng.randint(2, 20)
            form = rng.randint(0, 2)
            if form == 0:
                lines.append(f"({a} + {b}) * {c} = {(a + b) * c}")
            elif form == 1:
                lines.append(f"{a} * {b} - {c} = {a * b - c}")
            else:
                lines.append(f"({a} - {b}) * {c} = {(a - b) * c}")
    return "\n".join(lines)


def collect_numbers(seed: int) -> list[dict]:
    rng = random.Random(seed + 7)
    docs, n = [], 0
    while n < CAP_NUMBERS:
        t = gen_numbers_doc(rng)
        docs.append({"text": t, "src": "generated:numbers"})
        n += len(t.encode())
    return docs


# ------------------------------------------------------------------------------------- split
def split(docs: list[dict], seed: int, frac: float) -> tuple[list[dict], list[dict]]:
    """Deterministic split by whole documents: sort by (src, sha1(text)), shuffle with the seed."""
    docs = sorted(docs, key=lambda d: (d["src"], hashlib.sha1(d["text"].encode()).hexdigest()))
    idx = list(range(len(docs)))
    random.Random(seed).shuffle(idx)
    k = max(1, round(frac * len(docs)))
    held = set(idx[:k])
    train = [d for i, d in enumerate(docs) if i not in held]
    heldout = [d for i, d in enumerate(docs) if i in held]
    return train, heldout


def deb_versions(debs: Path | None) -> dict[str, str]:
    out = {}
    if debs is None:
        return out
    for f in sorted(debs.glob("*.deb")):
        try:
            name = subprocess.check_output(["dpkg-deb", "-f", str(f), "Package"], text=True).strip()
            ver = subprocess.check_output(["dpkg-deb", "-f", str(f), "Version"], text=True).strip()
            out[name] = ver
        except (OSError, subprocess.CalledProcessError):
            pass
    return out


def stats(docs: list[dict]) -> dict:
    by_src: dict[str, int] = {}
    for d in docs:
        key = d["src"].split(":")[0]
        by_src[key] = by_src.get(key, 0) + len(d["text"].encode())
    return {"docs": len(docs), "bytes": sum(len(d["text"].encode()) for d in docs),
            "chars": sum(len(d["text"]) for d in docs), "bytes_by_source": by_src}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("/"), help="where the Debian packages are unpacked")
    ap.add_argument("--debs", type=Path, default=None, help="folder of the downloaded .deb files (for versions)")
    ap.add_argument("--print-cargo-manifest", action="store_true",
                    help="print the Cargo.toml that fetches the pinned Rust crates, and exit")
    ap.add_argument("--out", type=Path, default=Path("/tmp/moescope-corpus"))
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--heldout-frac", type=float, default=HELDOUT_FRAC)
    args = ap.parse_args()
    if args.print_cargo_manifest:
        print(rust_fetch_manifest(), end="")
        return

    sources: dict = {}
    domains = {
        "english": collect_english(args.root),
        "chinese": collect_chinese(args.root),
        "code": collect_code(args.root, args.seed, sources),
        "numbers": collect_numbers(args.seed),
    }
    (args.out / "train").mkdir(parents=True, exist_ok=True)
    (args.out / "heldout").mkdir(parents=True, exist_ok=True)
    manifest = {
        "seed": args.seed,
        "heldout_frac": args.heldout_frac,
        "split": "whole documents (one fortune, one source file, one help page or ~600-1500 "
                 "characters of consecutive paragraphs, one generated block); sorted by (src, sha1), "
                 "shuffled with random.Random(seed)",
        "debian_packages": {
            name: {"domain": dom, "license": lic, "version": None} for name, (dom, lic) in PACKAGES.items()
        },
        "generated": {"numbers": "collect_corpus.py gen_numbers_doc(), random.Random(seed + 7)"},
        "domains": {},
    }
    for name, ver in deb_versions(args.debs).items():
        if name in manifest["debian_packages"]:
            manifest["debian_packages"][name]["version"] = ver
    manifest["rust_crates"] = sources.get("rust_crates", {})
    for dom, docs in domains.items():
        for d in docs:  # one normal form for all text
            d["text"] = d["text"].replace("\r\n", "\n").strip("\n")
        docs = [d for d in docs if d["text"].strip()]
        train, held = split(docs, args.seed, args.heldout_frac)
        for part, ds in (("train", train), ("heldout", held)):
            with open(args.out / part / f"{dom}.jsonl", "w", encoding="utf-8") as fh:
                for d in ds:
                    fh.write(json.dumps(d, ensure_ascii=False) + "\n")
        manifest["domains"][dom] = {"train": stats(train), "heldout": stats(held)}
        print(f"{dom:8s} train {len(train):6d} docs {manifest['domains'][dom]['train']['bytes']/1e6:6.2f} MB"
              f" | held-out {len(held):5d} docs {manifest['domains'][dom]['heldout']['bytes']/1e6:5.2f} MB")
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}/manifest.json")


if __name__ == "__main__":
    main()
