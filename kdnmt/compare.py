"""`kdnmt compare`: paired significance between any two evaluated models, from their hypotheses.

`kdnmt eval --baseline ce` answers "what does each method add over ce?". The next questions a
study asks are between methods ("is hybrid ahead of seq?", "is the best student really better
than the runner-up?"), and they need the same paired tests between other pairs. Decoding again
is not needed: eval already wrote every model's translations (``reports/hypotheses``) and
recorded their sha256, so `compare` reads them back, checks they are the files eval scored (the
sha256, and the BLEU rescored from them equals the row's), and runs the same tests
(:func:`kdnmt.significance.compare`) on every pair of the models named, in order:
``--models A,B,C`` gives A − B, A − C and B − C.

Each model's row is its latest eval on the test set (the run's prepared test split, or
``--test PREFIX`` as for eval), at each beam size all of them were decoded with, in the
setting (sentence count, quantization, device) all of them share that was evaluated last: a
later quick ``eval --limit 50`` of one model does not hide the full-test rows of all of them.
Results go to ``reports/compare.json`` (merged across calls: a newer comparison of the same
ordered pair on the same test and setting replaces the older) and ``reports/compare.md``.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from kdnmt.errors import KdnmtError, check
from kdnmt.eval_report import at_step, delta_cell, device_key, load_rows, p_cell
from kdnmt.evaluate import MIN_RESAMPLES, TestSet, metric_factory, read_test
from kdnmt.fileio import sha256_file, write_json, write_text
from kdnmt.rundir import RunDir, check_name
from kdnmt.significance import AR_DEFAULT, BOOTSTRAP_DEFAULT, PairedSettings, compare, verdict

#: compare.json layout version.
FORMAT = 1


@dataclass
class CompareOptions:
    run: Path
    models: list[str]
    test: str | None = None
    #: Beam sizes to compare at; None: every beam size all the models were evaluated with.
    beams: tuple[int, ...] | None = None
    bootstrap: int = BOOTSTRAP_DEFAULT
    ar_trials: int = AR_DEFAULT


def _check_options(opts: CompareOptions) -> list[str]:
    names = list(dict.fromkeys(opts.models))
    for name in names:
        check_name(name)
    check(len(names) >= 2, "--models needs at least two different models to compare")
    check(opts.bootstrap >= MIN_RESAMPLES,
          f"--bootstrap must be >= {MIN_RESAMPLES}, got {opts.bootstrap}")
    check(opts.ar_trials >= MIN_RESAMPLES,
          f"--ar-trials must be >= {MIN_RESAMPLES}, got {opts.ar_trials}")
    return names


def latest_rows(rows: list[dict[str, Any]], names: list[str], test: TestSet,
                beams: tuple[int, ...] | None) -> dict[int, dict[str, dict[str, Any]]]:
    """beam -> model -> that model's latest eval row on ``test`` at that beam, in the setting
    (:func:`_row_setting`) all the models share that was evaluated last; for the beams where
    every model has such a row (or exactly ``beams``). One clear error naming what is missing."""
    on_test = [r for r in rows if r.get("test_source_sha256") == test.source_sha256
               and r.get("test_reference_sha256") == test.reference_sha256]
    # (beam, setting) -> model -> latest row; rows are appended in order, dates break ties
    found: dict[tuple[int, tuple[Any, ...]], dict[str, dict[str, Any]]] = {}
    for row in sorted(on_test, key=lambda r: str(r.get("date", ""))):
        if row["model"] in names:
            found.setdefault((int(row["beam"]), _row_setting(row)), {})[row["model"]] = row
    for name in names:
        check(any(name in by_model for by_model in found.values()),
              f"no eval of model '{name}' on {test.label}: run `kdnmt eval --models {name}` "
              "first")
    shared = {key: by_model for key, by_model in found.items()
              if all(n in by_model for n in names)}
    if beams is None:
        beams = tuple(sorted({beam for beam, _ in shared}))
        check(bool(beams), "the models were never evaluated with a common beam size, sentence "
              f"count and quantization: run `kdnmt eval --models {','.join(names)}`")
    chosen: dict[int, dict[str, dict[str, Any]]] = {}
    for beam in beams:
        settings = [by_model for (b, _), by_model in shared.items() if b == beam]
        if not settings:
            seen = {n for (b, _), by_model in found.items() if b == beam for n in by_model}
            missing = [n for n in names if n not in seen]
            check(not missing, f"no eval of {', '.join(missing)} at beam {beam} on "
                  f"{test.label}: run `kdnmt eval --models {','.join(missing)} --beam {beam}`")
            raise KdnmtError(f"at beam {beam} the models were never evaluated with the same "
                             "sentence count, quantization and device: run `kdnmt eval --models "
                             f"{','.join(names)} --beam {beam}` with the same options")
        chosen[beam] = max(settings, key=lambda by_model: max(str(r.get("date", ""))
                                                              for r in by_model.values()))
        chosen[beam] = {n: chosen[beam][n] for n in names}
    return chosen


def _row_setting(row: dict[str, Any]) -> tuple[Any, ...]:
    """What two rows must share to be paired: sentences, quantization and device."""
    return (row.get("sentences"), row.get("quantization"), *device_key(row))


def bleu_tokenizer(row: dict[str, Any]) -> str:
    """The sacrebleu tokenizer the row's BLEU was scored with, from its signature's ``tok:``
    (which adds versions to some names: ``ja-mecab-0.996-IPA`` is ``ja-mecab``)."""
    from sacrebleu.metrics import BLEU

    found = re.search(r"\btok:([^|]+)", str(row.get("bleu_signature", "")))
    value = found.group(1) if found else ""
    names = sorted((n for n in BLEU.TOKENIZERS if value == n or value.startswith(f"{n}-")),
                   key=len)
    check(bool(names), f"cannot tell the BLEU tokenizer of the eval row of '{row['model']}' "
          f"(signature {row.get('bleu_signature')!r}): rerun `kdnmt eval --models "
          f"{row['model']}`")
    return names[-1]


def read_hypotheses(run: RunDir, row: dict[str, Any]) -> list[str]:
    """The translations an eval row scored, checked against the sha256 it recorded."""
    path = run.reports_dir / str(row.get("hypotheses", ""))
    what = f"the beam-{row['beam']} translations of '{row['model']}'"
    check(bool(row.get("hypotheses")) and path.is_file(),
          f"{what} are missing ({path}): rerun `kdnmt eval --models {row['model']}`")
    check(sha256_file(path) == row.get("hypotheses_sha256"),
          f"{what} changed since eval scored them ({path}): rerun `kdnmt eval --models "
          f"{row['model']}`")
    text = path.read_text(encoding="utf-8")
    # eval writes one line per sentence ending in "\n"; splitlines() would also split a
    # translation at the Unicode line separators it may contain
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def _checked_outputs(run: RunDir, tgt: str, test: TestSet, beam: int,
                     by_model: dict[str, dict[str, Any]]
                     ) -> tuple[list[str], Callable[[], tuple[Any, Any]], dict[str, list[str]]]:
    """(references, metric factory, translations per model) of one beam's rows, each file
    checked to be what eval scored: its sha256, line count and BLEU."""
    sentences = int(next(iter(by_model.values()))["sentences"])
    references = test.references[:sentences]
    tokenizers = {bleu_tokenizer(r) for r in by_model.values()}
    check(len(tokenizers) == 1, f"at beam {beam} the models' BLEU used different tokenizers "
          f"({', '.join(sorted(tokenizers))}): rerun `kdnmt eval` with the same --bleu-tokenize")
    make_metrics = metric_factory(tgt, tokenizers.pop())
    outputs = {n: read_hypotheses(run, r) for n, r in by_model.items()}
    for name, row in by_model.items():
        check(len(outputs[name]) == sentences,
              f"the beam-{beam} translations of '{name}' have {len(outputs[name])} lines, "
              f"its eval scored {sentences}: rerun `kdnmt eval --models {name}`")
        rescored = round(float(make_metrics()[0].corpus_score(outputs[name],
                                                              [references]).score), 2)
        check(abs(rescored - float(row["bleu"])) < 0.011,
              f"the beam-{beam} translations of '{name}' score BLEU {rescored} against "
              f"{test.label}, its eval row says {row['bleu']}: rerun `kdnmt eval --models {name}`")
    return references, make_metrics, outputs


def compare_models(opts: CompareOptions,
                   on_progress: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    """Run `kdnmt compare`; returns the comparisons it added to ``reports/compare.json``."""
    run = RunDir(Path(opts.run))
    manifest = run.load_manifest()
    names = _check_options(opts)
    check(run.eval_json.is_file(), f"{run.eval_json} does not exist: run `kdnmt eval` first")
    rows = load_rows(run.eval_json)
    check(bool(rows), f"{run.eval_json} has no results: run `kdnmt eval` first")
    earlier = load_comparisons(run)  # a damaged report fails before the tests, not after
    test = read_test(run, manifest, opts.test, 0)
    chosen = latest_rows(rows, names, test, opts.beams)
    settings = PairedSettings(bootstrap=opts.bootstrap, ar_trials=opts.ar_trials)
    out: list[dict[str, Any]] = []
    for beam, by_model in chosen.items():
        references, make_metrics, outputs = _checked_outputs(run, manifest["tgt"], test, beam,
                                                             by_model)
        sentences = len(references)
        for first, second in combinations(names, 2):
            on_progress(f"paired tests: {first} against {second}, beam {beam}")
            a, b = by_model[first], by_model[second]
            result = compare(outputs[second], outputs[first], references, make_metrics,
                             settings)
            out.append({
                "a": first, "b": second, "beam": beam, "sentences": sentences,
                "a_step": a.get("step"), "b_step": b.get("step"),
                "a_bleu": a["bleu"], "b_bleu": b["bleu"], "a_chrf": a["chrf"],
                "b_chrf": b["chrf"],
                "a_hypotheses_sha256": a["hypotheses_sha256"],
                "b_hypotheses_sha256": b["hypotheses_sha256"],
                "quantization": a.get("quantization"), "device": a.get("device", "cpu"),
                "compute_type": a.get("compute_type", "default"),
                "test": test.label, "test_id": test.test_id,
                "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                **result,
            })
    write_compare_reports(run, earlier, out)
    return out


def comparison_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """A newer comparison of the same ordered pair on the same test and setting replaces the
    older one in the report."""
    return (row["a"], row["b"], row["beam"], row.get("test_id"), *_row_setting(row))


def compare_json(run: RunDir) -> Path:
    return run.reports_dir / "compare.json"


#: What every stored comparison must hold to be rendered and merged.
REQUIRED = ("a", "b", "beam", "sentences", "test", "a_bleu", "b_bleu", "a_chrf", "b_chrf",
            "bleu", "chrf", "seed", "bootstrap_resamples", "ar_trials")


def load_comparisons(run: RunDir) -> list[dict[str, Any]]:
    """The comparisons of an earlier ``compare.json``; [] when there is none, one clear error
    when it is damaged or of a newer format (it is never silently replaced)."""
    import json

    path = compare_json(run)
    if not path.is_file():
        return []
    damaged = f"{path} is damaged: move it away and rerun `kdnmt compare` (it starts a new one)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KdnmtError(damaged) from None
    check(isinstance(data, dict) and isinstance(data.get("format"), int), damaged)
    check(data["format"] == FORMAT, f"{path} was written by a newer kdnmt (compare report "
          f"format {data.get('format')!r}; this one reads {FORMAT})")
    rows = data.get("comparisons")
    check(isinstance(rows, list) and all(isinstance(r, dict) and all(k in r for k in REQUIRED)
                                         for r in rows), damaged)
    return rows


def write_compare_reports(run: RunDir, earlier: list[dict[str, Any]],
                          new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge ``new`` into the ``earlier`` comparisons; write compare.json and compare.md (both
    rendered before either is written)."""
    replaced = {comparison_key(r) for r in new}
    merged = [r for r in earlier if comparison_key(r) not in replaced] + new
    markdown = compare_markdown(merged)
    write_json(compare_json(run), {"format": FORMAT, "comparisons": merged})
    write_text(run.reports_dir / "compare.md", markdown)
    return merged


HEADER = ("A", "B", "beam", "sents", "BLEU A / B", "ΔBLEU [95% CI]", "p bs / ar", "BLEU",
          "chrF A / B", "ΔchrF [95% CI]", "p bs / ar", "chrF")


def comparison_cells(row: dict[str, Any]) -> list[str]:
    cells = [at_step(row["a"], row.get("a_step")), at_step(row["b"], row.get("b_step")),
             str(row["beam"]), str(row["sentences"])]
    for key in ("bleu", "chrf"):
        cells += [f"{row[f'a_{key}']:.2f} / {row[f'b_{key}']:.2f}", delta_cell(row[key]),
                  p_cell(row[key]), verdict(row[key])]
    return cells


def compare_markdown(rows: list[dict[str, Any]]) -> str:
    """One table per test set, then how to read it."""
    lines = ["# Paired comparisons"]
    for test in dict.fromkeys(str(r["test"]) for r in rows):
        lines += ["", f"Test set: {test}.", "",
                  "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(comparison_cells(r)) + " |" for r in rows
                  if str(r["test"]) == test]
    resamples = ", ".join(f"{n:,}" for n in sorted({r["bootstrap_resamples"] for r in rows}))
    trials = ", ".join(f"{n:,}" for n in sorted({r["ar_trials"] for r in rows}))
    seeds = ", ".join(str(n) for n in sorted({r["seed"] for r in rows}))
    lines += ["",
              "Δ = A − B, on the same sentences, beam size and quantization, from the "
              "translations `kdnmt eval` wrote; each model is named with the step it was "
              "compared at. The 95% interval of Δ is read off sacrebleu's paired bootstrap "
              f"resamples ({resamples}, seed {seeds}); p-values from sacrebleu's paired "
              f"bootstrap (bs) and approximate randomization (ar, {trials} trials) tests. A "
              "difference is called significant only when both p < 0.05; otherwise it is not "
              "significant (the test does not support it), whatever its sign.", ""]
    return "\n".join(lines)
