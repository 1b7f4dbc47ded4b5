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
``--test PREFIX`` as for eval), at each beam size all of them were decoded with. The rows of
one comparison must share the sentence count, quantization and device, or the pair would not
be paired. Results go to ``reports/compare.json`` (merged across calls: a newer comparison of
the same pair on the same test replaces the older) and ``reports/compare.md``.
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
from kdnmt.evaluate import MIN_RESAMPLES, TestSet, metric_factory, read_test, score
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
    """beam -> model -> that model's latest eval row on ``test`` at that beam, for the beams
    every model has (or exactly ``beams``); one clear error naming what is missing."""
    on_test = [r for r in rows if r.get("test_source_sha256") == test.source_sha256
               and r.get("test_reference_sha256") == test.reference_sha256]
    found: dict[int, dict[str, dict[str, Any]]] = {}
    for row in sorted(on_test, key=lambda r: str(r.get("date", ""))):
        if row["model"] in names:
            found.setdefault(int(row["beam"]), {})[row["model"]] = row  # later dates win
    for name in names:
        check(any(name in by_model for by_model in found.values()),
              f"no eval of model '{name}' on {test.label}: run `kdnmt eval --models {name}` "
              "first")
    if beams is None:
        beams = tuple(sorted(b for b, by_model in found.items()
                             if all(n in by_model for n in names)))
        check(bool(beams), "the models were never evaluated with a common beam size: run "
              f"`kdnmt eval --models {','.join(names)}`")
    for beam in beams:
        missing = [n for n in names if n not in found.get(beam, {})]
        check(not missing, f"no eval of {', '.join(missing)} at beam {beam} on {test.label}: "
              f"run `kdnmt eval --models {','.join(missing)} --beam {beam}`")
    return {beam: {n: found[beam][n] for n in names} for beam in beams}


def _row_setting(row: dict[str, Any]) -> tuple[Any, ...]:
    """What two rows must share to be paired: sentences, quantization and device."""
    return (row.get("sentences"), row.get("quantization"), *device_key(row))


def _bleu_tokenizer(row: dict[str, Any]) -> str | None:
    """The tokenizer the row's BLEU was scored with (its signature's ``tok:``)."""
    found = re.search(r"\btok:([^|]+)", str(row.get("bleu_signature", "")))
    return found.group(1) if found else None


def read_hypotheses(run: RunDir, row: dict[str, Any]) -> list[str]:
    """The translations an eval row scored, checked against the sha256 it recorded."""
    path = run.reports_dir / str(row.get("hypotheses", ""))
    what = f"the beam-{row['beam']} translations of '{row['model']}'"
    check(bool(row.get("hypotheses")) and path.is_file(),
          f"{what} are missing ({path}): rerun `kdnmt eval --models {row['model']}`")
    check(sha256_file(path) == row.get("hypotheses_sha256"),
          f"{what} changed since eval scored them ({path}): rerun `kdnmt eval --models "
          f"{row['model']}`")
    return path.read_text(encoding="utf-8").splitlines()


def compare_models(opts: CompareOptions,
                   on_progress: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    """Run `kdnmt compare`; returns the comparisons it added to ``reports/compare.json``."""
    run = RunDir(Path(opts.run))
    manifest = run.load_manifest()
    names = _check_options(opts)
    rows = load_rows(run.eval_json)
    check(bool(rows), f"{run.eval_json} does not exist: run `kdnmt eval` first")
    test = read_test(run, manifest, opts.test, 0)
    chosen = latest_rows(rows, names, test, opts.beams)
    settings = PairedSettings(bootstrap=opts.bootstrap, ar_trials=opts.ar_trials)
    out: list[dict[str, Any]] = []
    for beam, by_model in chosen.items():
        settings_seen = {_row_setting(r) for r in by_model.values()}
        seen = ", ".join(f"{n}: {_row_setting(r)}" for n, r in by_model.items())
        check(len(settings_seen) == 1,
              f"at beam {beam} the models' latest evals differ in sentence count, "
              f"quantization or device ({seen}): rerun `kdnmt eval --models "
              f"{','.join(names)}` with the same options")
        sentences = int(next(iter(by_model.values()))["sentences"])
        references = test.references[:sentences]
        tokenizers = {_bleu_tokenizer(r) for r in by_model.values()}
        check(len(tokenizers) == 1, f"at beam {beam} the models' BLEU used different "
              "tokenizers: rerun `kdnmt eval` with the same --bleu-tokenize")
        make_metrics = metric_factory(manifest["tgt"], tokenizers.pop())
        outputs = {n: read_hypotheses(run, r) for n, r in by_model.items()}
        for name, row in by_model.items():
            check(len(outputs[name]) == sentences,
                  f"the beam-{beam} translations of '{name}' have {len(outputs[name])} lines, "
                  f"its eval scored {sentences}: rerun `kdnmt eval --models {name}`")
            rescored = score(outputs[name], references, manifest["tgt"], _bleu_tokenizer(row))
            check(abs(rescored["bleu"] - float(row["bleu"])) < 0.011,
                  f"the beam-{beam} translations of '{name}' score BLEU {rescored['bleu']} "
                  f"against {test.label}, its eval row says {row['bleu']}: rerun `kdnmt eval "
                  f"--models {name}`")
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
    write_compare_reports(run, out)
    return out


def comparison_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """A newer comparison of the same ordered pair on the same test and setting replaces the
    older one in the report."""
    return (row["a"], row["b"], row["beam"], row.get("test_id"), *_row_setting(row))


def write_compare_reports(run: RunDir, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge ``new`` into compare.json and rewrite compare.md from the merged comparisons."""
    path = run.reports_dir / "compare.json"
    old: list[dict[str, Any]] = []
    if path.is_file():
        import json

        try:
            old = json.loads(path.read_text(encoding="utf-8"))["comparisons"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise KdnmtError(f"{path} is corrupt: move it away and rerun `kdnmt compare`") \
                from None
    replaced = {comparison_key(r) for r in new}
    merged = [r for r in old if comparison_key(r) not in replaced] + new
    write_json(path, {"format": FORMAT, "comparisons": merged})
    write_text(run.reports_dir / "compare.md", compare_markdown(merged))
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
    lines = ["# Paired comparisons", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(comparison_cells(r)) + " |" for r in rows]
    resamples = ", ".join(f"{n:,}" for n in sorted({r["bootstrap_resamples"] for r in rows}))
    trials = ", ".join(f"{n:,}" for n in sorted({r["ar_trials"] for r in rows}))
    seeds = ", ".join(str(n) for n in sorted({r["seed"] for r in rows}))
    tests = "; ".join(sorted({str(r["test"]) for r in rows}))
    lines += ["", f"Test set: {tests}.", "",
              "Δ = A − B, on the same sentences, beam size and quantization, from the "
              "translations `kdnmt eval` wrote. The 95% interval of Δ is read off sacrebleu's "
              f"paired bootstrap resamples ({resamples}, seed {seeds}); p-values from "
              "sacrebleu's paired bootstrap (bs) and approximate randomization (ar, "
              f"{trials} trials) tests. A difference is called significant only when both "
              "p < 0.05; otherwise it is not significant (the test does not support it), "
              "whatever its sign.", ""]
    return "\n".join(lines)
