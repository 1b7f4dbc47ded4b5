"""Source noise: deterministic, line-preserving, per-line independent, any script."""

from __future__ import annotations

import difflib
import lzma
from pathlib import Path

import pytest

from kdnmt.corpus.noise import (
    NOISE_LEVELS,
    OPERATIONS,
    NoiseSpec,
    line_rng,
    noise_file,
    noise_line,
    split_units,
    words_of,
)
from kdnmt.errors import KdnmtError

LINES = [
    "Die Datei konnte nicht geöffnet werden , weil sie fehlt .",
    "",
    "Ein kurzer Satz.",
    "   ",
    "Wort",
    "Это предложение написано по-русски и довольно длинное для проверки.",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
    "我们今天去北京参观故宫博物院。",
    "東京はTokyoです。",
    "สวัสดีครับ ยินดีที่ได้รู้จัก",
    "  leading and trailing  spaces\tand a tab  ",
] * 20


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_levels_are_documented_and_ordered() -> None:
    assert list(NOISE_LEVELS) == ["0", "moderate", "high"]
    assert NOISE_LEVELS["0"] == NoiseSpec()
    for op in OPERATIONS:
        assert getattr(NOISE_LEVELS["0"], op) == 0
        assert 0 < getattr(NOISE_LEVELS["moderate"], op) < getattr(NOISE_LEVELS["high"], op)
    with pytest.raises(KdnmtError, match="must be in"):
        NoiseSpec(swap=1.5)


def test_split_units_reconstructs_the_line() -> None:
    for line in LINES:
        prefix, words, gaps, suffix = split_units(line)
        assert prefix + "".join(g + w for g, w in zip(gaps, words, strict=True)) + suffix == line
    assert split_units("我们去")[1] == ["我", "们", "去"]  # no spaces: one character, one word
    assert split_units("สวัสดี")[1] == ["ส", "วั", "ส", "ดี"]  # marks stay on their letter


def test_level_zero_is_identity(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.txt", LINES)
    counts = noise_file(src, tmp_path / "out.txt", "0", seed=3)
    assert (tmp_path / "out.txt").read_bytes() == src.read_bytes()
    assert counts["changed_lines"] == 0 and all(counts[op] == 0 for op in OPERATIONS)


def test_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.txt", LINES)
    noise_file(src, tmp_path / "a.txt", "high", seed=7)
    noise_file(src, tmp_path / "b.txt", "high", seed=7)
    noise_file(src, tmp_path / "c.txt", "high", seed=8)
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()
    assert (tmp_path / "a.txt").read_bytes() != (tmp_path / "c.txt").read_bytes()
    # a pinned line: the same on every machine and Python (sha256 seeding, no hash()).
    first = (tmp_path / "a.txt").read_text(encoding="utf-8").split("\n")[0]
    assert first == noise_line(LINES[0], NOISE_LEVELS["high"], line_rng(7, 1), words_of(LINES))


def test_pinned_output_does_not_drift() -> None:
    vocab = ["alpha", "beta", "gamma"]
    spec = NoiseSpec(word_dropout=0.3, swap=0.3, replace=0.3, char=0.3)
    out = [noise_line("one two three four five six seven eight", spec, line_rng(1, n), vocab)
           for n in range(1, 4)]
    assert out == PINNED, out


PINNED = [
    "oneh two fur three betwa svix eight",
    "ebta gamma five betna six beta",
    "alpha four three six five eight seven",
]


def test_line_count_and_empty_lines_preserved(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.txt", LINES)
    for level in NOISE_LEVELS:
        counts = noise_file(src, tmp_path / f"{level}.txt", level, seed=1)
        out = (tmp_path / f"{level}.txt").read_text(encoding="utf-8").split("\n")
        assert out[-1] == "" and len(out) - 1 == len(LINES) == counts["lines"]
        for before, after in zip(LINES, out, strict=False):
            if not before:
                assert after == ""
            if before.strip():
                assert after.strip(), (before, after)


def test_never_empties_a_line() -> None:
    spec = NoiseSpec(word_dropout=1.0)
    for n in range(50):
        out = noise_line("a b c", spec, line_rng(0, n), [])
        assert out in ("a", "b", "c")
    assert noise_line("Wort", NoiseSpec(word_dropout=1.0, char=1.0), line_rng(0, 1), []) != ""


def test_higher_levels_change_more(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.txt", LINES)
    similarity = {}
    counts = {}
    for level in NOISE_LEVELS:
        counts[level] = noise_file(src, tmp_path / f"{level}.txt", level, seed=1)
        out = (tmp_path / f"{level}.txt").read_text(encoding="utf-8").split("\n")
        similarity[level] = sum(difflib.SequenceMatcher(None, a, b).ratio()
                                for a, b in zip(LINES, out, strict=False)) / len(LINES)
    assert similarity["0"] == 1.0 > similarity["moderate"] > similarity["high"]
    assert 0 == counts["0"]["changed_lines"] < counts["moderate"]["changed_lines"] \
        < counts["high"]["changed_lines"]
    for op in OPERATIONS:
        assert counts["moderate"][op] < counts["high"][op], op


def test_each_line_independent_of_the_others(tmp_path: Path) -> None:
    vocab = words_of(LINES)
    spec = NOISE_LEVELS["high"]
    whole = [noise_line(line, spec, line_rng(5, n), vocab) for n, line in enumerate(LINES, 1)]
    # changing every other line leaves the noise of line i untouched
    altered = [line if n % 2 else "ganz andere Zeile hier" for n, line in enumerate(LINES, 1)]
    src = _write(tmp_path / "in.txt", altered)
    noise_file(src, tmp_path / "out.txt", "high", seed=5, vocabulary=vocab)
    out = (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")
    for n in range(1, len(LINES) + 1, 2):
        assert out[n - 1] == whole[n - 1]


def test_non_latin_scripts_stay_in_script() -> None:
    spec = NoiseSpec(char=1.0)
    for line, low, high in (("我们今天去北京参观故宫博物院。", 0x3000, 0x9FFF),
                            ("Это предложение по-русски", 0x0400, 0x04FF),
                            ("Η γρήγορη καφέ αλεπού", 0x0370, 0x03FF)):
        changed = 0
        for n in range(20):
            out = noise_line(line, spec, line_rng(2, n), [])
            changed += out != line
            assert all(c.isspace() or c in "-" or low <= ord(c) <= high or c in line for c in out)
        assert changed >= 15, line
    # CJK without spaces: word-level operations still act (one character = one word)
    out = noise_line("我们今天去北京参观故宫博物院", NoiseSpec(swap=1.0), line_rng(1, 1), [])
    assert sorted(out) == sorted("我们今天去北京参观故宫博物院") and out != "我们今天去北京参观故宫博物院"


def test_replacement_uses_the_vocabulary() -> None:
    out = noise_line("a b c d", NoiseSpec(replace=1.0), line_rng(1, 1), ["X"])
    assert out == "X X X X"
    assert noise_line("a b", NoiseSpec(replace=1.0), line_rng(1, 1), []) == "a b"


def test_xz_in_and_out(tmp_path: Path) -> None:
    src = tmp_path / "in.txt.xz"
    with lzma.open(src, "wt", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in LINES))
    plain = _write(tmp_path / "in.txt", LINES)
    noise_file(src, tmp_path / "a.txt", "moderate", seed=1)
    noise_file(plain, tmp_path / "b.txt.xz", "moderate", seed=1)
    with lzma.open(tmp_path / "b.txt.xz", "rb") as handle:
        assert handle.read() == (tmp_path / "a.txt").read_bytes()


def test_bad_inputs(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.txt", LINES)
    with pytest.raises(KdnmtError, match="unknown noise level 'loud'.*moderate"):
        noise_file(src, tmp_path / "o.txt", "loud", seed=1)
    with pytest.raises(KdnmtError, match="is the input file"):
        noise_file(src, src, "high", seed=1)
    with pytest.raises(KdnmtError, match="does not exist"):
        noise_file(tmp_path / "missing.txt", tmp_path / "o.txt", "high", seed=1)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\nbad \xff here\n")
    with pytest.raises(KdnmtError, match=r"bad.txt:2: invalid UTF-8"):
        noise_file(bad, tmp_path / "o.txt", "high", seed=1)
    assert not (tmp_path / "o.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".kdnmt-tmp")]
