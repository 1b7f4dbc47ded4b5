"""`kdnmt advise`: token-level, sentence-level or hybrid KD, from signals measured before any
student is trained.

Wei et al. (2024, "Sentence-level or token-level? A comprehensive study on knowledge
distillation", arXiv 2404.14827) find token-level KD (``word``: match the teacher's
distribution at each position) better in *simple* scenarios and sentence-level KD (``seq``:
train on the teacher's translations) better in *complex* ones, complexity coming from three
sources: a small student relative to its teacher, noisy text, and hard decoding. This module
measures one signal for each (two for the teacher's side of the text) on the run's data:

- capacity: parameters of the student preset over those of the teacher;
- uncertainty: the teacher's token entropy and UNC = 1 - p(reference token) (the ATKD
  quantity, shared/design/kd-losses.md), teacher-forced on a sample of the data;
- noise: the teacher's perplexity on the sample over its perplexity on the run's valid split
  (clean text of the same origin). The teacher usually trained on the sampled data, so it
  under-reads noise there: a ratio well above 1 is a strong signal, one near 1 a weak one;
- decoding: teacher-forced token accuracy minus free-running (greedy) token accuracy at the
  reference positions, for the CTranslate2 teacher (or, with ``probe_steps``, for a student of
  the preset trained that many steps): how much errors compound once the model feeds on its
  own output.

Each signal votes simple, complex or neither against explicit thresholds; unanimous votes give
``word`` or ``seq``, disagreement (or no clear vote) gives ``hybrid``, whose per-sentence gate
mixes the two. The thresholds are this project's heuristics, not numbers from the paper; the
study (`kdnmt study`) is what validates or moves them.
"""

from __future__ import annotations

import datetime as _dt
import math
import random
import shutil
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kdnmt.corpus.text import iter_parallel, normalise, resolve_side
from kdnmt.errors import check
from kdnmt.fileio import write_json
from kdnmt.models import checkpoint_path, ct2_model, load_model_info
from kdnmt.rundir import RunDir, check_name
from kdnmt.study.rule import RULES, Advice, recommend

PROBE_NAME = "advise-probe"

# -- measuring ----------------------------------------------------------------------------

def _sample_indices(n: int, k: int, seed: int) -> list[int]:
    """``k`` of ``n`` line indices, the same on every machine; all of them if ``k >= n``."""
    if k >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), k))


def _read_pieces(src: Path, tgt: Path, k: int, seed: int) -> tuple[list[str], list[str]]:
    """A deterministic sample of ``k`` aligned lines of two piece files."""
    with open(src, encoding="utf-8") as handle:
        n = sum(1 for _ in handle)
    chosen = set(_sample_indices(n, k, seed))
    sources, targets = [], []
    with open(src, encoding="utf-8") as fs, open(tgt, encoding="utf-8") as ft:
        for i, (s, t) in enumerate(zip(fs, ft, strict=True)):
            if i in chosen:
                sources.append(s.rstrip("\n"))
                targets.append(t.rstrip("\n"))
    return sources, targets


def _read_text_sample(run: RunDir, prefix: Path, src_lang: str, tgt_lang: str, k: int,
                      seed: int) -> tuple[list[str], list[str]]:
    """A sample of a raw-text corpus, encoded with the run's SentencePiece model."""
    from kdnmt.corpus.spm import Tokenizer, encode_lines

    pairs = [(normalise(s), normalise(t))
             for s, t in iter_parallel(resolve_side(prefix, src_lang), resolve_side(prefix, tgt_lang))]
    pairs = [p for p in pairs if p[0] and p[1]]
    check(pairs, f"{prefix}: no pair with both sides non-empty")
    chosen = [pairs[i] for i in _sample_indices(len(pairs), k, seed)]
    tokenizer = Tokenizer(run.spm_model)
    return (list(encode_lines(tokenizer, [s for s, _ in chosen])),
            list(encode_lines(tokenizer, [t for _, t in chosen])))


def free_running_accuracy(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[int, int]:
    """``(correct, total)``: reference positions (pieces, then </s>) where the hypothesis has the
    same piece at the same position. Positional on purpose: this is what teacher-forced
    accuracy measures when the model's own earlier output replaces the reference."""
    correct = total = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        h, r = [*hyp.split(), "</s>"], [*ref.split(), "</s>"]
        correct += sum(a == b for a, b in zip(h, r, strict=False))
        total += len(r)
    return correct, total


def _greedy(model_dir: Path, sources: list[str], batch_tokens: int) -> list[str]:
    from kdnmt.teacher.decode import TeacherDecoder

    with TeacherDecoder(model_dir, beam=1, nbest=1, batch_tokens=batch_tokens,
                        length_ratio=3.0) as decoder:
        return [h.pieces[0] for h in decoder.decode(sources)]


def _forced(frozen: Any, sources: list[str], targets: list[str], batch_tokens: int,
            keep_unc: bool = False) -> Any:
    """Teacher-forced statistics (:class:`~kdnmt.onmt_bridge.inference.ForcedStats`) of a
    loaded model on space-joined piece lines."""
    from kdnmt.onmt_bridge.inference import forced_statistics

    return forced_statistics(frozen, [s.split() for s in sources], [t.split() for t in targets],
                             batch_tokens=batch_tokens, keep_unc=keep_unc)


def _load(checkpoint: Path) -> Any:
    from kdnmt.onmt_bridge.inference import load_frozen_model

    return load_frozen_model(checkpoint)


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, digits)


def _train_probe(run: RunDir, preset: str, steps: int, progress: Callable[[str], None]) -> dict[str, Any]:
    from kdnmt.train import TrainOptions, train

    def report(r: Any) -> None:
        progress(f"probe student: step {r.step}/{steps}, loss {r.loss:.3f}")

    return train(TrainOptions(run=run.root, name=PROBE_NAME, preset=preset, steps=steps,
                              force=True, role="probe"), on_report=report)


def advise(run: Path, student_preset: str, teacher: str = "teacher",
           test_prefix: Path | None = None, sample: int = 500, probe_steps: int = 0, *,
           batch_tokens: int = 2048, quantization: str = "int8", seed: int = 1,
           on_progress: Callable[[str], None] = lambda _: None) -> Advice:
    """Measure the signals of run ``run`` for a student of ``student_preset`` distilled from
    model ``teacher``, and recommend ``word``, ``seq`` or ``hybrid``.

    The data signals are measured on ``sample`` pairs (a fixed, seeded sample) of the run's
    training split, or of ``test_prefix`` (``PREFIX.SRC``/``PREFIX.TGT``, raw text, .xz ok:
    e.g. a noised copy, or the data the student will actually see); the clean reference is
    the run's valid split. ``probe_steps`` > 0 trains a student of the preset for that many
    steps (model ``advise-probe``, removed afterwards) and measures the decoding gap on it
    instead of on the teacher. Nothing is written to the run but cached CTranslate2
    conversions; see :func:`write_advice`.
    """
    from kdnmt.config import preset_config

    rd = RunDir(Path(run))
    manifest = rd.load_manifest()
    check(sample >= 1, f"--sample must be >= 1, got {sample}")
    check(probe_steps >= 0, f"--probe-steps must be >= 0, got {probe_steps}")
    check(batch_tokens >= 1, f"--batch-size must be >= 1, got {batch_tokens}")
    check_name(teacher)
    student_config = preset_config(student_preset)
    info = load_model_info(rd, teacher)
    src, tgt = manifest["src"], manifest["tgt"]
    signals: dict[str, Any] = {}

    # capacity
    on_progress(f"counting the parameters of a {student_preset} student")
    from kdnmt.onmt_bridge.model_size import count_parameters_for

    student_params = count_parameters_for(student_config, int(manifest["vocab"]["entries"]))
    teacher_params = info.get("parameters")
    signals["student_parameters"] = student_params
    signals["teacher_parameters"] = teacher_params
    signals["capacity_ratio"] = _round(student_params / teacher_params) if teacher_params else None

    # data
    on_progress("sampling the data")
    if test_prefix is None:
        data_src, data_tgt = _read_pieces(rd.pieces("train", src), rd.pieces("train", tgt),
                                          sample, seed)
        data_label = f"train split, {len(data_src)} sampled pairs"
    else:
        data_src, data_tgt = _read_text_sample(rd, Path(test_prefix), src, tgt, sample, seed)
        data_label = f"{test_prefix}, {len(data_src)} sampled pairs"
    valid_src, valid_tgt = _read_pieces(rd.pieces("valid", src), rd.pieces("valid", tgt),
                                        sample, seed)
    signals["sample_sentences"] = len(data_src)

    # teacher-forced signals (need the PyTorch checkpoint)
    tf_accuracy: float | None = None
    if info.get("ct2_only"):
        for key in ("teacher_entropy", "unc_mean", "unc_median", "unc_share_above_half",
                    "ppl_data", "ppl_valid", "noise_ratio", "tf_accuracy"):
            signals[key] = None
    else:
        frozen = _load(checkpoint_path(rd, info))
        on_progress(f"teacher-forced scoring of {len(data_src)} pairs with {teacher}")
        data_stats = _forced(frozen, data_src, data_tgt, batch_tokens, keep_unc=True)
        on_progress(f"teacher-forced scoring of {len(valid_src)} valid pairs with {teacher}")
        valid_stats = _forced(frozen, valid_src, valid_tgt, batch_tokens)
        del frozen
        unc = data_stats.unc
        signals["teacher_entropy"] = _round(data_stats.mean_entropy)
        signals["unc_mean"] = _round(statistics.fmean(unc)) if unc else None
        signals["unc_median"] = _round(statistics.median(unc)) if unc else None
        signals["unc_share_above_half"] = _round(sum(u > 0.5 for u in unc) / len(unc)) if unc else None
        signals["ppl_data"] = _round(data_stats.perplexity, 3)
        signals["ppl_valid"] = _round(valid_stats.perplexity, 3)
        ratio = data_stats.perplexity / valid_stats.perplexity
        signals["noise_ratio"] = _round(ratio)
        tf_accuracy = data_stats.accuracy
        signals["tf_accuracy"] = _round(tf_accuracy)

    # decoding gap: the teacher free-running, or a short probe student
    if probe_steps == 0:
        probe = f"teacher '{teacher}' (CTranslate2 {quantization}, greedy)"
        on_progress(f"greedy decoding of {len(data_src)} sources with {teacher}")
        hyps = _greedy(ct2_model(rd, teacher, quantization), data_src, batch_tokens)
        free_ok, free_total = free_running_accuracy(hyps, data_tgt)
        signals["free_accuracy"] = _round(free_ok / free_total)
        signals["decoding_gap"] = (_round(tf_accuracy - free_ok / free_total)
                                   if tf_accuracy is not None else None)
    else:
        probe = f"{student_preset} student trained {probe_steps} steps (CTranslate2 {quantization}, greedy)"
        check(teacher != PROBE_NAME, f"the teacher cannot be named '{PROBE_NAME}'")
        try:
            on_progress(f"training a {student_preset} probe student for {probe_steps} steps")
            probe_info = _train_probe(rd, student_preset, probe_steps, on_progress)
            stats = _forced(_load(checkpoint_path(rd, probe_info)), data_src, data_tgt,
                            batch_tokens)
            on_progress("greedy decoding with the probe student")
            hyps = _greedy(ct2_model(rd, PROBE_NAME, quantization), data_src, batch_tokens)
            free_ok, free_total = free_running_accuracy(hyps, data_tgt)
            signals["probe_tf_accuracy"] = _round(stats.accuracy)
            signals["free_accuracy"] = _round(free_ok / free_total)
            signals["decoding_gap"] = _round(stats.accuracy - free_ok / free_total)
        finally:
            shutil.rmtree(rd.model_dir(PROBE_NAME), ignore_errors=True)
            shutil.rmtree(rd.ct2_dir(PROBE_NAME, quantization), ignore_errors=True)

    method, scenario, reasons, votes = recommend(signals)
    inputs = {
        "run": str(rd.root), "teacher": teacher, "student_preset": student_preset,
        "data": data_label, "clean_reference": f"valid split, {len(valid_src)} pairs",
        "sample": sample, "seed": seed, "probe": probe, "probe_steps": probe_steps,
        "thresholds": {group: {"signal": key, "simple": s, "complex": c}
                       for key, group, s, c, _ in RULES},
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    return Advice(method=method, signals=signals, reasons=reasons, scenario=scenario,
                  votes=votes, inputs=inputs)


def advice_path(run: Path) -> Path:
    return RunDir(Path(run)).reports_dir / "advice.json"


def write_advice(run: Path, advice: Advice) -> Path:
    """Write ``RUN/reports/advice.json`` atomically; returns its path."""
    path = advice_path(run)
    write_json(path, advice.to_dict())
    return path
