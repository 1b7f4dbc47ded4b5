"""`kdnmt eval`: quality, speed and size of a run's models on a test set, side by side.

Each model is converted to CTranslate2 (cached), translates the test sources with each beam
size, and is scored with sacrebleu (BLEU, chrF, TER, each with its signature so the numbers
can be compared with published ones; BLEU with the target language's tokenizer, as
``sacrebleu -tl`` does, for Chinese, Japanese and Korean). Speed is source and output tokens per
second of wall-clock decoding on this machine (output pieces alone would flatter a student that
runs on); size is the CTranslate2 model on disk and the parameter count.

``--baseline NAME`` adds, for every other model, the BLEU and chrF difference to the baseline
with sacrebleu's paired significance tests (:mod:`kdnmt.significance`). Rows, hypothesis files
and the report are keyed by model, checkpoint, test set and sentence count
(:mod:`kdnmt.eval_report`), so no evaluation silently replaces another.

Beside greedy and beam decoding, each model with a PyTorch checkpoint is also scored
teacher-forced on the references (token accuracy and perplexity, no label smoothing), so the
three decoding settings Wei et al. (2024) compare sit in one table; a CTranslate2-only model
has no logits to score and shows "-" there.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdnmt.corpus.text import iter_parallel, normalise, resolve_side
from kdnmt.devices import check_ct2_device, check_torch_device, resolve
from kdnmt.errors import KdnmtError, check
from kdnmt.eval_report import (  # noqa: F401  (re-exported: the CLI's and older imports)
    COLUMNS,
    TERMINAL_COLUMNS,
    format_cell,
    human_size,
    load_rows,
    markdown_table,
    write_reports,
)
from kdnmt.fileio import atomic_open, dir_size, sha256_file
from kdnmt.models import checkpoint_path, ct2_model, load_model_info
from kdnmt.rundir import RunDir, check_name
from kdnmt.significance import AR_DEFAULT, BOOTSTRAP_DEFAULT, PairedSettings, compare
from kdnmt.translation import Translator, default_threads

#: Targets for which sacrebleu's BLEU needs its own tokenizer (what ``sacrebleu -tl`` picks).
CJK = ("zh", "ja", "ko")
#: Fewer resamples than this give p-values and intervals too coarse to mean anything.
MIN_RESAMPLES = 100


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
    baseline: str | None = None
    bootstrap: int = BOOTSTRAP_DEFAULT
    ar_trials: int = AR_DEFAULT
    bleu_tokenize: str | None = None
    #: Where CTranslate2 translates and the teacher-forced forward pass runs, and
    #: CTranslate2's compute type (:func:`kdnmt.devices.resolve`); part of a row's identity.
    device: str = "cpu"
    compute_type: str = "default"


def parse_beams(text: str) -> tuple[int, ...]:
    """'1,5' -> (1, 5), with a clear error for anything else."""
    try:
        beams = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        beams = ()
    check(beams and all(b >= 1 for b in beams),
          f"--beam must be a comma-separated list of sizes >= 1, got '{text}'")
    return beams


@dataclass(frozen=True)
class TestSet:
    """The scored pairs and what identifies them: both files' sha256 and the pair count."""

    sources: list[str]
    references: list[str]
    label: str
    test_id: str
    source_sha256: str
    reference_sha256: str


def _test_id(stem: str, source_sha256: str, reference_sha256: str) -> str:
    """A directory name for a test set: its name, made safe, and a digest of both sides."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip("._-")[:40] or "test"
    digest = hashlib.sha256(f"{source_sha256}\n{reference_sha256}".encode()).hexdigest()[:12]
    return f"{safe}-{digest}"


def read_test(run: RunDir, manifest: dict[str, Any], test: str | None,
              limit: int) -> TestSet:
    """The test pairs eval scores (the prepared split, or ``--test PREFIX``), normalised, cut
    to ``limit`` pairs (0: all), with both whole files' sha256."""
    src, tgt = manifest["src"], manifest["tgt"]
    if test is None:
        check("test" in manifest["splits"],
              f"{run.root} was prepared without --test: pass --test PREFIX")
        src_path, tgt_path = run.text("test", src), run.text("test", tgt)
        label, stem = "prepared test split", "test"
    else:
        src_path, tgt_path = resolve_side(test, src), resolve_side(test, tgt)
        label, stem = str(test), Path(str(test)).name
    sources, references = [], []
    for s, t in iter_parallel(src_path, tgt_path):
        sources.append(normalise(s))
        references.append(normalise(t))
        if limit and len(sources) >= limit:
            break
    src_sha, tgt_sha = sha256_file(src_path), sha256_file(tgt_path)
    return TestSet(sources, references, f"{label} (sha256 {src_sha[:12]})",
                   _test_id(stem, src_sha, tgt_sha), src_sha, tgt_sha)


def prepared_test_identity(run: RunDir) -> tuple[str, int]:
    """(test id, sentence count) that `eval` gives the whole prepared test split of ``run``,
    as its rows record them (``test_id``, ``sentences``)."""
    manifest = run.load_manifest()
    test = read_test(run, manifest, None, 0)
    return test.test_id, len(test.sources)


def bleu_language(tgt: str) -> str:
    """The code sacrebleu's BLEU understands for target ``tgt``: 'zh' for 'zh-CN' or 'zh_tw'
    too (the run's codes are file suffixes), anything else unchanged."""
    base = re.split(r"[-_]", tgt.lower())[0]
    return base if base in CJK else tgt


def metric_factory(tgt: str, bleu_tokenize: str | None = None) -> Callable[[], tuple[Any, Any]]:
    """New (BLEU, chrF) objects for target ``tgt``, checked once here so a missing tokenizer
    stops the eval before any decoding. BLEU gets the target language, so sacrebleu picks its
    Chinese, Japanese or Korean tokenizer; ``bleu_tokenize`` overrides it."""
    from sacrebleu.metrics import BLEU, CHRF

    if bleu_tokenize is not None:
        check(bleu_tokenize in BLEU.TOKENIZERS,
              f"--bleu-tokenize must be one of {', '.join(BLEU.TOKENIZERS)}, got "
              f"'{bleu_tokenize}'")
    lang = bleu_language(tgt)

    def make() -> tuple[Any, Any]:
        return BLEU(trg_lang=lang, tokenize=bleu_tokenize), CHRF()

    try:
        make()
    except (RuntimeError, ImportError, OSError) as exc:
        extra = {"ja": "ja", "ko": "ko"}.get(lang)
        hint = (f"install sacrebleu's tokenizer for it (pip install 'sacrebleu[{extra}]')"
                if extra else "choose another")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KdnmtError(f"BLEU for target language '{tgt}' cannot load its tokenizer "
                         f"({first}): {hint}, or pass --bleu-tokenize (e.g. char)") from None
    return make


def score(hypotheses: list[str], references: list[str], tgt: str | None = None,
          bleu_tokenize: str | None = None) -> dict[str, Any]:
    """BLEU, chrF and TER with sacrebleu's default settings and their signatures (BLEU with
    the tokenizer of target language ``tgt``)."""
    return _scores(hypotheses, references, *metric_factory(tgt or "", bleu_tokenize)())


def _check_options(opts: EvalOptions) -> list[str]:
    """The models to evaluate (the baseline first if it was not listed), checked."""
    check(opts.models, "--models is empty")
    check(opts.max_sentences >= 0, "--limit must be >= 0")
    check_ct2_device(opts.device)
    resolve(opts.device, opts.compute_type, opts.quantization)  # supported on the device
    names = list(dict.fromkeys(opts.models))
    if opts.baseline is not None:
        check_name(opts.baseline, "--baseline")
        check(opts.bootstrap >= MIN_RESAMPLES,
              f"--bootstrap must be >= {MIN_RESAMPLES}, got {opts.bootstrap}")
        check(opts.ar_trials >= MIN_RESAMPLES,
              f"--ar-trials must be >= {MIN_RESAMPLES}, got {opts.ar_trials}")
        if opts.baseline not in names:
            names.insert(0, opts.baseline)
        check(len(names) > 1, f"--baseline {opts.baseline} needs another model in --models "
                              "to compare with it")
    return names


def evaluate(opts: EvalOptions,
             on_progress: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    """Run `kdnmt eval`; returns the rows it added to ``reports/eval.json``."""
    run = RunDir(Path(opts.run))
    manifest = run.load_manifest()
    names = _check_options(opts)
    make_metrics = metric_factory(manifest["tgt"], opts.bleu_tokenize)
    for name in names:
        check_name(name)
        load_model_info(run, name)  # unknown models fail before any decoding
    if opts.teacher_forced and any(not load_model_info(run, n).get("ct2_only") for n in names):
        try:
            check_torch_device(opts.device, "teacher-forced scoring")
        except KdnmtError as exc:
            raise KdnmtError(f"{exc}: add --no-teacher-forced to score with CTranslate2 "
                             "only") from None
    load_rows(run.eval_json)  # a damaged report fails before any decoding, not after it
    test = read_test(run, manifest, opts.test, opts.max_sentences)
    rows = []
    outputs: dict[tuple[str, int], list[str]] = {}
    pieces: tuple[list[str], list[str]] | None = None
    for name in names:
        info = load_model_info(run, name)
        forced: dict[str, Any] = {}
        if opts.teacher_forced and not info.get("ct2_only"):
            on_progress(f"scoring {name} teacher-forced")
            if pieces is None:
                pieces = _test_pieces(run, test.sources, test.references)
            forced = _teacher_forced(checkpoint_path(run, info), pieces, opts.batch_tokens,
                                     opts.device)
        on_progress(f"converting {name} ({opts.quantization})")
        model_dir = ct2_model(run, name, opts.quantization)
        for beam in opts.beams:
            on_progress(f"translating with {name}, beam {beam}")
            with Translator(model_dir, run.spm_model, beam=beam, batch_tokens=opts.batch_tokens,
                            device=opts.device, compute_type=resolve(
                                opts.device, opts.compute_type, opts.quantization)) as translator:
                ct2_compute_type = translator.compute_type
                source_tokens = sum(len(p) for p in
                                    translator.tokenizer.pieces_batch(test.sources))
                start = time.perf_counter()
                hypotheses = translator.translate(test.sources)
                seconds = time.perf_counter() - start
                tokens = translator.stats.output_tokens
            outputs[(name, beam)] = hypotheses
            # the CPU's default keeps the file name it had before devices were options
            decoded_as = opts.quantization if (opts.device, opts.compute_type) == (
                "cpu", "default") else f"{opts.quantization}.{opts.device}-{opts.compute_type}"
            out_path = run.hypotheses(test.test_id, name, info["checkpoint_sha256"],
                                      decoded_as, beam, len(test.sources), manifest["tgt"])
            with atomic_open(out_path) as handle:
                handle.writelines(h + "\n" for h in hypotheses)
            elapsed = max(seconds, 1e-9)
            bleu, chrf = make_metrics()
            row = {
                "model": name,
                "role": info.get("role", "?"),
                "beam": beam,
                "quantization": opts.quantization,
                "device": opts.device,
                "compute_type": opts.compute_type,
                "ctranslate2_compute_type": ct2_compute_type,
                **_scores(hypotheses, test.references, bleu, chrf),
                "sentences": len(test.sources),
                "seconds": round(seconds, 3),
                "tokens_per_second": round(tokens / elapsed, 1),
                "source_tokens_per_second": round(source_tokens / elapsed, 1),
                "sentences_per_second": round(len(test.sources) / elapsed, 2),
                "source_tokens": source_tokens,
                "output_tokens": tokens,
                "parameters": info.get("parameters"),
                "size_bytes": dir_size(model_dir),
                "step": info.get("step"),
                **forced,
                "test": test.label,
                "test_id": test.test_id,
                "test_source_sha256": test.source_sha256,
                "test_reference_sha256": test.reference_sha256,
                "checkpoint_sha256": info["checkpoint_sha256"],
                "threads": default_threads(opts.device)[0],  # CTranslate2 replicas
                "hypotheses": out_path.relative_to(run.reports_dir).as_posix(),
                "hypotheses_sha256": sha256_file(out_path),
                "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            }
            if info.get("teacher"):
                row["teacher"] = info["teacher"]
            rows.append(row)
    if opts.baseline is not None:
        _add_significance(opts, rows, outputs, test.references, make_metrics, on_progress)
    write_reports(run, rows)
    return rows


def _scores(hypotheses: list[str], references: list[str], bleu: Any, chrf: Any) -> dict[str, Any]:
    from sacrebleu.metrics import TER

    out: dict[str, Any] = {}
    for key, metric in (("bleu", bleu), ("chrf", chrf), ("ter", TER())):
        result = metric.corpus_score(hypotheses, [references])
        out[key] = round(float(result.score), 2)
        out[f"{key}_signature"] = str(metric.get_signature())
    return out


def _add_significance(opts: EvalOptions, rows: list[dict[str, Any]],
                      outputs: dict[tuple[str, int], list[str]], references: list[str],
                      make_metrics: Callable[[], tuple[Any, Any]],
                      on_progress: Callable[[str], None]) -> None:
    """Each non-baseline row gets its paired comparison with the baseline's row of the same
    beam (same call: same test sentences and quantization)."""
    baseline = opts.baseline
    assert baseline is not None  # the caller adds the tests only with --baseline
    settings = PairedSettings(bootstrap=opts.bootstrap, ar_trials=opts.ar_trials)
    base_rows = {r["beam"]: r for r in rows if r["model"] == opts.baseline}
    for row in rows:
        if row["model"] == opts.baseline:
            continue
        base = base_rows[row["beam"]]
        on_progress(f"paired tests: {row['model']} against {opts.baseline}, beam {row['beam']}")
        result = compare(outputs[(baseline, row["beam"])],
                         outputs[(row["model"], row["beam"])], references, make_metrics,
                         settings)
        row["significance"] = {"baseline": opts.baseline, "baseline_step": base["step"],
                               "baseline_checkpoint_sha256": base["checkpoint_sha256"],
                               "baseline_hypotheses_sha256": base["hypotheses_sha256"],
                               **result}


def _test_pieces(run: RunDir, sources: list[str],
                 references: list[str]) -> tuple[list[str], list[str]]:
    """The scored pairs as pieces, encoded with the run's SentencePiece model: for the prepared
    test split exactly ``test.sp.SRC``/``test.sp.TGT`` (prepare encodes the same cleaned text
    the same way), and it also covers ``--test PREFIX`` and ``--limit``."""
    from kdnmt.corpus.spm import Tokenizer, encode_lines

    tokenizer = Tokenizer(run.spm_model)
    return list(encode_lines(tokenizer, sources)), list(encode_lines(tokenizer, references))


def _teacher_forced(checkpoint: Path, pieces: tuple[list[str], list[str]],
                    batch_tokens: int, device: str = "cpu") -> dict[str, Any]:
    # Imported here: eval of CTranslate2-only models must not pay for torch and OpenNMT-py.
    from kdnmt.onmt_bridge.inference import teacher_forced_metrics

    return teacher_forced_metrics(checkpoint, pieces[0], pieces[1], batch_tokens=batch_tokens,
                                  device=device)
