"""Nothing assumes German–English: the whole pipeline on the reverse direction of the real
data, and on a synthetic pair with made-up language codes and non-Latin scripts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.helpers import run_cli, write_slice

pytestmark = pytest.mark.slow  # every test here trains or decodes with a trained model

GREEK = "αβγδεζηθικλμνξοπρστυφχψω"
CYRILLIC = "абвгдежзиклмнопрстуфхцчшщ"


def synthetic_pair(dest: Path, lines: int, seed: int) -> str:
    """A toy 'translation': Greek words to Cyrillic words by a fixed letter mapping, with
    word order reversed, so a model can learn it and nothing is English or German."""
    rng = random.Random(seed)
    table = str.maketrans(GREEK, CYRILLIC[: len(GREEK)])
    src, tgt = [], []
    for _ in range(lines):
        words = ["".join(rng.choice(GREEK[:12]) for _ in range(rng.randint(2, 5)))
                 for _ in range(rng.randint(3, 8))]
        src.append(" ".join(words))
        tgt.append(" ".join(w.translate(table) for w in reversed(words)))
    prefix = dest / f"split{seed}"
    (dest / f"split{seed}.el").write_text("\n".join(src) + "\n", encoding="utf-8")
    (dest / f"split{seed}.ru").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    return str(prefix)


def pipeline(run: Path, src: str, tgt: str, train: str, valid: str, test: str,
             config: Path, sentence: str) -> None:
    def ok(*args: object) -> None:
        result = run_cli(*args)
        assert result.exit_code == 0, result.output

    ok("prepare", "--run", run, "--src", src, "--tgt", tgt, "--train", train, "--valid", valid,
       "--test", test, "--vocab-size", "300")
    ok("train", "--run", run, "--name", "teacher", "--preset", "tiny", "--config", config,
       "--steps", "30")
    ok("generate", "--run", run, "--beam", "2", "--soft-targets", "4", "--max-length", "60")
    ok("distill", "--run", run, "--name", "word", "--method", "word", "--config", config,
       "--steps", "20")
    ok("distill", "--run", run, "--name", "seq", "--method", "seq", "--config", config,
       "--steps", "20")
    ok("eval", "--run", run, "--models", "teacher,word,seq", "--beam", "1")
    ok("export", "--run", run, "--model", "word", "--output", run / "out")
    result = run_cli("translate", "--model", run / "out", "--beam", "1", input=sentence + "\n")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 1
    manifest = json.loads((run / "manifest.json").read_text())
    assert (manifest["src"], manifest["tgt"]) == (src, tgt)
    card = json.loads((run / "out" / "kdnmt.json").read_text())
    assert (card["src"], card["tgt"]) == (src, tgt)
    rows = json.loads((run / "reports" / "eval.json").read_text())["results"]
    assert {r["model"] for r in rows} == {"teacher", "word", "seq"}


def test_reverse_direction_en_de(tmp_path: Path, tiny_config: Path) -> None:
    data = tmp_path / "data"
    prefixes = [write_slice(data, split, n) for split, n in
                (("train", 1200), ("valid", 60), ("test", 40))]
    pipeline(tmp_path / "run", "en", "de", *prefixes, tiny_config,
             "The file could not be opened.")


@pytest.mark.parametrize("seed", [1])
def test_synthetic_pair_with_other_scripts(tmp_path: Path, tiny_config: Path, seed: int) -> None:
    data = tmp_path / "data"
    data.mkdir()
    train = synthetic_pair(data, 1500, seed)
    valid = synthetic_pair(data, 60, seed + 100)
    test = synthetic_pair(data, 40, seed + 200)
    pipeline(tmp_path / "run", "el", "ru", train, valid, test, tiny_config, "αβγ δεζ ηθ")
    reports = tmp_path / "run" / "reports"
    row = next(r for r in json.loads((reports / "eval.json").read_text())["results"]
               if r["model"] == "word" and r["beam"] == 1)
    hyps = (reports / row["hypotheses"]).read_text(encoding="utf-8")
    assert not set(hyps) & set("abcdefghijklmnopqrstuvwxyz")  # no Latin leaks in
