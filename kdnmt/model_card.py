"""The model card of an exported model: ``kdnmt.json`` (data) and ``README.md`` (for people).

A card must let someone who has only the exported directory judge and use the model: how it
was trained (or that it was adopted, trained elsewhere), the KD method and teacher of a
student, the data and its licence, the scores of exactly this checkpoint and quantization
(rows of other checkpoints or of a cut test set are never shown as its scores), what it
cannot do, and how to run it with CTranslate2 and SentencePiece alone. The Python snippet in
the card is executed by the tests against a real export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdnmt.eval_report import delta_cell, format_cell, load_rows
from kdnmt.rundir import RunDir
from kdnmt.significance import verdict

#: What each `kdnmt distill` method trains on, in one line (docs/distill.md has the details).
METHOD_TEXT = {
    "ce": "none: label-smoothed cross-entropy on the references (the baseline student)",
    "word": "word-level KD (Kim & Rush 2016): the teacher's token distributions along the "
            "references",
    "seq": "sequence-level KD (Kim & Rush 2016): trained on the teacher's beam-search "
           "translations",
    "seqinter": "sequence-level interpolation (Kim & Rush 2016): trained on the teacher's "
                "n-best candidate closest to the reference",
    "seq+word": "sequence- and word-level KD: the teacher's token distributions along its own "
                "translations",
    "selfevo": "Self-Evolution KD (Song et al. 2024), a fine-tuning stage on the references",
    "atkd": "adaptive token-wise KD (Zhong et al. 2024) along the references",
    "hybrid": "token/sentence hybrid KD with a per-sentence gate (Wei et al. 2024)",
}
#: The snippet's beam size (kdnmt translate's default).
SNIPPET_BEAM = 5
#: CTranslate2's defaults that the snippet and kdnmt translate share.
MAX_INPUT, MAX_OUTPUT = 1024, 256

EVAL_KEYS = ("test", "sentences", "beam", "quantization", "bleu", "chrf", "ter",
             "bleu_signature", "chrf_signature", "ter_signature", "source_tokens_per_second",
             "tokens_per_second", "threads", "date", "significance")


def checkpoint_evals(run: RunDir, checkpoint_sha256: str, quantization: str) -> list[dict[str, Any]]:
    """The eval rows of exactly this checkpoint and quantization (by sha256: a row of an
    earlier checkpoint of the same model is not this model's score)."""
    if not checkpoint_sha256:
        return []
    return [{k: r[k] for k in EVAL_KEYS if k in r} for r in load_rows(run.eval_json)
            if r.get("checkpoint_sha256") == checkpoint_sha256
            and r.get("quantization") == quantization]


def _split_data(manifest: dict[str, Any]) -> dict[str, Any]:
    """Each split's pair count and files (names and sha256; not the exporting machine's
    paths)."""
    out = {}
    for split, entry in manifest.get("splits", {}).items():
        out[split] = {"pairs": entry.get("kept"),
                      "files": {lang: {"name": Path(f.get("path", "?")).name,
                                       "sha256": f.get("sha256")}
                                for lang, f in entry.get("inputs", {}).items()}}
    return out


def card_data(run: RunDir, manifest: dict[str, Any], info: dict[str, Any], quantization: str,
              licence: str | None) -> dict[str, Any]:
    """The card fields that come from the run (export adds size, smoke test and version)."""
    adopted = "imported_from" in info
    kd = None
    if info.get("method"):
        kd = {k: info.get(k) for k in ("method", "teacher", "teacher_sha256", "data", "hparams",
                                        "teacher_mode")}
        teacher = manifest.get("teacher")
        kd["teacher_adopted"] = bool(teacher and teacher.get("name") == info.get("teacher"))
    return {
        "training": {"adopted": adopted, "step": info.get("step"),
                     "target_steps": info.get("target_steps"), "preset": info.get("preset"),
                     "stopped_by_time_budget": info.get("stopped_by_time_budget"),
                     "init_from": (info.get("init_from") or {}).get("name")},
        "kd": kd,
        "data": _split_data(manifest),
        "licence": licence,
        "evaluations": checkpoint_evals(run, info.get("checkpoint_sha256", ""), quantization),
    }


def snippet(sentence: str, beam: int = SNIPPET_BEAM) -> str:
    """Python that translates with this directory using only ctranslate2 and sentencepiece."""
    return "\n".join([
        "import sys",
        "",
        "import ctranslate2",
        "import sentencepiece as spm",
        "",
        'model_dir = sys.argv[1] if len(sys.argv) > 1 else "."  # this directory',
        'sp = spm.SentencePieceProcessor(model_file=f"{model_dir}/spm.model")',
        'translator = ctranslate2.Translator(model_dir, device="cpu")',
        f"sources = [{sentence!r}]",
        f"results = translator.translate_batch(sp.encode(sources, out_type=str), "
        f"beam_size={beam})",
        "for result in results:",
        "    print(sp.decode(result.hypotheses[0]))",
    ])


def _training_line(card: dict[str, Any]) -> str:
    t = card["training"]
    if t["adopted"]:
        return ("adopted: trained outside kdnmt and brought in with `kdnmt prepare "
                "--teacher-checkpoint`/`--teacher-ct2`; its number of updates is not recorded")
    text = f"{t['step']:,} updates" if t["step"] is not None else "updates not recorded"
    if t.get("preset"):
        text += f", preset `{t['preset']}`"
    if t.get("stopped_by_time_budget"):
        text += f", stopped by its time budget (target {t.get('target_steps')})"
    if t.get("init_from"):
        text += f", warm-started from `{t['init_from']}`"
    return text


def _kd_lines(card: dict[str, Any]) -> list[str]:
    kd = card.get("kd")
    if not kd:
        return []
    lines = [f"| KD method | `{kd['method']}`: {METHOD_TEXT.get(kd['method'], '?')} |"]
    if kd.get("teacher"):
        adopted = ", adopted" if kd.get("teacher_adopted") else ""
        lines.append(f"| teacher | `{kd['teacher']}`{adopted} (sha256 "
                     f"{str(kd.get('teacher_sha256'))[:16]}…) |")
    if kd.get("hparams"):
        lines.append("| KD settings | " + ", ".join(f"{k} {v}" for k, v in kd["hparams"].items())
                     + (f", teacher {kd['teacher_mode']}" if kd.get("teacher_mode") else "")
                     + " |")
    return lines


def _data_lines(card: dict[str, Any]) -> list[str]:
    data = card["data"]
    lines = ["", "## Data", ""]
    if card["training"]["adopted"]:
        lines += ["The model was trained outside kdnmt: its training data is not recorded "
                  "here. The splits below are those of the run it was exported from (what "
                  "its students were trained on and it was evaluated on).", ""]
    lines += ["| split | pairs | files (sha256) |", "|---|---|---|"]
    for split, entry in data.items():
        files = ", ".join(f"`{f['name']}` ({str(f['sha256'])[:12]})"
                          for f in entry["files"].values())
        pairs = f"{entry['pairs']:,}" if isinstance(entry["pairs"], int) else "?"
        lines.append(f"| {split} | {pairs} | {files} |")
    kd = card.get("kd")
    if kd and kd.get("data"):
        lines += ["", f"Training targets: {kd['data']} (of the train split)."]
    if not card.get("licence"):
        lines += ["", "Licence: not stated (`kdnmt export --licence` records it). The model is "
                  "derived from the training data above: its terms decide what use is allowed."]
    return lines


def _eval_lines(card: dict[str, Any]) -> list[str]:
    evals = card["evaluations"]
    if not evals:
        return ["", "## Evaluation", "",
                f"Not evaluated: no `kdnmt eval` row of this checkpoint at {card['quantization']} "
                "(`kdnmt eval` before export puts its scores here)."]
    lines = ["", "## Evaluation", "",
             f"Scores of this checkpoint ({card['checkpoint_sha256'][:16]}…) at "
             f"{card['quantization']}, from `kdnmt eval`:", "",
             "| test | sents | beam | BLEU | chrF | TER | src tok/s | out tok/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in evals:
        lines.append("| " + " | ".join([
            str(r.get("test", "?")), str(r.get("sentences", "?")), str(r["beam"]),
            *(format_cell(k, r.get(k)) for k in ("bleu", "chrf", "ter",
                                                  "source_tokens_per_second",
                                                  "tokens_per_second"))]) + " |")
    compared = [r for r in evals if r.get("significance")]
    if compared:
        lines += ["", "Against the baseline (paired tests, significant only when both p < 0.05):"]
        for r in compared:
            s = r["significance"]
            lines.append(f"- against {s['baseline']}, beam {r['beam']}, {r.get('sentences')} "
                         f"sentences: ΔBLEU {delta_cell(s['bleu'])}, {verdict(s['bleu'])}; "
                         f"ΔchrF {delta_cell(s['chrf'])}, {verdict(s['chrf'])}")
    lines += ["", "Signatures:"]
    for key, label in (("bleu", "BLEU"), ("chrf", "chrF"), ("ter", "TER")):
        for sig in sorted({r.get(f"{key}_signature") for r in evals} - {None}):
            lines.append(f"- {label}: `{sig}`")
    return lines


def _limitations(card: dict[str, Any]) -> list[str]:
    lines = ["", "## Limitations", ""]
    train = card["data"].get("train", {})
    pairs = train.get("pairs")
    if card["training"]["adopted"]:
        lines.append("- Trained outside kdnmt on data this card cannot name: ask its provider "
                     "what it was trained on before relying on it.")
    else:
        lines.append(f"- Trained on {pairs:,} {card['src']}→{card['tgt']} pairs"
                     if isinstance(pairs, int) else f"- Trained on {card['src']}→{card['tgt']}")
        lines[-1] += (" only: text unlike them (domain, register, sentence length) will "
                      "likely be translated worse than the scores here say.")
    if card["evaluations"]:
        tests = sorted({f"{r.get('test')}, {r.get('sentences')} sentences"
                        for r in card["evaluations"]})
        lines.append(f"- Scored on {'; '.join(tests)}, against one reference; the speeds are "
                     "of the exporting machine and depend on its cores.")
    else:
        lines.append("- Not evaluated: its quality is unknown.")
    kd = card.get("kd")
    if kd and kd.get("teacher"):
        lines.append(f"- A distilled student: it learns from its teacher `{kd['teacher']}`, "
                     "inherits its errors and is rarely better than it.")
    t = card["training"]
    if t.get("stopped_by_time_budget"):
        lines.append(f"- Training stopped by its time budget at update {t['step']} of "
                     f"{t.get('target_steps')}: the model may be undertrained.")
    lines += [f"- Input is cut at {MAX_INPUT:,} SentencePiece pieces and output at {MAX_OUTPUT} "
              "(CTranslate2's defaults): translate sentences, not whole documents.",
              "- The output is not filtered: like any NMT model it can drop, add or invent "
              "content. Review it before publishing it."]
    if card["quantization"] != "float32":
        lines.append(f"- {card['quantization']} weights: scores can differ slightly from the "
                     "float32 checkpoint's (the scores above are of this quantization).")
    return lines


def render(card: dict[str, Any]) -> str:
    """The README.md of the exported directory."""
    checkpoint = (f"`{card['source_checkpoint']}`" if card.get("source_checkpoint")
                  else "a CTranslate2 model adopted as is")
    licence = (card.get("licence") or "not stated").replace("|", "\\|")  # a table cell
    lines = [
        f"# {card['name']} ({card['src']} → {card['tgt']})",
        "",
        f"Exported by kdnmt {card['kdnmt_version']} on {card['exported']}.",
        "",
        "| what | value |",
        "|---|---|",
        f"| role | {card['role']} |",
        f"| training | {_training_line(card)} |",
        *_kd_lines(card),
        f"| parameters | {card['parameters']:,} |" if isinstance(card.get("parameters"), int)
        else "| parameters | ? |",
        f"| size on disk | {card['size_bytes']:,} bytes |",
        f"| quantization | {card['quantization']} |",
        f"| source checkpoint | {checkpoint} (sha256 {card['checkpoint_sha256'][:16]}…) |",
        f"| licence | {licence} |",
    ]
    lines += _data_lines(card)
    lines += _eval_lines(card)
    lines += _limitations(card)
    lines += ["", "## Use", "", "With kdnmt:", "", "```sh",
              "kdnmt translate --model THIS_DIRECTORY < input.txt", "```", "",
              "Without kdnmt, with CTranslate2 and SentencePiece only (`pip install ctranslate2 "
              "sentencepiece`); run it in this directory or pass the directory:", "",
              "```python", snippet(card["smoke"]["source"]), "```", ""]
    return "\n".join(lines)
