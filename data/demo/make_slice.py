"""Rebuild the demo slice in data/demo/de-en from the full corpus (../shared/data/de-en).

Deterministic: 40,000 training pairs sampled with a fixed seed, the first 1,000 validation
pairs, and every other test pair (so both halves of the test set, Ding examples and GNOME help,
are represented). Usage: python data/demo/make_slice.py ../shared/data/de-en data/demo/de-en
"""

from __future__ import annotations

import lzma
import random
import sys
from pathlib import Path


def read(path: Path) -> list[str]:
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.read().split("\n")[:-1]


def write_xz(path: Path, lines: list[str]) -> None:
    with lzma.open(path, "wt", encoding="utf-8", preset=9) as handle:
        handle.writelines(line + "\n" for line in lines)


def main(source: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    train = {lang: read(source / f"train.{lang}.xz") for lang in ("de", "en")}
    meta = read(source / "train.meta.tsv.xz")
    rng = random.Random(20261123)
    picked = sorted(rng.sample(range(len(train["de"])), 40_000))
    for lang in ("de", "en"):
        write_xz(dest / f"train.{lang}.xz", [train[lang][i] for i in picked])
        write_xz(dest / f"valid.{lang}.xz", read(source / f"valid.{lang}")[:1000])
        write_xz(dest / f"test.{lang}.xz", read(source / f"test.{lang}")[::2])
    write_xz(dest / "train.meta.tsv.xz", [meta[i] for i in picked])
    write_xz(dest / "valid.meta.tsv.xz", read(source / "valid.meta.tsv")[:1000])
    write_xz(dest / "test.meta.tsv.xz", read(source / "test.meta.tsv")[::2])


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
