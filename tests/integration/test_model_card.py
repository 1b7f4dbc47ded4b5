"""The exported model card: a distilled student's card names its KD method, teacher, data,
licence and the eval rows of exactly the exported checkpoint, and its plain CTranslate2 +
SentencePiece snippet runs (without kdnmt) and translates as `kdnmt translate` does; an
adopted teacher's card says it was adopted instead of printing 'None'."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import assert_clean_error, run_cli

pytestmark = pytest.mark.slow  # every test here trains or decodes with a trained model


def ok(*args: object, input: str | None = None):  # noqa: A002
    result = run_cli(*args, input=input)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def student_run(trained_run: Path, tiny_config: Path, tmp_path_factory) -> Path:
    """The tiny teacher, its pseudo-targets and a seq-KD student 'seq': evaluated at step 20
    on 12 sentences, then trained on to step 30 and evaluated on the whole test split
    against the teacher."""
    run = tmp_path_factory.mktemp("card") / "run"
    shutil.copytree(trained_run, run)
    ok("generate", "--run", run, "--beam", "2", "--max-length", "60")
    args = ("distill", "--run", run, "--name", "seq", "--method", "seq", "--config", tiny_config)
    ok(*args, "--steps", "20")
    ok("eval", "--run", run, "--models", "seq", "--beam", "1", "--limit", "12",
       "--no-teacher-forced")
    ok(*args, "--steps", "30", "--resume")
    ok("eval", "--run", run, "--models", "seq", "--beam", "1,2", "--baseline", "teacher",
       "--bootstrap", "100", "--ar-trials", "100", "--no-teacher-forced")
    return run


def python_block(readme: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) == 1, readme
    return blocks[0]


def run_snippet(code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The card's snippet in a fresh interpreter of this venv where `import kdnmt` fails."""
    script = cwd.parent / "snippet.py"
    script.write_text(code, encoding="utf-8")
    guard = ("import sys; sys.modules['kdnmt'] = None; sys.argv = sys.argv[1:]; "
             "exec(compile(open(sys.argv[0], encoding='utf-8').read(), sys.argv[0], 'exec'))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", guard, str(script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_student_card(student_run: Path, tmp_path: Path) -> None:
    run = student_run
    out = tmp_path / "seq-int8"
    ok("export", "--run", run, "--model", "seq", "--output", out, "--licence", "CC-BY-SA-3.0")
    card = json.loads((out / "kdnmt.json").read_text())
    readme = (out / "README.md").read_text(encoding="utf-8")
    info = json.loads((run / "models" / "seq" / "model.json").read_text())
    teacher = json.loads((run / "models" / "teacher" / "model.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    assert "None" not in readme
    assert "| training | 30 updates, preset `tiny` |" in readme
    assert "| KD method | `seq`: sequence-level KD" in readme
    assert f"| teacher | `teacher` (sha256 {teacher['checkpoint_sha256'][:16]}…) |" in readme
    assert card["kd"]["method"] == "seq" and card["kd"]["teacher"] == "teacher"
    assert card["kd"]["teacher_sha256"] == teacher["checkpoint_sha256"]
    assert "Training targets: pseudo-targets" in readme
    # data and licence
    kept = manifest["splits"]["train"]["kept"]
    assert f"| train | {kept:,} | `train.de` (" in readme
    assert card["data"]["train"]["files"]["en"]["sha256"] == \
        manifest["splits"]["train"]["inputs"]["en"]["sha256"]
    assert str(tmp_path.parent) not in readme  # no path of the exporting machine
    assert "| licence | CC-BY-SA-3.0 |" in readme and card["licence"] == "CC-BY-SA-3.0"
    # only the rows of the exported checkpoint: the 12-sentence row of step 20 is not its score
    rows = json.loads((run / "reports" / "eval.json").read_text())["results"]
    mine = [r for r in rows if r["checkpoint_sha256"] == info["checkpoint_sha256"]]
    assert len(mine) == 2 and any(r["sentences"] == 12 for r in rows)
    assert [(e["sentences"], e["beam"]) for e in card["evaluations"]] == [(60, 1), (60, 2)]
    evaluation = readme.split("## Evaluation")[1].split("## Limitations")[0]
    table = [line for line in evaluation.splitlines() if line.startswith("| prepared")]
    assert len(table) == 2 and all("| 60 |" in line for line in table)
    assert f"| {mine[0]['bleu']:.2f} | {mine[0]['chrf']:.2f} |" in table[0]
    assert "- against teacher, beam 1, 60 sentences: ΔBLEU" in evaluation
    assert "- BLEU: `nrefs:1|" in evaluation and "- chrF: `nrefs:1|" in evaluation
    limitations = readme.split("## Limitations")[1].split("## Use")[0]
    assert f"Trained on {kept:,} de→en pairs only" in limitations
    assert "inherits its errors" in limitations and "int8 weights" in limitations

    # the snippet runs without kdnmt, here and with the directory as argument, and
    # translates the card's sentence as `kdnmt translate` does
    code = python_block(readme)
    assert "kdnmt" not in code and card["smoke"]["source"] in code
    here = run_snippet(code, out)
    assert here.returncode == 0, here.stderr
    elsewhere = run_snippet(code, tmp_path, str(out))
    assert elsewhere.returncode == 0, elsewhere.stderr
    expected = ok("translate", "--model", out, "--beam", "5",
                  input=card["smoke"]["source"] + "\n").stdout
    assert here.stdout == elsewhere.stdout == expected
    assert len(here.stdout.splitlines()) == 1


def test_the_snippet_really_needs_no_kdnmt(tmp_path: Path) -> None:
    """The guard that blocks kdnmt in the snippet's interpreter works (the test above would
    otherwise prove nothing)."""
    probe = run_snippet("import kdnmt\n", tmp_path)
    assert probe.returncode != 0 and "import of kdnmt halted" in probe.stderr, probe.stderr


def test_adopted_teacher_card(trained_run: Path, corpus: dict[str, str], tmp_path: Path) -> None:
    run = tmp_path / "byo"
    source = trained_run / "models" / "teacher"
    ok("prepare", "--run", run, "--src", "de", "--tgt", "en", "--train", corpus["train"],
       "--valid", corpus["valid"], "--test", corpus["test"],
       "--teacher-checkpoint", source / "model_step_40.pt",
       "--teacher-spm", trained_run / "spm.model", "--teacher-vocab", trained_run / "vocab.txt")
    out = tmp_path / "teacher-int8"
    ok("export", "--run", run, "--model", "teacher", "--output", out)
    readme = (out / "README.md").read_text(encoding="utf-8")
    card = json.loads((out / "kdnmt.json").read_text())
    assert "None" not in readme
    assert "| training | adopted: trained outside kdnmt" in readme
    assert card["training"]["adopted"] is True and card["kd"] is None
    assert "its training data is not recorded here" in readme
    assert "Trained outside kdnmt on data this card cannot name" in readme
    assert "Not evaluated: no `kdnmt eval` row of this checkpoint at int8" in readme
    assert "| licence | not stated |" in readme and "Licence: not stated" in readme
    assert card["evaluations"] == []
    result = run_snippet(python_block(readme), out)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 1, result.stderr


@pytest.mark.parametrize("licence", ["", "  ", "two\nlines"])
def test_bad_licence(trained_run: Path, tmp_path: Path, licence: str) -> None:
    out = tmp_path / "out"
    assert_clean_error(run_cli("export", "--run", trained_run, "--model", "teacher",
                               "--output", out, "--licence", licence),
                       "--licence must be one non-empty line")
    assert not out.exists()
