"""`kdnmt eval`'s report is keyed by what was evaluated: a cut test set, another test set or
an older report never replaces or overwrites another evaluation; source tokens/s; the
quality-vs-speed plot; BLEU with the target language's tokenizer (Chinese, Japanese)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU

from kdnmt.fileio import sha256_file
from tests.helpers import assert_clean_error, no_temp_files, run_cli, write_slice


def rows_of(run: Path) -> list[dict]:
    return json.loads((run / "reports" / "eval.json").read_text())["results"]


def ok(*args: object) -> None:
    result = run_cli(*args)
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_rows_and_hypotheses_are_keyed_by_test_set_and_size(trained_run: Path, copy_run,
                                                            tmp_path: Path) -> None:
    run = copy_run(trained_run)
    ok("eval", "--run", run, "--models", "teacher", "--beam", "1", "--no-teacher-forced")
    full = rows_of(run)[0]
    full_file = run / "reports" / full["hypotheses"]
    full_sha = sha256_file(full_file)
    # a cut test set is another row, with its own file; the full row and file stay
    ok("eval", "--run", run, "--models", "teacher", "--beam", "1", "--no-teacher-forced",
       "--limit", "12")
    # another test set: its own row and directory of hypotheses
    other = write_slice(tmp_path / "other", "test", 25, start=200)
    ok("eval", "--run", run, "--models", "teacher", "--beam", "1", "--no-teacher-forced",
       "--test", other)
    rows = rows_of(run)
    assert [r["sentences"] for r in rows] == [60, 12, 25]
    assert rows[0] == full
    assert sha256_file(full_file) == full_sha
    files = [run / "reports" / r["hypotheses"] for r in rows]
    assert len(set(files)) == 3
    assert [len(f.read_text().splitlines()) for f in files] == [60, 12, 25]
    assert rows[0]["test_id"] == rows[1]["test_id"] != rows[2]["test_id"]
    assert rows[2]["test_source_sha256"] == sha256_file(Path(other + ".de"))
    assert rows[2]["test_reference_sha256"] == sha256_file(Path(other + ".en"))
    for row in rows:
        assert row["checkpoint_sha256"] == json.loads(
            (run / "models" / "teacher" / "model.json").read_text())["checkpoint_sha256"]
        assert row["hypotheses_sha256"] == sha256_file(run / "reports" / row["hypotheses"])
    md = (run / "reports" / "eval.md").read_text()
    assert "| sents |" in md
    for n in (60, 12, 25):
        assert f"| teacher | teacher | 1 | {n} |" in md
    # the same evaluation again replaces its own row only
    ok("eval", "--run", run, "--models", "teacher", "--beam", "1", "--no-teacher-forced",
       "--limit", "12")
    assert [r["sentences"] for r in rows_of(run)] == [60, 25, 12]
    assert not no_temp_files(run)


@pytest.mark.slow
def test_source_speed_and_plot(trained_run: Path, copy_run) -> None:
    run = copy_run(trained_run)
    ok("eval", "--run", run, "--models", "teacher", "--beam", "1,2", "--no-teacher-forced")
    pieces = (run / "data" / "test.sp.de").read_text().splitlines()
    for row in rows_of(run):
        assert row["source_tokens"] == sum(len(line.split()) for line in pieces)
        assert row["output_tokens"] > 0
        assert row["source_tokens_per_second"] == pytest.approx(
            row["source_tokens"] / row["seconds"], rel=0.01)
        assert row["tokens_per_second"] == pytest.approx(
            row["output_tokens"] / row["seconds"], rel=0.01)
        assert row["sentences_per_second"] == pytest.approx(60 / row["seconds"], rel=0.01)
    plot = run / "reports" / "eval.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5_000
    md = (run / "reports" / "eval.md").read_text()
    assert "](eval.png)" in md and "| src tok/s | out tok/s |" in md
    assert "- BLEU: `nrefs:1|" in md and "- chrF: `nrefs:1|" in md and "- TER: `nrefs:1|" in md


def old_row(model: str, test: str, step: int) -> dict:
    """A row as kdnmt wrote it before rows were keyed by checkpoint and test checksums."""
    return {"model": model, "role": "teacher", "beam": 1, "quantization": "int8", "bleu": 1.5,
            "bleu_signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
            "chrf": 9.5, "chrf_signature": "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|"
            "version:2.6.0", "ter": 99.0, "ter_signature": "nrefs:1|case:lc|tok:tercom|norm:no|"
            "punct:yes|asian:no|version:2.6.0", "sentences": 60, "seconds": 0.5,
            "tokens_per_second": 900.0, "parameters": 37560, "size_bytes": 700000,
            "step": step, "test": test, "threads": 2, "hypotheses": f"{model}.beam1.en",
            "date": "2024-01-01T00:00:00+00:00"}


@pytest.mark.slow
def test_a_report_of_the_previous_format_still_loads(trained_run: Path, copy_run) -> None:
    run = copy_run(trained_run)
    label = f"prepared test split (sha256 {sha256_file(run / 'data' / 'test.de')[:12]})"
    (run / "reports").mkdir()
    (run / "reports" / "teacher.beam1.en").write_text("old\n")
    (run / "reports" / "eval.json").write_text(json.dumps(
        {"results": [old_row("teacher", label, 40), old_row("gone", label, 7)]}))
    ok("eval", "--run", run, "--models", "teacher", "--beam", "1", "--no-teacher-forced")
    rows = rows_of(run)
    # the old row of the same model, beam, test, size and step is replaced; the other kept
    assert [(r["model"], "checkpoint_sha256" in r) for r in rows] == [("gone", False),
                                                                      ("teacher", True)]
    assert json.loads((run / "reports" / "eval.json").read_text())["format"] == 2
    assert (run / "reports" / "teacher.beam1.en").read_text() == "old\n"
    md = (run / "reports" / "eval.md").read_text()
    assert "| gone | teacher | 1 | 60 | 1.50 |" in md


@pytest.mark.slow
@pytest.mark.parametrize("content, needle", [
    ("{not json", "is corrupt (not valid JSON)"),
    ('{"rows": []}', "is not a kdnmt eval report"),
    ('{"format": 9, "results": []}', "written by a newer kdnmt"),
])
def test_a_damaged_report_is_refused_before_decoding(trained_run: Path, copy_run,
                                                     content: str, needle: str) -> None:
    run = copy_run(trained_run)
    (run / "reports").mkdir()
    (run / "reports" / "eval.json").write_text(content)
    assert_clean_error(run_cli("eval", "--run", run, "--models", "teacher", "--beam", "1"),
                       "eval.json", needle)
    assert (run / "reports" / "eval.json").read_text() == content
    assert sorted(p.name for p in (run / "reports").iterdir()) == ["eval.json"]


# -- target languages with their own BLEU tokenizer ------------------------------------------

GREEK = "αβγδεζηθικλμ"
HANZI = "的一是不了人我在有他这中"


def greek_to(dest: Path, lines: int, seed: int, lang: str) -> str:
    """Greek words to Chinese characters, letter by letter, written without spaces as
    Chinese and Japanese are: a toy pair a tiny model can start to learn."""
    rng = random.Random(seed)
    table = str.maketrans(GREEK, HANZI)
    src, tgt = [], []
    for _ in range(lines):
        words = ["".join(rng.choice(GREEK) for _ in range(rng.randint(2, 4)))
                 for _ in range(rng.randint(2, 6))]
        src.append(" ".join(words))
        tgt.append("".join(w.translate(table) for w in words) + "。")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"s{seed}.el").write_text("\n".join(src) + "\n", encoding="utf-8")
    (dest / f"s{seed}.{lang}").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    return str(dest / f"s{seed}")


def prepare_toy(run: Path, data: Path, lang: str) -> None:
    prefixes = [greek_to(data, n, seed, lang) for n, seed in ((1200, 1), (40, 2), (30, 3))]
    ok("prepare", "--run", run, "--src", "el", "--tgt", lang, "--train", prefixes[0],
       "--valid", prefixes[1], "--test", prefixes[2], "--vocab-size", "200")


@pytest.mark.slow
def test_chinese_target_bleu_uses_the_zh_tokenizer(tmp_path: Path, tiny_config: Path) -> None:
    run = tmp_path / "run"
    prepare_toy(run, tmp_path / "data", "zh")
    ok("train", "--run", run, "--name", "teacher", "--preset", "tiny", "--config", tiny_config,
       "--steps", "20")
    ok("eval", "--run", run, "--models", "teacher", "--beam", "1", "--no-teacher-forced")
    ok("eval", "--run", run, "--models", "teacher", "--beam", "2", "--no-teacher-forced",
       "--bleu-tokenize", "char")
    by_beam = {r["beam"]: r for r in rows_of(run)}
    assert "|tok:zh|" in by_beam[1]["bleu_signature"]
    assert "|tok:char|" in by_beam[2]["bleu_signature"]
    references = (run / "data" / "test.zh").read_text(encoding="utf-8").splitlines()
    for beam, tokenize in ((1, "zh"), (2, "char")):
        hyps = (run / "reports" / by_beam[beam]["hypotheses"]).read_text(
            encoding="utf-8").splitlines()
        expected = BLEU(tokenize=tokenize).corpus_score(hyps, [references]).score
        assert by_beam[beam]["bleu"] == round(expected, 2)
        if beam == 1:  # the tokenizer matters: 13a sees one word per unspaced sentence
            assert by_beam[1]["bleu"] > 0
            spaced = BLEU(tokenize="13a").corpus_score(hyps, [references]).score
            assert round(spaced, 2) != by_beam[1]["bleu"]
    md = (run / "reports" / "eval.md").read_text(encoding="utf-8")
    assert "|tok:zh|" in md and "|tok:char|" in md
    assert_clean_error(run_cli("eval", "--run", run, "--models", "teacher", "--beam", "1",
                               "--bleu-tokenize", "nope"), "--bleu-tokenize must be one of")


def _mecab_missing() -> bool:
    try:
        BLEU(trg_lang="ja")
    except RuntimeError:
        return True
    return False


@pytest.mark.slow
@pytest.mark.skipif(not _mecab_missing(), reason="sacrebleu's Japanese tokenizer is installed")
def test_japanese_target_without_mecab_is_one_clear_line(tmp_path: Path) -> None:
    """BLEU on Japanese needs MeCab (sacrebleu[ja]); without it eval stops before decoding
    with the fix, instead of scoring with a tokenizer that cannot split Japanese."""
    run = tmp_path / "run"
    prepare_toy(run, tmp_path / "data", "ja")
    shutil.rmtree(run / "reports", ignore_errors=True)
    assert_clean_error(run_cli("eval", "--run", run, "--models", "teacher", "--beam", "1"),
                       "target language 'ja'", "sacrebleu[ja]", "--bleu-tokenize")
    assert not (run / "reports").exists()
