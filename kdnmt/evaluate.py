"""`kdnmt eval`: quality, speed and size of a run's models on a test set, side by side.

Each model is converted to CTranslate2 (cached), translates the test sources with each beam
size, and is scored with sacrebleu (BLEU, chrF, TER, each with its signature so the numbers
can be compared with published ones). Speed is output tokens per second of wall-clock decoding
on this machine; size is the CTranslate2 model on disk and the parameter count.

Beside greedy and beam decoding, each model with a PyTorch checkpoint is also scored
teacher-forced on the references (token accuracy and perplexity, no label smoothing), so the
three decoding settings Wei et al. (2024) compare sit in one table; a CTranslate2-only model
has no logits to score and shows "-" there.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdnmt.corpus.text import iter_parallel, normalise, resolve_side
from kdnmt.errors import check
from kdnmt.fileio import atomic_open, dir_size, sha256_file, write_json, write_text
from kdnmt.models import checkpoint_path, ct2_model, load_model_info
from kdnmt.rundir import RunDir, check_name
from kdnmt.translation import Translator


@dataclass
class EvalOptions:
    run: Path
    models: list[str]
    test: str | None = None
    beams: tuple[int, ...] = (1, 5)
    quantization: str = "int8"
    batch_tokens: int = 2048
    max_sentences: int = 0
    teacher_forced: bool = True


def parse_beams(text: str) -> tuple[int, ...]:
    """'1,5' -> (1, 5), with a clear error for anything else."""
    try:
        beams = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        beams = ()
    check(beams and all(b >= 1 for b in beams),
          f"--beam must be a comma-separated list of sizes >= 1, got '{text}'")
    return beams


def _read_test(run: RunDir, manifest: dict[str, Any], test: str | None,
               limit: int) -> tuple[list[str], list[str], str]:
    src, tgt = manifest["src"], manifest["tgt"]
    if test is None:
        check("test" in manifest["splits"],
              f"{run.root} was prepared without --test: pass --test PREFIX")
        src_path, tgt_path = run.text("test", src), run.text("test", tgt)
        label = "prepared test split"
    else:
        src_path, tgt_path = resolve_side(test, src), resolve_side(test, tgt)
        label = str(test)
    sources, references = [], []
    for s, t in iter_parallel(src_path, tgt_path):
        sources.append(normalise(s))
        references.append(normalise(t))
        if limit and len(sources) >= limit:
            break
    return sources, references, f"{label} (sha256 {sha256_file(src_path)[:12]})"


def score(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """BLEU, chrF and TER with sacrebleu's default settings and their signatures."""
    from sacrebleu.metrics import BLEU, CHRF, TER

    out: dict[str, Any] = {}
    for key, metric in (("bleu", BLEU()), ("chrf", CHRF()), ("ter", TER())):
        result = metric.corpus_score(hypotheses, [references])
        out[key] = round(float(result.score), 2)
        out[f"{key}_signature"] = str(metric.get_signature())
    return out


def evaluate(opts: EvalOptions,
             on_progress: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    """Run `kdnmt eval`; returns the rows it added to ``reports/eval.json``."""
    run = RunDir(Path(opts.run))
    manifest = run.load_manifest()
    check(opts.models, "--models is empty")
    check(opts.max_sentences >= 0, "--max-sentences must be >= 0")
    for name in opts.models:
        check_name(name)
        load_model_info(run, name)  # unknown models fail before any decoding
    sources, references, test_label = _read_test(run, manifest, opts.test, opts.max_sentences)
    rows = []
    pieces: tuple[list[str], list[str]] | None = None
    for name in opts.models:
        info = load_model_info(run, name)
        forced: dict[str, Any] = {}
        if opts.teacher_forced and not info.get("ct2_only"):
            on_progress(f"scoring {name} teacher-forced")
            if pieces is None:
                pieces = _test_pieces(run, sources, references)
            forced = _teacher_forced(checkpoint_path(run, info), pieces, opts.batch_tokens)
        on_progress(f"converting {name} ({opts.quantization})")
        model_dir = ct2_model(run, name, opts.quantization)
        for beam in opts.beams:
            on_progress(f"translating with {name}, beam {beam}")
            with Translator(model_dir, run.spm_model, beam=beam,
                            batch_tokens=opts.batch_tokens) as translator:
                start = time.perf_counter()
                hypotheses = translator.translate(sources)
                seconds = time.perf_counter() - start
                tokens = translator.stats.output_tokens
            out_path = run.reports_dir / f"{name}.beam{beam}.{manifest['tgt']}"
            with atomic_open(out_path) as handle:
                handle.writelines(h + "\n" for h in hypotheses)
            row = {
                "model": name,
                "role": info.get("role", "?"),
                "beam": beam,
                "quantization": opts.quantization,
                **score(hypotheses, references),
                "sentences": len(sources),
                "seconds": round(seconds, 3),
                "tokens_per_second": round(tokens / max(seconds, 1e-9), 1),
                "parameters": info.get("parameters"),
                "size_bytes": dir_size(model_dir),
                "step": info.get("step"),
                **forced,
                "test": test_label,
                "threads": os.cpu_count(),
                "hypotheses": out_path.name,
                "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            }
            if info.get("teacher"):
                row["teacher"] = info["teacher"]
            rows.append(row)
    _merge_report(run, rows)
    return rows


def _test_pieces(run: RunDir, sources: list[str],
                 references: list[str]) -> tuple[list[str], list[str]]:
    """The scored pairs as pieces, encoded with the run's SentencePiece model: for the prepared
    test split exactly ``test.sp.SRC``/``test.sp.TGT`` (prepare encodes the same cleaned text
    the same way), and it also covers ``--test PREFIX`` and ``--max-sentences``."""
    from kdnmt.corpus.spm import Tokenizer, encode_lines

    tokenizer = Tokenizer(run.spm_model)
    return list(encode_lines(tokenizer, sources)), list(encode_lines(tokenizer, references))


def _teacher_forced(checkpoint: Path, pieces: tuple[list[str], list[str]],
                    batch_tokens: int) -> dict[str, Any]:
    # Imported here: eval of CTranslate2-only models must not pay for torch and OpenNMT-py.
    from kdnmt.onmt_bridge.inference import teacher_forced_metrics

    return teacher_forced_metrics(checkpoint, pieces[0], pieces[1], batch_tokens=batch_tokens)


def _row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["model"], row["beam"], row["quantization"], row["test"])


def _merge_report(run: RunDir, rows: list[dict[str, Any]]) -> None:
    """Add ``rows`` to reports/eval.json (replacing rows of the same model, beam, quantization
    and test set) and regenerate reports/eval.md."""
    path = run.reports_dir / "eval.json"
    existing: list[dict[str, Any]] = []
    if path.is_file():
        try:
            existing = json.loads(path.read_text(encoding="utf-8")).get("results", [])
        except (json.JSONDecodeError, AttributeError):
            existing = []
    new_keys = {_row_key(r) for r in rows}
    merged = [r for r in existing if _row_key(r) not in new_keys] + rows
    write_json(path, {"results": merged})
    write_text(run.reports_dir / "eval.md", markdown_table(merged))


COLUMNS = (("model", "model"), ("role", "role"), ("beam", "beam"), ("bleu", "BLEU"),
           ("chrf", "chrF"), ("ter", "TER"), ("tf_accuracy", "tf acc"),
           ("tf_perplexity", "tf ppl"), ("tokens_per_second", "tokens/s"),
           ("parameters", "params"), ("size_bytes", "size"), ("step", "step"))
#: The terminal table leaves out what the markdown report keeps, to fit 80 columns (the
#: parameter count gave way to the teacher-forced columns: the size on disk stays).
TERMINAL_COLUMNS = tuple(c for c in COLUMNS if c[0] not in ("role", "step", "parameters"))


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
        return f"{value:.2f}" if key != "tokens_per_second" else f"{value:.0f}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(k, row.get(k)) for k, _ in COLUMNS) + " |")
    tests = sorted({r["test"] for r in rows})
    sigs = sorted({r["bleu_signature"] for r in rows} | {r["chrf_signature"] for r in rows}
                  | {r["ter_signature"] for r in rows})
    notes = ["", f"Test set: {'; '.join(tests)}.", "",
             "tf acc, tf ppl: teacher-forced token accuracy and perplexity (no label smoothing) "
             "on the references, one value per model (repeated on each of its rows); "
             "- where not computed (CTranslate2-only model, or --no-teacher-forced).",
             "", "Signatures:"]
    notes += [f"- `{s}`" for s in sigs]
    return "\n".join(lines + notes) + "\n"
