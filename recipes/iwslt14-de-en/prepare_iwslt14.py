"""Prepare IWSLT14 German-English with the standard splits of fairseq's
`examples/translation/prepare-iwslt14.sh`, as plain text for `kdnmt prepare`.

    python recipes/iwslt14-de-en/prepare_iwslt14.py --archive de-en.tgz --out data/iwslt14

Same splits as fairseq: the training talks (``train.tags.de-en.*``, metadata lines dropped,
title/description tags stripped), validation = every 23rd pair of them, test = TED dev2010 +
TEDX dev2012 + TED tst2010-2012 (``<seg>`` lines of the XML files). Unlike fairseq, the text is
left untokenized and cased: kdnmt tokenizes with SentencePiece and scores detokenized output with
sacrebleu, so BLEU here is not comparable to tokenized, lowercased fairseq figures.
"""

from __future__ import annotations

import argparse
import re
import tarfile
from pathlib import Path

#: Metadata lines of the training files (fairseq drops lines containing these).
META_TAGS = ("<url>", "<talkid>", "<keywords>", "<speaker>", "<reviewer", "<translator")
STRIP_TAGS = re.compile(r"</?(title|description)>")
SEG = re.compile(r'^\s*<seg id="?\d+"?>\s*(.*?)\s*</seg>\s*$')
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010",
             "IWSLT14.TED.tst2011", "IWSLT14.TED.tst2012")
VALID_EVERY = 23


def train_lines(text: str) -> list[str]:
    """The sentences of a ``train.tags`` file: metadata dropped, title/description unwrapped."""
    return [STRIP_TAGS.sub("", line).strip() for line in text.splitlines()
            if not any(tag in line for tag in META_TAGS)]


def xml_segments(text: str) -> list[str]:
    """The ``<seg>`` sentences of an IWSLT XML file, with fairseq's quote normalisation."""
    return [m.group(1).replace("\u2019", "'") for m in map(SEG.match, text.splitlines()) if m]


def split_train(src: list[str], tgt: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    """fairseq: pair number n (1-based) goes to valid when n % 23 == 0, otherwise to train."""
    if len(src) != len(tgt):
        raise SystemExit(f"error: train.tags files differ in length ({len(src)} vs {len(tgt)})")
    pairs = list(zip(src, tgt, strict=True))
    valid = [p for n, p in enumerate(pairs, 1) if n % VALID_EVERY == 0]
    train = [p for n, p in enumerate(pairs, 1) if n % VALID_EVERY != 0]
    return {"train": ([s for s, _ in train], [t for _, t in train]),
            "valid": ([s for s, _ in valid], [t for _, t in valid])}


def prepare(files: dict[str, str], out: Path, src: str = "de", tgt: str = "en") -> dict[str, int]:
    """``files``: member base name -> text. Writes SPLIT.SRC/SPLIT.TGT into ``out``."""
    pair = f"{src}-{tgt}" if f"train.tags.{src}-{tgt}.{src}" in files else f"{tgt}-{src}"
    splits = split_train(train_lines(files[f"train.tags.{pair}.{src}"]),
                         train_lines(files[f"train.tags.{pair}.{tgt}"]))
    test_src: list[str] = []
    test_tgt: list[str] = []
    for name in TEST_SETS:
        s = xml_segments(files[f"{name}.{pair}.{src}.xml"])
        t = xml_segments(files[f"{name}.{pair}.{tgt}.xml"])
        if len(s) != len(t):
            raise SystemExit(f"error: {name} has {len(s)} {src} and {len(t)} {tgt} segments")
        test_src += s
        test_tgt += t
    splits["test"] = (test_src, test_tgt)
    out.mkdir(parents=True, exist_ok=True)
    for split, (s, t) in splits.items():
        for lang, lines in ((src, s), (tgt, t)):
            (out / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {split: len(s) for split, (s, _) in splits.items()}


def read_archive(path: Path) -> dict[str, str]:
    with tarfile.open(path) as tar:
        return {Path(m.name).name: tar.extractfile(m).read().decode("utf-8")  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, required=True, help="de-en.tgz")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    counts = prepare(read_archive(args.archive), args.out)
    print(", ".join(f"{k} {v:,} pairs" for k, v in counts.items()), f"-> {args.out}")


if __name__ == "__main__":
    main()
