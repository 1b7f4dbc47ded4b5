"""The grid file of `kdnmt study`: strict YAML in, a checked :class:`GridSpec` out.

A study trains dozens of students over hours; a typo that silently drops an axis or a budget
would only show in the results. So, as in :mod:`kdnmt.config`, every key is known and typed,
a mistake names the key and the valid ones, and every path and name is checked before the
first model is touched. Relative paths resolve against the grid file's directory, so a grid
file and its data can move together.

Schema (``docs/study.md`` has the reference)::

    src: de                      # language codes (file suffixes)
    tgt: en
    data: {train: PREFIX, valid: PREFIX, test: PREFIX,
           train_lines: 0, valid_lines: 0, test_lines: 0}       # 0 = every line
    teacher: {checkpoint: PATH, spm: PATH, vocab: PATH}          # adopt a trained teacher, or
    teacher: {train: {preset: small, steps: 2000, max_minutes: 0, config: FILE, vocab_size: 8000}}
    sizes: [tiny, small]         # presets, or names of `students:` entries
    students: {NAME: {preset: tiny, model: {...}, training: {...}}}
    noise: ["0", moderate]       # kdnmt.corpus.noise levels, on the source side of train and test
    methods: [word, seq, hybrid] # any of kdnmt.distill.METHODS
    decoding: [greedy, beam5]    # greedy = beam 1; beamN
    budget: {steps: 300, max_minutes: 10}
    student_config: FILE         # training overrides for every student
    method_options: {word: {alpha: 0.5}}
    generate: {beam: 5, soft_targets: 8, max_length: 150}
    advise: true                 # or {sample: 500, probe_steps: 0}, or false
    seed: 1
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kdnmt.errors import KdnmtError, check
from kdnmt.rundir import check_name
from kdnmt.strict import Problems, coerce


def stores_needed(methods: list[str]) -> set[str]:
    """Along what (``references``, ``pseudo-targets``) the grid's methods read a top-k store
    by default (the method registry says; full-teacher methods read the online teacher)."""
    from kdnmt.losses.registry import METHODS

    return {METHODS[m].soft_along for m in methods  # type: ignore[misc]
            if METHODS[m].uses_cache_by_default()}

_DECODING_RE = re.compile(r"^beam([1-9][0-9]*)$")


def parse_decoding(name: str, where: str) -> int:
    """'greedy' -> 1, 'beamN' -> N; anything else names the accepted forms."""
    if name == "greedy":
        return 1
    match = _DECODING_RE.match(name)
    check(match is not None, f"{where}: decoding '{name}' is not 'greedy' or 'beamN' (e.g. beam5)")
    return int(match.group(1))  # type: ignore[union-attr]


def decoding_name(beam: int) -> str:
    return "greedy" if beam == 1 else f"beam{beam}"


@dataclass(frozen=True)
class DataSpec:
    train: Path
    valid: Path
    test: Path
    train_lines: int = 0
    valid_lines: int = 0
    test_lines: int = 0


@dataclass(frozen=True)
class TeacherTrainSpec:
    """A teacher trained by the study itself, on the clean data, before any noise level."""

    preset: str = "small"
    steps: int = 2000
    max_minutes: float = 0.0
    config: Path | None = None
    vocab_size: int = 8000


@dataclass(frozen=True)
class TeacherSpec:
    checkpoint: Path | None = None
    spm: Path | None = None
    vocab: Path | None = None
    train: TeacherTrainSpec | None = None


@dataclass(frozen=True)
class StudentSpec:
    """A named student size: a preset plus `model:`/`training:` overrides."""

    name: str
    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BudgetSpec:
    steps: int
    max_minutes: float = 0.0


@dataclass(frozen=True)
class GenerateSpec:
    beam: int = 5
    soft_targets: int = 8
    max_length: int = 150


@dataclass(frozen=True)
class AdviseSpec:
    enabled: bool = True
    sample: int = 500
    probe_steps: int = 0


@dataclass
class GridSpec:
    """A checked grid: what `kdnmt study` runs and how."""

    path: Path
    src: str
    tgt: str
    data: DataSpec
    teacher: TeacherSpec
    sizes: list[str]
    students: dict[str, StudentSpec]
    noise: list[str]
    methods: list[str]
    decoding: list[str]
    budget: BudgetSpec
    student_config: Path | None = None
    method_options: dict[str, dict[str, float]] = field(default_factory=dict)
    generate: GenerateSpec = field(default_factory=GenerateSpec)
    advise: AdviseSpec = field(default_factory=AdviseSpec)
    seed: int = 1

    @property
    def beams(self) -> list[int]:
        return [parse_decoding(d, "decoding") for d in self.decoding]

    def preset_of(self, size: str) -> str:
        return self.students[size].preset if size in self.students else size

    def needs_generate(self) -> bool:
        from kdnmt.losses.registry import METHODS

        return any(METHODS[m].needs_teacher for m in self.methods)

    def nbest(self) -> int:
        """seq-inter picks the closest of the n best: 5-best (or the beam if smaller)."""
        return min(5, self.generate.beam) if "seqinter" in self.methods else 1

    def fingerprint(self) -> dict[str, Any]:
        """What every finished cell depends on. Changing any of it under an existing study
        would mix students trained under different conditions in one table, so a rerun
        compares it with the recorded one. The axes (sizes, noise, methods, decoding) may
        grow or shrink: they only decide which cells exist."""
        from kdnmt.fileio import sha256_file

        def files(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {k: files(v) for k, v in value.items()}
            return value

        teacher = files(asdict(self.teacher))
        for key in ("checkpoint", "spm", "vocab"):
            path = getattr(self.teacher, key)
            if path is not None:
                teacher[f"{key}_sha256"] = sha256_file(path)
        return {
            "src": self.src, "tgt": self.tgt,
            "data": files(asdict(self.data)),
            "teacher": teacher,
            "students": {k: files(asdict(v)) for k, v in sorted(self.students.items())},
            "budget": asdict(self.budget),
            "student_config_sha256": (sha256_file(self.student_config)
                                      if self.student_config else None),
            "method_options": self.method_options,
            "generate": {**asdict(self.generate), "nbest": self.nbest()},
            "seed": self.seed,
        }


# -- strict reading --------------------------------------------------------------------------

class _Reader:
    """Typed access to one mapping of the grid file, with errors that name the key."""

    def __init__(self, source: str, base: Path, where: str, value: Any, allowed: tuple[str, ...],
                 required: tuple[str, ...] = ()):
        self.source, self.base, self.where = source, base, where
        prefix = f"'{where}' " if where else ""
        check(isinstance(value, dict), f"{source}: {prefix or 'the grid '}must be a mapping")
        problems = Problems(source)
        for key in value:
            if key not in allowed:
                dotted = f"{where}.{key}" if where else str(key)
                with problems.collect():
                    raise KdnmtError(f"{source}: unknown key '{dotted}' "
                                     f"(valid keys: {', '.join(allowed)})")
        problems.raise_if_any()
        for key in required:
            check(key in value and value[key] is not None,
                  f"{source}: missing key '{self.name(key)}'")
        self.value: dict[str, Any] = value

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        return self.value.get(key) is not None

    def get(self, key: str, kind: type, default: Any = None,
            ok: Callable[[Any], bool] | None = None, rule: str = "") -> Any:
        if not self.has(key):
            return default
        value = coerce(self.value[key], kind, f"{self.source}: {self.name(key)}")
        if ok is not None and not ok(value):
            raise KdnmtError(f"{self.source}: {self.name(key)} must be {rule}, got {value!r}")
        return value

    def path(self, key: str, must_exist: bool = True) -> Path | None:
        text = self.get(key, str)
        if text is None:
            return None
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.base / path
        if must_exist:
            check(path.is_file(), f"{self.source}: {self.name(key)}: {path} does not exist")
        return path

    def names(self, key: str, required: bool = True) -> list[str]:
        """A list of names; numbers are accepted as their text (YAML reads `0` as an int)."""
        value = self.value.get(key)
        if value is None:
            check(not required, f"{self.source}: missing key '{self.name(key)}'")
            return []
        check(isinstance(value, list) and value,
              f"{self.source}: {self.name(key)} must be a non-empty list, got {value!r}")
        out = []
        for item in value:
            check(isinstance(item, str | int) and not isinstance(item, bool),
                  f"{self.source}: {self.name(key)}: expected names, got {item!r}")
            out.append(str(item))
        duplicates = sorted({x for x in out if out.count(x) > 1})
        check(not duplicates, f"{self.source}: {self.name(key)} lists "
              f"{', '.join(duplicates)} more than once")
        return out

    def sub(self, key: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> _Reader:
        return _Reader(self.source, self.base, self.name(key), self.value.get(key) or {},
                       allowed, required)


def _positive(x: Any) -> bool:
    return x >= 1


def _non_negative(x: Any) -> bool:
    return x >= 0


def _data(top: _Reader, src: str, tgt: str) -> DataSpec:
    from kdnmt.corpus.text import resolve_side

    r = top.sub("data", ("train", "valid", "test", "train_lines", "valid_lines", "test_lines"),
                required=("train", "valid", "test"))
    prefixes: dict[str, Any] = {}  # split -> Path (Any: mypy cannot tell these keys from DataSpec's ints)
    for split in ("train", "valid", "test"):
        text = r.get(split, str)
        prefix = Path(text).expanduser()
        prefix = prefix if prefix.is_absolute() else top.base / prefix
        for lang in (src, tgt):
            try:
                resolve_side(prefix, lang)
            except KdnmtError as exc:
                raise KdnmtError(f"{top.source}: data.{split}: {exc}") from None
        prefixes[split] = prefix
    lines = {f"{s}_lines": r.get(f"{s}_lines", int, 0, _non_negative, ">= 0 (0 = every line)")
             for s in ("train", "valid", "test")}
    return DataSpec(**prefixes, **lines)


def _teacher(top: _Reader) -> TeacherSpec:
    from kdnmt.config import PRESETS

    r = top.sub("teacher", ("checkpoint", "spm", "vocab", "train"))
    if r.has("train"):
        check(not (r.has("checkpoint") or r.has("spm") or r.has("vocab")),
              f"{top.source}: teacher: give either checkpoint/spm/vocab (adopt a teacher) or "
              "train (train one in the study), not both")
        t = r.sub("train", ("preset", "steps", "max_minutes", "config", "vocab_size"))
        preset = t.get("preset", str, "small")
        check(preset in PRESETS, f"{top.source}: teacher.train.preset '{preset}' is not a "
              f"preset (valid presets: {', '.join(PRESETS)})")
        return TeacherSpec(train=TeacherTrainSpec(
            preset=preset, steps=t.get("steps", int, 2000, _positive, ">= 1"),
            max_minutes=t.get("max_minutes", float, 0.0, _non_negative, ">= 0"),
            config=t.path("config"),
            vocab_size=t.get("vocab_size", int, 8000, lambda x: x >= 16, ">= 16")))
    check(r.has("checkpoint") and r.has("spm"),
          f"{top.source}: teacher needs checkpoint and spm (adopt a trained teacher, vocab "
          "optional) or train: {{preset: ..., steps: ...}} (train one in the study)")
    return TeacherSpec(checkpoint=r.path("checkpoint"), spm=r.path("spm"), vocab=r.path("vocab"))


def _students(top: _Reader) -> dict[str, StudentSpec]:
    from kdnmt.config import PRESETS, apply_overrides, preset_config

    if not top.has("students"):
        return {}
    raw = top.value["students"]
    check(isinstance(raw, dict), f"{top.source}: students must be a mapping of names to "
          "{preset: ..., model: {...}, training: {...}}")
    out = {}
    for name in raw:
        check(isinstance(name, str), f"{top.source}: students: name {name!r} is not text")
        try:
            check_name(name, "student name")
        except KdnmtError as exc:
            raise KdnmtError(f"{top.source}: students: {exc}") from None
    r = top.sub("students", tuple(raw))
    for name in raw:
        s = r.sub(name, ("preset", "model", "training"), required=("preset",))
        preset = s.get("preset", str)
        check(preset in PRESETS, f"{top.source}: students.{name}.preset '{preset}' is not a "
              f"preset (valid presets: {', '.join(PRESETS)})")
        overrides = {k: s.value[k] for k in ("model", "training") if s.has(k)}
        config = preset_config(preset)
        try:
            apply_overrides(config, overrides, f"{top.source}: students.{name}")
            config.validate()
        except KdnmtError as exc:
            raise KdnmtError(f"{top.source}: students.{name}: {exc}") from None
        out[name] = StudentSpec(name=name, preset=preset, overrides=overrides)
    return out


def _method_options(top: _Reader, methods: list[str]) -> dict[str, dict[str, float]]:
    from kdnmt.distill import METHODS, DistillOptions, check_method

    if not top.has("method_options"):
        return {}
    r = top.sub("method_options", tuple(METHODS))
    out: dict[str, dict[str, float]] = {}
    for method, options in r.value.items():
        check(isinstance(options, dict) and all(isinstance(k, str) for k in options),
              f"{top.source}: method_options.{method} must be a mapping like {{alpha: 0.5}}")
        for key, value in options.items():
            check(isinstance(value, int | float) and not isinstance(value, bool),
                  f"{top.source}: method_options.{method}.{key}: expected a number, got {value!r}")
        hparams = {k: float(v) for k, v in options.items()}
        try:
            check_method(DistillOptions(run=Path("."), name="x", method=method, hparams=hparams))
        except KdnmtError as exc:
            raise KdnmtError(f"{top.source}: method_options.{method}: {exc}") from None
        out[method] = hparams
    unused = sorted(set(out) - set(methods))
    check(not unused, f"{top.source}: method_options for {', '.join(unused)}, which is not in "
          "methods")
    return out


def _advise(top: _Reader) -> AdviseSpec:
    value = top.value.get("advise", True)
    if isinstance(value, bool):
        return AdviseSpec(enabled=value)
    r = top.sub("advise", ("enabled", "sample", "probe_steps"))
    return AdviseSpec(enabled=r.get("enabled", bool, True),
                      sample=r.get("sample", int, 500, _positive, ">= 1"),
                      probe_steps=r.get("probe_steps", int, 0, _non_negative, ">= 0"))


TOP_KEYS = ("src", "tgt", "data", "teacher", "sizes", "students", "noise", "methods",
            "decoding", "budget", "student_config", "method_options", "generate", "advise",
            "seed")


def grid_from_dict(raw: Any, source: str, base: Path) -> GridSpec:
    """Check a parsed grid file; ``base`` is the directory relative paths resolve against."""
    from kdnmt.config import PRESETS, load_yaml, resolve_config
    from kdnmt.corpus.noise import NOISE_LEVELS
    from kdnmt.distill import METHODS
    from kdnmt.prepare import check_lang

    top = _Reader(source, base, "", raw, TOP_KEYS,
                  required=("src", "tgt", "data", "teacher", "sizes", "noise", "methods",
                            "decoding", "budget"))
    src, tgt = top.get("src", str), top.get("tgt", str)
    try:
        check_lang(src, "src")
        check_lang(tgt, "tgt")
    except KdnmtError as exc:
        raise KdnmtError(f"{source}: {exc}") from None
    check(src != tgt, f"{source}: src and tgt are both '{src}'")
    students = _students(top)
    sizes = top.names("sizes")
    for size in sizes:
        check(size != "teacher", f"{source}: 'teacher' cannot be a student size (it names the "
              "teacher in every run of the study)")
        check(size in students or size in PRESETS,
              f"{source}: size '{size}' is neither a preset ({', '.join(PRESETS)}) nor a name "
              f"under students ({', '.join(students) or 'none given'})")
    noise = top.names("noise")
    for level in noise:
        check(level in NOISE_LEVELS, f"{source}: noise level '{level}' is unknown (valid "
              f"levels: {', '.join(NOISE_LEVELS)}; quote \"0\" or write 0)")
    methods = top.names("methods")
    for method in methods:
        check(method in METHODS,
              f"{source}: method '{method}' is unknown (methods: {', '.join(METHODS)})")
        check(not METHODS[method].fine_tuning,
              f"{source}: method '{method}' is a fine-tuning stage, not a grid method: it "
              f"starts from a trained student (`kdnmt distill --method {method} --init-from "
              "NAME`)")
    decoding = top.names("decoding")
    beams = [parse_decoding(d, f"{source}: decoding") for d in decoding]
    check(len(set(beams)) == len(beams), f"{source}: decoding lists the same beam twice")
    b = top.sub("budget", ("steps", "max_minutes"), required=("steps",))
    budget = BudgetSpec(steps=b.get("steps", int, None, _positive, ">= 1"),
                        max_minutes=b.get("max_minutes", float, 0.0, _non_negative,
                                          ">= 0 (0 = no limit)"))
    g = top.sub("generate", ("beam", "soft_targets", "max_length"))
    generate = GenerateSpec(beam=g.get("beam", int, 5, _positive, ">= 1"),
                            soft_targets=g.get("soft_targets", int, 8, _positive, ">= 1"),
                            max_length=g.get("max_length", int, 150, _positive, ">= 1"))
    student_config = top.path("student_config")
    if student_config is not None:
        data = load_yaml(student_config)
        check(isinstance(data, dict), f"{student_config}: the configuration must be a mapping")
    spec = GridSpec(
        path=Path(source), src=src, tgt=tgt, data=_data(top, src, tgt), teacher=_teacher(top),
        sizes=sizes, students=students, noise=noise, methods=methods, decoding=decoding,
        budget=budget, student_config=student_config,
        method_options=_method_options(top, methods), generate=generate,
        advise=_advise(top),
        seed=top.get("seed", int, 1, _non_negative, ">= 0"))
    # Every student configuration resolves (bad shapes fail now, not after hours of training).
    for size in sizes:
        try:
            resolve_config(spec.preset_of(size), None, student_overrides(spec, size))
        except KdnmtError as exc:
            raise KdnmtError(f"{source}: size '{size}': {exc}") from None
    return spec


def load_grid(path: Path) -> GridSpec:
    """Read and check a grid file."""
    path = Path(path)
    check(path.exists(), f"grid file {path} does not exist")
    check(path.is_file(), f"grid file {path} is not a file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise KdnmtError(f"grid file {path} is not valid YAML ({first})") from None
    check(raw is not None, f"grid file {path} is empty")
    return grid_from_dict(raw, str(path), path.resolve().parent)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def student_overrides(spec: GridSpec, size: str) -> dict[str, Any]:
    """The `model:`/`training:` overrides of one student size, in order of precedence:
    ``student_config``, then the size's own overrides, then the grid's seed."""
    from kdnmt.config import load_yaml

    merged: dict[str, Any] = {}
    if spec.student_config is not None:
        merged = _merge(merged, load_yaml(spec.student_config))
    if size in spec.students:
        merged = _merge(merged, spec.students[size].overrides)
    return _merge(merged, {"training": {"seed": spec.seed}})


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)
