"""The outputs of `kdnmt study`: ``study.csv``, ``study.md`` and the plots.

Everything here is read back from the run directories (``model.json``, ``reports/eval.json``,
``kd_stats.csv`` and the study's own small state files), never from memory: the reports of a
study spread over several sessions, or stopped with ``--max-cells``, are the same as those of
one uninterrupted run, and rewriting them is cheap.

The paper's quantity is Δ(sentence − token) = BLEU(seq) − BLEU(word) per scenario (student size,
noise level, decoding): positive where sentence-level KD wins. Wei et al. expect it to grow as
the scenario gets more complex (a smaller student, noisier text, beam search rather than
greedy decoding or teacher forcing).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kdnmt.fileio import atomic_open, write_text
from kdnmt.rundir import RunDir
from kdnmt.study.grid import GridSpec, decoding_name
from kdnmt.study.layout import (
    TEACHER,
    Cell,
    StudyDir,
    cells_of,
    eval_rows,
    index_rows,
    params_text,
    read_json,
    size_order,
)
from kdnmt.study.plots import plot_bleu_vs_noise, plot_bleu_vs_size, plot_hybrid_gate

CSV_COLUMNS = ("noise", "size", "method", "decoding", "beam", "bleu", "chrf", "ter",
               "tf_accuracy", "tf_perplexity", "steps", "minutes", "params", "time_budget_hit",
               "model")
#: The methods `kdnmt advise` chooses between, and the ones the Δ compares.
ADVISED = ("word", "seq", "hybrid")


def _row_for(rows: list[dict[str, Any]], name: str, beam: int, step: Any) -> dict[str, Any] | None:
    found = [r for r in rows if r.get("model") == name and r.get("beam") == beam
             and r.get("step") == step]
    return found[-1] if found else None


def collect(spec: GridSpec, root: Path) -> list[dict[str, Any]]:
    """One row per (noise, size, method, decoding) that is trained and evaluated, plus the
    teacher's rows per noise level (size and method 'teacher')."""
    out: list[dict[str, Any]] = []
    for level in spec.noise:
        run = RunDir(StudyDir(root).noise_run(level))
        rows = eval_rows(run.root)
        if not rows:
            continue
        models: list[tuple[str, str, str, Cell | None]] = [(TEACHER, TEACHER, TEACHER, None)]
        models += [(c.size, c.method, c.name, c) for c in cells_of(spec) if c.noise == level]
        for size, method, name, cell in models:
            info = read_json(run.model_info_path(name))
            if not isinstance(info, dict):
                continue
            state = read_json(StudyDir(root).cell_state(cell)) if cell else None
            seconds = state.get("seconds") if isinstance(state, dict) else None
            for beam in spec.beams:
                row = _row_for(rows, name, beam, info.get("step"))
                if row is None:
                    continue
                out.append({
                    "noise": level, "size": size, "method": method,
                    "decoding": decoding_name(beam), "beam": beam,
                    "bleu": row.get("bleu"), "chrf": row.get("chrf"), "ter": row.get("ter"),
                    "tf_accuracy": row.get("tf_accuracy"),
                    "tf_perplexity": row.get("tf_perplexity"),
                    "steps": info.get("step"),
                    "minutes": round(seconds / 60.0, 2) if seconds is not None else None,
                    "params": info.get("parameters"),
                    "time_budget_hit": info.get("stopped_by_time_budget"),
                    "model": f"{run.root.name}/models/{name}",
                })
    return out


def write_csv(rows: list[dict[str, Any]], dest: Path) -> None:
    with atomic_open(dest) as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_COLUMNS})


# -- markdown -------------------------------------------------------------------------------

def _num(value: Any, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _table(header: list[str], body: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def _best(index: dict[tuple[str, str, str, str], dict[str, Any]], level: str, size: str,
          decoding: str, methods: Iterable[str]) -> tuple[list[str], float | None]:
    """The methods with the highest BLEU in a scenario (ties: all of them)."""
    scores = {m: index[(level, size, m, decoding)]["bleu"] for m in methods
              if (level, size, m, decoding) in index
              and index[(level, size, m, decoding)].get("bleu") is not None}
    if not scores:
        return [], None
    top = max(scores.values())
    return [m for m, s in scores.items() if s == top], top


def markdown(spec: GridSpec, root: Path, rows: list[dict[str, Any]],
             plots: dict[str, Path]) -> str:
    index = index_rows(rows)
    sizes = size_order(spec, rows)
    decodings = list(spec.decoding)
    total = len(cells_of(spec))
    finished = {(r["noise"], r["size"], r["method"]) for r in rows if r["method"] != TEACHER}
    teacher = (f"adopted from `{spec.teacher.checkpoint}`" if spec.teacher.train is None else
               f"trained in the study (`{spec.teacher.train.preset}`, "
               f"{spec.teacher.train.steps} steps, `teacher/`)")
    budget = f"{spec.budget.steps} updates" + (
        f", at most {spec.budget.max_minutes:g} min" if spec.budget.max_minutes else "")
    lines = [
        "# Study: token-level vs sentence-level knowledge distillation", "",
        f"Grid `{spec.path}` ({spec.src} → {spec.tgt}): sizes {', '.join(spec.sizes)}; "
        f"noise {', '.join(spec.noise)}; methods {', '.join(spec.methods)}; decoding "
        f"{', '.join(decodings)}; budget {budget} per student; seed {spec.seed}.",
        f"Teacher: {teacher}. Finished cells: {len(finished)} of {total}.", "",
        "BLEU and chrF by sacrebleu on detokenized CTranslate2 (int8) output of each noise "
        "level's test split (noise on its source side); tf acc / tf ppl: teacher-forced token "
        "accuracy and perplexity on the same pairs (\"—\" where `kdnmt eval` does not provide "
        "them). Minutes: wall-clock of a student's training; `*`: stopped by the time budget "
        "before its steps.", "",
    ]
    teacher_rows = [lvl for lvl in spec.noise if any((lvl, TEACHER, TEACHER, d) in index
                                                    for d in decodings)]
    if teacher_rows:
        lines += ["## Teacher per noise level", ""]
        header = ["noise", *(f"BLEU {d}" for d in decodings), "tf acc", "tf ppl"]
        body = []
        for lvl in teacher_rows:
            got = [index.get((lvl, TEACHER, TEACHER, d)) for d in decodings]
            first = next(r for r in got if r)
            body.append([lvl, *(_num(r["bleu"]) if r else "—" for r in got),
                         _pct(first.get("tf_accuracy")), _num(first.get("tf_perplexity"))])
        lines += _table(header, body) + [""]

    lines += ["## Scenarios", ""]
    for level in spec.noise:
        for size in sizes:
            present = [m for m in spec.methods if (level, size, m) in finished]
            if not present:
                continue
            params = next((index[(level, size, m, d)]["params"] for m in present
                           for d in decodings if (level, size, m, d) in index), None)
            lines += [f"### noise {level}, size {size} ({params_text(params)} parameters)", ""]
            header = ["method", *(f"BLEU {d}" for d in decodings),
                      *(f"chrF {d}" for d in decodings), "tf acc", "tf ppl", "steps", "minutes"]
            body = []
            for method in present:
                got = [index.get((level, size, method, d)) for d in decodings]
                first = next(r for r in got if r)
                star = "*" if first.get("time_budget_hit") else ""
                body.append([method, *(_num(r["bleu"]) if r else "—" for r in got),
                             *(_num(r["chrf"]) if r else "—" for r in got),
                             _pct(first.get("tf_accuracy")), _num(first.get("tf_perplexity")),
                             f"{first.get('steps')}{star}", _num(first.get("minutes"), 1)])
            lines += _table(header, body) + [""]

    lines += ["## Δ(sentence − token) = BLEU(seq) − BLEU(word)", "",
              "Positive: sentence-level KD ahead. Wei et al. (2024) expect Δ to grow with the "
              "complexity of the scenario: smaller students, more noise, beam search. The "
              "teacher-forced column compares tf accuracy instead (percentage points).", ""]
    if {"word", "seq"} <= set(spec.methods):
        body = []
        for size in sizes:
            for level in spec.noise:
                deltas = []
                for d in decodings:
                    seq, word = index.get((level, size, "seq", d)), index.get((level, size, "word", d))
                    deltas.append(_num(seq["bleu"] - word["bleu"], signed=True)
                                  if seq and word else "—")
                seq = next((index[(level, size, "seq", d)] for d in decodings
                            if (level, size, "seq", d) in index), None)
                word = next((index[(level, size, "word", d)] for d in decodings
                             if (level, size, "word", d) in index), None)
                tf = "—"
                if seq and word and seq.get("tf_accuracy") is not None \
                        and word.get("tf_accuracy") is not None:
                    tf = _num(100 * (seq["tf_accuracy"] - word["tf_accuracy"]), 1, signed=True)
                if any(x != "—" for x in deltas) or tf != "—":
                    body.append([size, level, tf, *deltas])
        lines += _table(["size", "noise", "teacher-forced (tf acc)",
                         *(f"Δ BLEU {d}" for d in decodings)], body) if body else \
            ["No scenario has both a finished `word` and a finished `seq` cell yet."]
    else:
        lines += ["The grid does not run both `word` and `seq`: no Δ."]
    lines += [""]

    if "hybrid" in spec.methods and ({"word", "seq"} & set(spec.methods)):
        lines += ["## Hybrid vs the best of word and seq", ""]
        body = []
        pair = [m for m in ("word", "seq") if m in spec.methods]
        for size in sizes:
            for level in spec.noise:
                for d in decodings:
                    hybrid = index.get((level, size, "hybrid", d))
                    best, top = _best(index, level, size, d, pair)
                    if hybrid is None or top is None:
                        continue
                    scores = [_num(index[(level, size, m, d)]["bleu"])
                              if (level, size, m, d) in index else "—" for m in pair]
                    body.append([size, level, d, _num(hybrid["bleu"]), *scores,
                                 _num(hybrid["bleu"] - top, signed=True)])
        lines += _table(["size", "noise", "decoding", "hybrid", *pair, "hybrid − best"], body) \
            if body else ["No scenario has a finished `hybrid` cell beside `word` or `seq` yet."]
        lines += [""]

    lines += _advice_section(spec, root, index, sizes)
    lines += ["## Plots", ""]
    titles = {"bleu_vs_size": "BLEU vs student size, per method",
              "bleu_vs_noise": "BLEU vs noise level, per method",
              "hybrid_gate": "The hybrid gate's mean over training"}
    for key, title in titles.items():
        if key in plots:
            lines.append(f"![{title}](plots/{plots[key].name})")
        elif key == "hybrid_gate" and "hybrid" not in spec.methods:
            lines.append(f"- {title}: the grid has no `hybrid` cell.")
        else:
            lines.append(f"- {title}: no data yet.")
    lines += [""]
    return "\n".join(lines)


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _advice_section(spec: GridSpec, root: Path, index: dict[tuple[str, str, str, str], Any],
                    sizes: list[str]) -> list[str]:
    """How often `kdnmt advise`, run before training, named the method that then won."""
    advised: dict[tuple[str, str], dict[str, Any]] = {}
    for level in spec.noise:
        for size in sizes:
            data = read_json(StudyDir(root).advice_cache(level, spec.preset_of(size)))
            if isinstance(data, dict):
                advised[(level, size)] = data
    if not advised:
        return []
    candidates = [m for m in ADVISED if m in spec.methods]
    decodings = list(spec.decoding)
    lines = ["## Advice vs the measured best", "",
             f"`kdnmt advise` per noise level and student preset, before training; best = the "
             f"highest BLEU among {', '.join(candidates) or 'none of word, seq, hybrid'} in "
             "the scenario (ties: each counts). Advice measures the preset's shape, not a "
             "`students:` override.", ""]
    agree = dict.fromkeys(decodings, 0)
    counted = dict.fromkeys(decodings, 0)
    body = []
    for (level, size), data in advised.items():
        method = data.get("method")
        cells = []
        for d in decodings:
            best, _ = _best(index, level, size, d, candidates)
            if not best:
                cells.append("—")
                continue
            if method in candidates:
                counted[d] += 1
                agree[d] += method in best
            cells.append("/".join(best))
        shown = method or f"error: {data.get('error', '?')}"
        body.append([size, level, str(shown), str(data.get("scenario", "—")), *cells])
    lines += _table(["size", "noise", "advised", "scenario", *(f"best {d}" for d in decodings)],
                    body)
    lines += [""]
    for d in decodings:
        if counted[d]:
            lines.append(f"- {d}: the advice named the best method in {agree[d]} of "
                         f"{counted[d]} scenarios.")
    if not any(counted.values()):
        lines.append("- No scenario has finished cells of the advised method yet.")
    return lines + [""]


def write_reports(spec: GridSpec, root: Path) -> dict[str, Path]:
    """Write ``study.csv``, the plots and ``study.md`` (in that order: the markdown links the
    plots that exist); returns what was written."""
    root = Path(root)
    rows = collect(spec, root)
    outputs: dict[str, Path] = {"csv": root / "study.csv"}
    write_csv(rows, outputs["csv"])
    plots: dict[str, Path] = {}
    plot_dir = root / "plots"
    for key, made in (
            ("bleu_vs_size", plot_bleu_vs_size(spec, rows, plot_dir / "bleu_vs_size.png")),
            ("bleu_vs_noise", plot_bleu_vs_noise(spec, rows, plot_dir / "bleu_vs_noise.png")),
            ("hybrid_gate", plot_hybrid_gate(spec, root, plot_dir / "hybrid_gate.png"))):
        if made is not None:
            plots[key] = made
    outputs["markdown"] = root / "study.md"
    write_text(outputs["markdown"], markdown(spec, root, rows, plots))
    outputs.update(plots)
    return outputs
