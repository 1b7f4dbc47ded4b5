"""The one place that names every artefact path of a run directory.

A run directory holds everything one experiment produces, so any step can be rerun or
resumed alone::

    RUN/manifest.json            what `prepare` read and wrote (checksums, counts, settings)
    RUN/spm.model, spm.vocab     the joint SentencePiece model every model of the run shares
    RUN/vocab.txt                the OpenNMT-py vocabulary built from it
    RUN/data/{split}.{lang}      cleaned text; {split}.sp.{lang} the same as pieces
    RUN/models/NAME/             config.yaml, onmt.yaml, checkpoints, train.log, model.json
    RUN/generated/TEACHER/       `generate`'s outputs: manifest.json, pseudo-targets, n-best,
                                 seq-inter picks; soft-{references,pseudo-targets}/ stores
    RUN/ct2/NAME-QUANT/          CTranslate2 conversions cached for eval and generate
    RUN/reports/                 eval.json, eval.md, eval.png, advice.json
    RUN/reports/hypotheses/TEST/ eval's translations, one file per model, checkpoint,
                                 quantization, beam and sentence count of test set TEST
    RUN/export/NAME-QUANT/       default `kdnmt export` destination
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdnmt import RUN_FORMAT, __version__
from kdnmt.errors import KdnmtError, check

SPLITS = ("train", "valid", "test")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str, what: str = "model name") -> str:
    """Model names become directory names: keep them to a safe alphabet."""
    check(
        bool(_NAME_RE.match(name)),
        f"invalid {what} '{name}': use letters, digits, '.', '_' or '-' (at most 64)",
    )
    return name


def check_file_name(value: object, where: str) -> str:
    """A file name read from a run's own JSON (model.json, a generated manifest) must name a
    file in that directory: an edited record cannot point outside the run with '/' or '..'."""
    check(
        isinstance(value, str) and value not in ("", ".", "..") and "/" not in value
        and "\\" not in value and "\x00" not in value,
        f"{where}: {value!r} is not a plain file name (a path in it would leave the run "
        "directory); the record was edited or is corrupt",
    )
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory. Creating the object touches nothing on disk."""

    root: Path

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def spm_model(self) -> Path:
        return self.root / "spm.model"

    @property
    def spm_vocab(self) -> Path:
        return self.root / "spm.vocab"

    @property
    def vocab(self) -> Path:
        return self.root / "vocab.txt"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def text(self, split: str, lang: str) -> Path:
        return self.data_dir / f"{split}.{lang}"

    def pieces(self, split: str, lang: str) -> Path:
        return self.data_dir / f"{split}.sp.{lang}"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_dir(self, name: str) -> Path:
        return self.models_dir / check_name(name)

    def model_info_path(self, name: str) -> Path:
        return self.model_dir(name) / "model.json"

    def generated_dir(self, teacher: str) -> Path:
        """What `generate` wrote for ``teacher`` (kdnmt.teacher.generate documents the layout)."""
        return self.root / "generated" / check_name(teacher, "teacher name")

    def generated_file(self, teacher: str, name: str) -> Path:
        """A file named in the generate manifest of ``teacher`` (checked to stay inside)."""
        return self.generated_dir(teacher) / check_file_name(name, "generated manifest")

    def soft_store(self, teacher: str, along: str) -> Path:
        """The top-k soft-target store of ``teacher`` along ``references`` or
        ``pseudo-targets``."""
        check(along in ("references", "pseudo-targets"),
              f"soft targets are along references or pseudo-targets, not '{along}'")
        return self.generated_dir(teacher) / f"soft-{along}"

    def ct2_dir(self, name: str, quantization: str) -> Path:
        return self.root / "ct2" / f"{check_name(name)}-{quantization}"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def eval_json(self) -> Path:
        return self.reports_dir / "eval.json"

    @property
    def eval_md(self) -> Path:
        return self.reports_dir / "eval.md"

    @property
    def eval_plot(self) -> Path:
        return self.reports_dir / "eval.png"

    def hypotheses(self, test_id: str, name: str, checkpoint_sha256: str, quantization: str,
                   beam: int, sentences: int, lang: str) -> Path:
        """Where `eval` writes one model's translations of one test set: every part of the
        eval row's identity is in the path, so no evaluation overwrites another's output."""
        return (self.reports_dir / "hypotheses" / check_name(test_id, "test set id")
                / f"{check_name(name)}.{checkpoint_sha256[:12]}.{quantization}.beam{beam}"
                  f".n{sentences}.{lang}")

    def export_dir(self, name: str, quantization: str) -> Path:
        return self.root / "export" / f"{check_name(name)}-{quantization}"

    # -- manifest --------------------------------------------------------------------------

    def load_manifest(self) -> dict[str, Any]:
        """The prepared run's manifest; refuses runs of another layout version."""
        check(self.root.exists(), f"run directory {self.root} does not exist (run `kdnmt prepare`)")
        check(self.root.is_dir(), f"run directory {self.root} is a file, not a directory")
        check(
            self.manifest_path.is_file(),
            f"{self.root} is not a prepared run: {self.manifest_path.name} is missing "
            "(run `kdnmt prepare`)",
        )
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise KdnmtError(f"{self.manifest_path} is corrupt (not valid JSON)") from None
        check(isinstance(manifest, dict), f"{self.manifest_path} is corrupt (not a JSON object)")
        found = manifest.get("run_format")
        check(
            found == RUN_FORMAT,
            f"{self.root} was written by an incompatible kdnmt (run format {found!r}, this is "
            f"kdnmt {__version__} with run format {RUN_FORMAT}): prepare a new run",
        )
        return manifest

    def model_names(self) -> list[str]:
        """Models of this run that have finished at least one checkpoint."""
        if not self.models_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.models_dir.glob("*/model.json"))
