"""`kdnmt eval`'s report files: ``eval.json`` (every row, merged across calls), ``eval.md``
and the quality-vs-speed plot ``eval.png``.

A row is one model, at one checkpoint, on one test set (its files' sha256) cut to one number of
sentences, decoded with one beam size and quantization: only a row with the same identity
replaces another, so ``eval --limit 50`` never stands in for the full test, and rows of
a model's earlier checkpoints stay on record. Rows written by kdnmt before this format (no
checkpoint or test checksums) still load; a new row of the same model, beam, quantization,
test label, sentence count and step replaces such a row.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from kdnmt.errors import KdnmtError, check
from kdnmt.fileio import atomic_path, write_json, write_text
from kdnmt.rundir import RunDir
from kdnmt.significance import verdict

#: eval.json layout: 1 = rows keyed by model, beam, quantization and test label (no
#: ``format`` field); 2 = rows keyed by their full identity (:func:`row_key`).
FORMAT = 2

METRIC_LABELS = (("bleu", "BLEU"), ("chrf", "chrF"), ("ter", "TER"))


def load_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of an ``eval.json``; [] when there is none, one clear error when it cannot be
    read (a damaged report is never silently replaced by a new one)."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KdnmtError(f"{path} is corrupt (not valid JSON): move it away and rerun "
                         "`kdnmt eval` (it starts a new report)") from None
    rows = data.get("results") if isinstance(data, dict) else None
    check(isinstance(rows, list) and all(isinstance(r, dict) and "model" in r and "beam" in r
                                         for r in rows),
          f"{path} is not a kdnmt eval report (no 'results' list of rows): move it away and "
          "rerun `kdnmt eval`")
    found = data.get("format", 1)
    check(found in (1, FORMAT), f"{path} was written by a newer kdnmt (eval report format "
          f"{found!r}; this one reads 1 and {FORMAT})")
    return rows  # type: ignore[return-value]


def row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """The identity of a row: what must differ for two rows to both stay in the report."""
    if not row.get("checkpoint_sha256"):
        return legacy_key(row)
    return ("row", row["model"], row["checkpoint_sha256"], row.get("test_source_sha256"),
            row.get("test_reference_sha256"), row.get("sentences"), row["beam"],
            row.get("quantization"), *device_key(row))


def device_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """Where a row was decoded, when not on the CPU with the default compute type: a GPU's or
    another compute type's row stands beside the CPU's (rows from before devices were
    options, and CPU-default ones, keep the key they had)."""
    device, compute_type = row.get("device", "cpu"), row.get("compute_type", "default")
    return () if (device, compute_type) == ("cpu", "default") else (device, compute_type)


def legacy_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """What identified a row of the first format; a new row replaces an old one with it."""
    return ("legacy", row.get("model"), row.get("beam"), row.get("quantization"),
            row.get("test"), row.get("sentences"), row.get("step"))


def merge_rows(existing: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``existing`` without the rows ``rows`` replace, then ``rows``. A comparison with the
    baseline survives a re-evaluation that did not ask for one when the output is the same."""
    by_key = {row_key(r): r for r in existing}
    for row in rows:
        old = by_key.get(row_key(row))
        if (old is not None and "significance" not in row and old.get("significance")
                and old.get("hypotheses_sha256") == row.get("hypotheses_sha256")):
            row["significance"] = old["significance"]
    replaced = {row_key(r) for r in rows} | {legacy_key(r) for r in rows}
    return [r for r in existing if row_key(r) not in replaced] + rows


def write_reports(run: RunDir, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge ``rows`` into eval.json, then rewrite eval.md and eval.png from the merged rows;
    returns them."""
    merged = merge_rows(load_rows(run.eval_json), rows)
    write_json(run.eval_json, {"format": FORMAT, "results": merged})
    plot = plot_quality_speed(merged, run.eval_plot)
    write_text(run.eval_md, markdown_table(merged, plot.name if plot else None))
    return merged


# -- cells ------------------------------------------------------------------------------------

COLUMNS = (("model", "model"), ("role", "role"), ("beam", "beam"), ("sentences", "sents"),
           ("bleu", "BLEU"), ("chrf", "chrF"), ("ter", "TER"), ("tf_accuracy", "tf acc"),
           ("tf_perplexity", "tf ppl"), ("source_tokens_per_second", "src tok/s"),
           ("tokens_per_second", "out tok/s"), ("parameters", "params"),
           ("size_bytes", "size"), ("step", "step"))
#: The terminal table leaves out what the markdown report keeps (the terminal's title names
#: the test set and its sentence count, which one call shares).
TERMINAL_COLUMNS = tuple(c for c in COLUMNS if c[0] not in ("role", "step", "parameters",
                                                            "sentences"))


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def format_cell(key: str, value: Any) -> str:
    if value is None:
        return "-" if key.startswith("tf_") else "?"  # not computed is not unknown
    if key == "tf_accuracy":
        return f"{100 * value:.1f}%"
    if key == "size_bytes":
        return human_size(value)
    if key == "parameters":
        return f"{value / 1e6:.2f}M"
    if isinstance(value, float):
        return f"{value:.0f}" if key.endswith("per_second") else f"{value:.2f}"
    return str(value)


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def delta_cell(result: dict[str, Any]) -> str:
    low, high = result["ci95"]
    return f"{_signed(result['delta'])} [{_signed(low)}, {_signed(high)}]"


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def p_cell(result: dict[str, Any]) -> str:
    if result.get("p_bootstrap") is None:
        return "-"
    return f"{_p(result['p_bootstrap'])} / {_p(result['p_ar'])}"


# -- significance -----------------------------------------------------------------------------

def comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with a comparison whose baseline row (same checkpoint, test, sentences, beam,
    quantization and output) is still in ``rows``: a retrained or re-run baseline makes the
    older comparisons stale, and they are left out."""
    keys = {row_key(r): r for r in rows}
    out = []
    for row in rows:
        sig = row.get("significance")
        if not sig:
            continue
        base = keys.get(row_key({**row, "model": sig["baseline"],
                                 "checkpoint_sha256": sig["baseline_checkpoint_sha256"]}))
        if base is not None and base.get("hypotheses_sha256") == sig.get(
                "baseline_hypotheses_sha256"):
            out.append(row)
    return out


SIGNIFICANCE_HEADER = ("model", "baseline", "beam", "sents", "ΔBLEU [95% CI]", "p bs / ar",
                       "BLEU", "ΔchrF [95% CI]", "p bs / ar", "chrF")


def at_step(name: str, step: Any) -> str:
    """A model at its checkpoint: rows of earlier checkpoints stay in the report."""
    return name if step is None else f"{name} (step {step})"


def significance_cells(row: dict[str, Any]) -> list[str]:
    sig = row["significance"]
    cells = [at_step(row["model"], row.get("step")),
             at_step(sig["baseline"], sig.get("baseline_step")),
             str(row["beam"]), str(row.get("sentences", "?"))]
    for key in ("bleu", "chrf"):
        cells += [delta_cell(sig[key]), p_cell(sig[key]), verdict(sig[key])]
    return cells


def _significance_section(rows: list[dict[str, Any]]) -> list[str]:
    compared = comparisons(rows)
    if not compared:
        return []
    lines = ["", "## Paired significance against the baseline", "",
             "| " + " | ".join(SIGNIFICANCE_HEADER) + " |",
             "|" + "---|" * len(SIGNIFICANCE_HEADER)]
    lines += ["| " + " | ".join(significance_cells(r)) + " |" for r in compared]
    sigs = [r["significance"] for r in compared]
    resamples = ", ".join(f"{n:,}" for n in sorted({s["bootstrap_resamples"] for s in sigs}))
    trials = ", ".join(f"{n:,}" for n in sorted({s["ar_trials"] for s in sigs}))
    seeds = ", ".join(str(n) for n in sorted({s["seed"] for s in sigs}))
    lines += ["", f"Δ = model − baseline, on the same sentences, beam size and quantization. "
              f"The 95% interval of Δ is read off sacrebleu's paired bootstrap resamples "
              f"({resamples}, seed {seeds}); p-values from sacrebleu's paired bootstrap (bs) "
              f"and approximate randomization (ar, {trials} trials) tests. A difference is "
              "called significant only when both p < 0.05; otherwise it is not significant "
              "(the test does not support it), whatever its sign.",
              "", "Significance signatures:"]
    labels = {"bleu_bs": "BLEU, paired bootstrap", "bleu_ar": "BLEU, approximate randomization",
              "chrf_bs": "chrF, paired bootstrap", "chrf_ar": "chrF, approximate randomization"}
    for key, label in labels.items():
        for sig in sorted({s.get("signatures", {}).get(key) for s in sigs} - {None}):
            lines.append(f"- {label}: `{sig}`")
    return lines


def markdown_table(rows: list[dict[str, Any]], plot: str | None = None) -> str:
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(k, row.get(k)) for k, _ in COLUMNS) + " |")
    tests = sorted({str(r.get("test", "?")) for r in rows})
    notes = ["", f"Test set: {'; '.join(tests)}.", "",
             "sents: sentences scored. src tok/s, out tok/s: source and output SentencePiece "
             "pieces per second of decoding (a student that runs on produces more output "
             "pieces: compare speeds by src tok/s).",
             "",
             "tf acc, tf ppl: teacher-forced token accuracy and perplexity (no label smoothing) "
             "on the references, one value per model (repeated on each of its rows); "
             "- where not computed (CTranslate2-only model, or --no-teacher-forced)."]
    notes += _significance_section(rows)
    notes += ["", "Signatures:"]
    for key, label in METRIC_LABELS:
        for sig in sorted({s for r in rows if (s := r.get(f"{key}_signature")) is not None}):
            notes.append(f"- {label}: `{sig}`")
    if plot:
        notes += ["", f"![BLEU against source tokens per second, marker area by size on disk]"
                      f"({plot})", "",
                  f"[{plot}]({plot}): BLEU against source tokens/s (log scale), one panel per "
                  "test set and sentence count, marker area proportional to the model's size "
                  "on disk, latest row of each model, beam and quantization."]
    return "\n".join(lines + notes) + "\n"


# -- plot -------------------------------------------------------------------------------------

MAX_PANELS = 4
MARKERS = ("o", "s", "^", "D", "v", "P")


def _plottable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        speed, bleu = row.get("source_tokens_per_second"), row.get("bleu")
        if isinstance(speed, (int, float)) and speed > 0 and isinstance(bleu, (int, float)):
            key = (row["model"], row["beam"], row.get("quantization"), row.get("test"),
                   row.get("sentences"))
            latest.pop(key, None)
            latest[key] = row
    return list(latest.values())


def plot_quality_speed(rows: list[dict[str, Any]], dest: Path) -> Path | None:
    """BLEU against source tokens/s of the evaluated models (one panel per test set and
    sentence count, the most recent :data:`MAX_PANELS`), written atomically to ``dest``;
    None (and nothing written) when no row has both figures."""
    points = _plottable(rows)
    if not points:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for row in points:
        key = (row.get("test"), row.get("sentences"))
        groups.setdefault(key, []).append(row)
    chosen = list(groups.items())[-MAX_PANELS:]
    fig = Figure(figsize=(5.2 * len(chosen) + 0.4, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(chosen), squeeze=False)[0]
    largest = max((r.get("size_bytes") or 0) for r in points) or 1
    models = list(dict.fromkeys(r["model"] for r in points))
    beams = sorted({r["beam"] for r in points})
    colours = {m: f"C{i % 10}" for i, m in enumerate(models)}
    for ax, ((test, sentences), group) in zip(axes, chosen, strict=True):
        several = len({r.get("quantization") for r in group}) > 1
        for row in group:
            name = f"{row['model']} b{row['beam']}"
            if several:
                name += f" {row.get('quantization')}"
            area = 40 + 360 * math.sqrt((row.get("size_bytes") or 0) / largest)
            ax.scatter(row["source_tokens_per_second"], row["bleu"], s=area, alpha=0.7,
                       color=colours[row["model"]],
                       marker=MARKERS[beams.index(row["beam"]) % len(MARKERS)])
            ax.annotate(name,
                        (row["source_tokens_per_second"], row["bleu"]),
                        textcoords="offset points", xytext=(6, 4), fontsize="small")
        ax.set_xscale("log")
        ax.set_xlabel("source tokens/s (log)")
        ax.set_ylabel("BLEU")
        label = str(test)
        ax.set_title(f"{label[:48] + '…' if len(label) > 49 else label}\n{sentences} sentences",
                     fontsize="small")
        ax.grid(alpha=0.3)
    for beam in beams:
        axes[0].scatter([], [], marker=MARKERS[beams.index(beam) % len(MARKERS)],
                        color="grey", label=f"beam {beam}")
    axes[0].legend(fontsize="small")
    fig.suptitle("BLEU against speed (marker area ∝ size on disk)")
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(dest)
