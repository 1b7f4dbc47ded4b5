"""The resume rule of the step-keyed CSV logs, and the progress ETA (with a fake clock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdnmt.cli import progress
from kdnmt.metrics import append_row, read_rows, truncate_after


def test_truncate_after_drops_later_and_cut_rows(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    for step in (5, 10, 15, 20):
        append_row(path, ("step", "loss"), {"step": step, "loss": 1.0 / step})
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("25")  # a row cut short by a kill
    assert truncate_after(path, 10) == 3
    assert [r["step"] for r in read_rows(path)] == ["5", "10"]
    assert read_rows(path)[0]["loss"] == "0.2"
    assert truncate_after(path, 10) == 0  # nothing more to drop: the file is not rewritten
    append_row(path, ("step", "loss"), {"step": 15, "loss": None})
    assert read_rows(path)[-1] == {"step": "15", "loss": ""}


def test_truncate_after_leaves_other_files_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("name,step\na,100\n")
    assert truncate_after(path, 0) == 0
    assert path.read_text() == "name,step\na,100\n"
    assert truncate_after(tmp_path / "missing.csv", 0) == 0


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    return now


def test_eta_from_the_rate_of_this_session(clock) -> None:
    eta = progress.Eta(total=100)
    assert eta(10) == "ETA —"  # one sample: no rate yet
    clock[0] += 10
    assert eta(20) == "ETA 1:20"  # 10 steps in 10 s, 80 left
    clock[0] += 3600
    assert eta(30) == "ETA 3:30:35"  # 20 steps in 3,610 s: 70 left x 180.5 s
    assert eta(100) == "ETA 0:00"


def test_eta_is_capped_by_the_time_budget(clock) -> None:
    eta = progress.Eta(total=100_000, budget_seconds=60)
    assert eta(1) == "ETA 1:00 (time budget)"
    clock[0] += 15
    assert eta(11) == "ETA 0:45 (time budget)"  # the steps would take hours
    eta = progress.Eta(total=20, budget_seconds=600)
    eta(0)
    clock[0] += 10
    assert eta(10) == "ETA 0:10"  # the steps end first


def test_plain_display_throttles_lines(clock, capsys) -> None:
    from rich.console import Console

    console = Console(force_terminal=False, width=200)
    with progress.Display(console, every=30) as display:
        task = display.add("stage", total=10)
        for done in range(1, 10):
            clock[0] += 5
            display.update(task, completed=done, info=f"at {done}")
        clock[0] += 1
        display.update(task, completed=10, info="at 10")
        other = display.add("other", total=None)
        display.update(other, completed=3)
        display.update(other, completed=4)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["stage: 1/10 · at 1", "stage: 7/10 · at 7", "stage: 10/10 · at 10",
                     "other: 3", "other: 4"]


def test_terminal_display_draws_bars() -> None:
    import io

    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    with progress.Display(console) as display:
        assert display.live
        task = display.add("train x", total=20, info="starting")
        display.update(task, completed=20, info="loss 1.000 · ETA 0:00")
        display.print("  step 20: valid loss 1.000")
        other = display.add("cells", total=None)
        display.remove(other)
    text = out.getvalue()
    assert "train x" in text and "20/20" in text and "ETA 0:00" in text
    assert "step 20: valid loss 1.000" in text
