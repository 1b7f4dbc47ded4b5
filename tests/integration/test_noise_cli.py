"""`kdnmt noise` through the CLI on a slice of the real demo corpus."""

from __future__ import annotations

import lzma
from pathlib import Path

from tests.helpers import no_temp_files, run_cli, write_slice


def _assert_clean_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_noise_cli_on_real_data(tmp_path: Path) -> None:
    prefix = write_slice(tmp_path / "c", "train", 300)
    src = Path(prefix + ".de")
    original = src.read_text(encoding="utf-8").splitlines()
    outputs = {}
    for level in ("0", "moderate", "high"):
        out = tmp_path / f"noisy.{level}.de"
        result = run_cli("noise", "--in", src, "--out", out, "--level", level, "--seed", "4")
        assert result.exit_code == 0, result.output
        assert "300 lines" in result.stdout
        outputs[level] = out.read_text(encoding="utf-8").splitlines()
        assert len(outputs[level]) == len(original)
    assert outputs["0"] == original
    changed = {lvl: sum(a != b for a, b in zip(original, out, strict=True))
               for lvl, out in outputs.items()}
    assert 0 == changed["0"] < changed["moderate"] < changed["high"]
    # same seed: same bytes; the .xz input gives the same output
    packed = tmp_path / "train.de.xz"
    with lzma.open(packed, "wb") as handle:
        handle.write(src.read_bytes())
    again = tmp_path / "again.de"
    result = run_cli("noise", "--in", packed, "--out", again, "--level", "high", "--seed", "4")
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == (tmp_path / "noisy.high.de").read_bytes()
    # an explicit vocabulary: replacements come from it
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("ZZZ\t5\n", encoding="utf-8")
    out = tmp_path / "vocab.de"
    result = run_cli("noise", "--in", src, "--out", out, "--level", "high", "--vocab", vocab)
    assert result.exit_code == 0, result.output
    assert "ZZZ" in out.read_text(encoding="utf-8")
    assert not no_temp_files(tmp_path)


def test_noise_cli_bad_input(tmp_path: Path) -> None:
    prefix = write_slice(tmp_path / "c", "valid", 20)
    src = Path(prefix + ".de")
    out = tmp_path / "out.de"
    _assert_clean_error(run_cli("noise", "--in", src, "--out", out, "--level", "loud"),
                        "'loud' is not one of", "'moderate'")
    _assert_clean_error(run_cli("noise", "--in", tmp_path / "nope.de", "--out", out, "--level",
                                "high"), "does not exist")
    before = src.read_bytes()
    _assert_clean_error(run_cli("noise", "--in", src, "--out", src, "--level", "high"),
                        "is the input file")
    assert src.read_bytes() == before
    bad = tmp_path / "bad.de"
    bad.write_bytes(before + b"kaputt \xc3\x28\n")
    _assert_clean_error(run_cli("noise", "--in", bad, "--out", out, "--level", "high"),
                        "bad.de:21", "invalid UTF-8")
    assert not out.exists()
    assert not no_temp_files(tmp_path)
