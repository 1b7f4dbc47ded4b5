"""`kdnmt noise`: deterministic text-complexity injection on the source side.

Wei et al. (2024, "Sentence-level or token-level?", arXiv 2404.14827) vary the complexity of
the text a student learns from by adding noise to the sources; this module does the same for
any corpus, reproducibly. Four operations, each with its own probability (:class:`NoiseSpec`):

- word dropout: a word disappears (a line never loses all of its words);
- local swap: a word changes place with its right neighbour (each word moves at most once);
- replacement: a word becomes a word drawn from a vocabulary (by default the input's own words);
- character noise: one character of a word is deleted, inserted, substituted or transposed.

Determinism is the point: the random generator of line ``i`` is seeded from ``(seed, i)``
through sha256 (never Python's salted ``hash()``), so the same input, level, seed and vocabulary
give byte-identical output on any machine, and output line ``i`` does not depend on the other
lines. Scripts written without spaces (Han, kana, Thai, Lao, Khmer, Myanmar) have no words to
drop or swap at the whitespace level, so each of their characters counts as one word; the
original spacing around every word is kept, which makes level ``"0"`` the identity.
"""

from __future__ import annotations

import hashlib
import lzma
import random
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kdnmt.corpus.text import iter_lines
from kdnmt.errors import check
from kdnmt.fileio import atomic_path


@dataclass(frozen=True)
class NoiseSpec:
    """Per-word probabilities of each operation, applied in this order: dropout, swap,
    replacement, character noise."""

    word_dropout: float = 0.0
    swap: float = 0.0
    replace: float = 0.0
    char: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            check(0.0 <= value <= 1.0, f"noise probability {name} must be in [0, 1], got {value}")


#: The documented levels (docs/noise.md). "moderate" touches about one word in six, "high"
#: about one in two (1 - (1 - p)^4 with p the per-operation probability); neither is taken
#: from the paper, which does not publish its noise rates: they are this project's choice,
#: scaled so that "high" visibly hurts a teacher while "moderate" stays readable.
NOISE_LEVELS: dict[str, NoiseSpec] = {
    "0": NoiseSpec(),
    "moderate": NoiseSpec(word_dropout=0.05, swap=0.05, replace=0.05, char=0.05),
    "high": NoiseSpec(word_dropout=0.15, swap=0.15, replace=0.15, char=0.15),
}

#: Operation names, as the keys of the counts :func:`noise_file` returns.
OPERATIONS = ("word_dropout", "swap", "replace", "char")

# Scripts written without spaces between words: each character is one "word". Ranges: CJK
# symbols and punctuation, kana, CJK unified ideographs (with extension A and the supplementary
# planes), compatibility ideographs, halfwidth/fullwidth forms, Thai, Lao, Myanmar, Khmer.
_CONTINUOUS = (
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3000-\u30ff\u31f0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\U00020000-\U0003134f"
)
_UNIT_RE = re.compile(f"[{_CONTINUOUS}]|[^{_CONTINUOUS}\\s]+")
_WORD_RE = re.compile(r"\S+")


def split_units(line: str) -> tuple[str, list[str], list[str], str]:
    """``(prefix, words, gaps, suffix)`` with ``prefix + words[0] + gaps[1] + words[1] + ...
    + suffix == line``; ``gaps[0]`` is always "". A character of a continuous script is a word
    of its own (with its combining marks), glued to its neighbours by an empty gap."""
    words: list[str] = []
    gaps: list[str] = []
    end = 0
    prefix = ""
    for match in _WORD_RE.finditer(line):
        space = line[end:match.start()]
        if not words:
            prefix, space = space, ""
        for i, unit in enumerate(_UNIT_RE.findall(match.group())):
            if i and unicodedata.category(unit[0])[0] == "M":
                words[-1] += unit  # a combining mark (Thai vowel, tone) stays on its letter
                continue
            words.append(unit)
            gaps.append(space if i == 0 else "")
        end = match.end()
    return (prefix, words, gaps, line[end:]) if words else (line, [], [], "")


def words_of(lines: Iterable[str]) -> list[str]:
    """The sorted set of words of ``lines`` (the default replacement vocabulary). Sorted by code
    point, so the same text gives the same list on every machine."""
    found: set[str] = set()
    for line in lines:
        found.update(split_units(line)[1])
    return sorted(found)


def line_rng(seed: int, line_number: int) -> random.Random:
    """The generator of one line: seeded from ``(seed, line_number)`` through sha256, so a line's
    noise depends on nothing else and not on Python's per-process string hashing."""
    digest = hashlib.sha256(f"kdnmt-noise\x00{seed}\x00{line_number}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _char_noise(word: str, alphabet: Sequence[str], rng: random.Random) -> str:
    """One character edit inside ``word``; new characters come from the line's own alphabet,
    so the script stays the line's script."""
    op = rng.randrange(4)
    if len(word) < 2 and op in (0, 3):
        op = 2  # deleting or transposing the only character: substitute it instead
    if op == 0:  # delete
        at = rng.randrange(len(word))
        return word[:at] + word[at + 1:]
    if op == 1:  # insert
        at = rng.randrange(len(word) + 1)
        return word[:at] + rng.choice(alphabet) + word[at:]
    if op == 2:  # substitute, with a different character where the line has one
        at = rng.randrange(len(word))
        others = [c for c in alphabet if c != word[at]] or list(alphabet)
        return word[:at] + rng.choice(others) + word[at + 1:]
    at = rng.randrange(len(word) - 1)  # transpose two neighbours
    return word[:at] + word[at + 1] + word[at] + word[at + 2:]


def noise_line(line: str, spec: NoiseSpec, rng: random.Random, vocabulary: Sequence[str],
               counts: dict[str, int] | None = None) -> str:
    """``line`` with noise of ``spec``, drawn from ``rng`` (see :func:`line_rng`).

    Replacement words are drawn from ``vocabulary`` (no replacement if it is empty). A line
    without words (empty or blank) comes back unchanged; a line with words keeps at least one.
    Each operation performed is added to ``counts[operation]`` when given.
    """
    prefix, words, gaps, suffix = split_units(line)
    if not words:
        return line
    alphabet = sorted({c for w in words for c in w})
    done = dict.fromkeys(OPERATIONS, 0)
    # Every draw is made whatever the probabilities, so the sequence of draws (and hence the
    # output for a given seed) depends only on the line, not on which operations fire.
    keep = [rng.random() >= spec.word_dropout for _ in words]
    if not any(keep):
        keep[rng.randrange(len(words))] = True
    kept_words: list[str] = []
    kept_gaps: list[str] = []
    for word, gap, kept in zip(words, gaps, keep, strict=True):
        if kept:
            kept_words.append(word)
            kept_gaps.append(gap if kept_words[1:] else "")
        else:
            done["word_dropout"] += 1
    words, gaps = kept_words, kept_gaps
    i = 0
    while i < len(words) - 1:
        if rng.random() < spec.swap:
            words[i], words[i + 1] = words[i + 1], words[i]
            done["swap"] += 1
            i += 2  # local: a word moves by one position at most
        else:
            i += 1
    for i in range(len(words)):
        draw = rng.random()
        if vocabulary and draw < spec.replace:
            words[i] = vocabulary[rng.randrange(len(vocabulary))]
            done["replace"] += 1
    for i in range(len(words)):
        if rng.random() < spec.char:
            words[i] = _char_noise(words[i], alphabet, rng) or words[i]
            done["char"] += 1
    if counts is not None:
        for key, value in done.items():
            counts[key] = counts.get(key, 0) + value
    return prefix + "".join(g + w for g, w in zip(gaps, words, strict=True)) + suffix


def level_spec(level: str) -> NoiseSpec:
    """The :class:`NoiseSpec` of a named level, or a clear error naming the valid ones."""
    check(level in NOISE_LEVELS,
          f"unknown noise level '{level}' (valid levels: {', '.join(NOISE_LEVELS)})")
    return NOISE_LEVELS[level]


def read_vocabulary(path: Path) -> list[str]:
    """A replacement vocabulary file: one word per line (the first whitespace-separated field,
    so a ``word<TAB>count`` list works too); blank lines are skipped. Sorted and deduplicated."""
    found = {line.split()[0] for line in iter_lines(Path(path)) if line.strip()}
    check(found, f"{path} holds no word (expected one word per line)")
    return sorted(found)


def _same_file(a: Path, b: Path) -> bool:
    if not b.exists():
        return False
    try:
        return a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


def noise_file(src: Path, dst: Path, level: str, seed: int,
               vocabulary: Sequence[str] | None = None) -> dict[str, Any]:
    """Write ``src`` (plain or .xz, strict UTF-8) with noise of ``level`` to ``dst`` (atomically;
    xz-compressed if its name ends in .xz). ``vocabulary`` defaults to the words of ``src``.

    Returns what was done: ``lines``, ``words`` (in the input), ``changed_lines`` and one count
    per operation (:data:`OPERATIONS`), plus the level, its probabilities and the seed.
    """
    src, dst = Path(src), Path(dst)
    spec = level_spec(level)
    check(isinstance(seed, int) and seed >= 0, f"--seed must be an integer >= 0, got {seed}")
    check(not _same_file(src, dst), f"--out {dst} is the input file: choose another output")
    check(not (dst.exists() and dst.is_dir()), f"--out {dst} is a directory")
    if vocabulary is None:
        vocabulary = words_of(iter_lines(src))  # also validates the whole input first
    vocabulary = list(vocabulary)
    counts: dict[str, int] = dict.fromkeys(OPERATIONS, 0)
    lines = words = changed = 0
    opener: Any = lzma.open if dst.suffix == ".xz" else open
    with atomic_path(dst) as tmp:
        with opener(tmp, "wt", encoding="utf-8", newline="\n") as out:
            for number, line in enumerate(iter_lines(src), start=1):
                noisy = noise_line(line, spec, line_rng(seed, number), vocabulary, counts)
                out.write(noisy + "\n")
                lines += 1
                words += len(split_units(line)[1])
                changed += noisy != line
    return {"input": str(src), "output": str(dst), "level": level, "seed": seed,
            "probabilities": asdict(spec), "vocabulary_words": len(vocabulary),
            "lines": lines, "words": words, "changed_lines": changed, **counts}

