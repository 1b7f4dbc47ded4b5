"""Every path a reader of the documentation is pointed to exists in the repository.

A user has the repository and nothing else: README.md, docs/, the recipes' and the demo data's
READMEs must not send them to a file that is not there, or to the maintainers' ``../shared``
directory beside the repository. Checked: every relative markdown link (and its ``#anchor``,
with GitHub's heading slugs), every backticked path that starts at a top-level entry of the
repository or with ``./``/``../``, and the same paths in fenced code blocks.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Top-level entries of the repository a documented path may start from (run outputs such as
#: ``runs/`` or ``models/NAME/`` are not repository paths).
TOP = {"kdnmt", "docs", "tests", "recipes", "data", "bench", "requirements", "Makefile",
       "pyproject.toml", "README.md"}


def _pages() -> list[Path]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "recipes").glob("*/README.md")),
             *sorted((ROOT / "data" / "demo").glob("**/README.md"))]
    return [p for p in pages if p.is_file()]


PAGES = _pages()
FENCE = re.compile(r"^```.*?^```", flags=re.S | re.M)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
TICKED = re.compile(r"`([^`\n]+)`")
#: The maintainers' directory beside the repository, in any spelling a page may use.
SHARED = re.compile(r"\.\./shared\b|(?<![\w-])shared/(teacher|data|design)\b")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    text = re.sub(r"`|\*\*|\*", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading: its text
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = _slug(match.group(1))
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _expand(path: str) -> list[str]:
    """``a.{de,en}.xz`` -> both names (shell brace expansion, one level)."""
    match = re.search(r"\{([^{}]*,[^{}]*)\}", path)
    if not match:
        return [path]
    return [p for choice in match.group(1).split(",")
            for p in _expand(path[:match.start()] + choice + path[match.end():])]


def _exists(base: Path, path: str) -> bool:
    for candidate in _expand(path):
        target = (base / candidate).resolve()
        if not target.is_relative_to(ROOT):
            return False
        if any(c in candidate for c in "*?["):
            if not glob.glob(str(target)):
                return False
        elif not target.exists() and not glob.glob(glob.escape(str(target)) + ".*"):
            return False  # neither a file nor a corpus prefix (PREFIX.de, PREFIX.de.xz)
    return True


#: A placeholder in a documented path: an upper-case part (NAME, SRC, SPLIT.LANG).
PLACEHOLDER = re.compile(r"(^|[/.])(?!README|LICENSE)[A-Z][A-Z_]+([/.]|$)")


def _repo_path(token: str) -> str | None:
    """The repository path a backticked or code-block token names, or None if it names none
    (commands, options, run-directory paths, URLs, placeholders). A pytest node id names its
    file."""
    token = token.strip().strip("\"'(),;:[]").split("::", 1)[0]
    if not token or " " in token or "://" in token or "$" in token or "=" in token:
        return None
    if PLACEHOLDER.search(token):
        return None
    if token.startswith(("./", "../")):
        return token
    first = token.split("/", 1)[0]
    if first == "data" and not token.startswith("data/demo"):
        return None  # a run directory's data/ (data/train.sp.de), not the repository's
    if first in TOP and ("/" in token or token in TOP):
        return token
    return None


def _problems(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    rel = page.relative_to(ROOT)
    problems = [f"{rel}: mentions ../shared, which users of the repository do not have: "
                f"{line.strip()[:100]!r}"
                for line in text.splitlines() if SHARED.search(line)]
    prose = FENCE.sub("", text)
    for pattern in (LINK, IMAGE):
        for target in pattern.findall(prose):
            if re.match(r"^[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if path and not _exists(page.parent, path):
                problems.append(f"{rel}: link to a missing file: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                problems.append(f"{rel}: link to a missing heading: {target}")
    tokens = TICKED.findall(prose)
    for block in FENCE.findall(text):
        tokens += block.split()[1:]  # [0] is the fence and its language
    for token in tokens:
        path = _repo_path(token)
        if path is None:
            continue
        base = page.parent if path.startswith(("./", "../")) else ROOT
        if not _exists(base, path.rstrip(".")):
            problems.append(f"{rel}: names a path that is not in the repository: {path}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_documented_path_exists(page: Path) -> None:
    problems = _problems(page)
    assert not problems, "\n".join(problems)


def test_the_checker_finds_what_it_should(tmp_path: Path) -> None:
    """The checks themselves: each kind of broken reference is reported, good ones are not."""
    page = ROOT / "docs" / "__link_check_probe__.md"
    page.write_text("# Title\n\n## A `code` heading: here\n\n"
                    "[ok](train.md) [ok](#a-code-heading-here) [ok](../data/demo/README.md)\n"
                    "`docs/train.md` `data/demo/de-en/train.{de,en}.xz` `models/NAME/x.yaml`\n"
                    "[bad](nope.md) [bad](train.md#no-such-heading) `docs/nope.md`\n"
                    "`../../outside.txt` see ../shared/teacher\n"
                    "```sh\nkdnmt train --config recipes/demo/nope.yaml\n```\n",
                    encoding="utf-8")
    try:
        found = _problems(page)
    finally:
        page.unlink()
    assert len(found) == 6, "\n".join(found)
    for needle in ("nope.md", "#no-such-heading", "docs/nope.md", "outside.txt", "../shared",
                   "recipes/demo/nope.yaml"):
        assert any(needle in line for line in found), needle


def _table_rows(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|") and "---" not in line]


def test_readme_demo_figures_are_the_ones_measured_in_docs_demo() -> None:
    """The README quotes the demo's table from docs/demo.md: when the demo is measured again
    (a new bundled teacher), both must change together. The first table of docs/demo.md is
    the default demo's; later ones (another teacher) are other runs."""
    demo: dict[tuple[str, str], list[str]] = {}
    for row in _table_rows((ROOT / "docs" / "demo.md").read_text(encoding="utf-8")):
        if len(row) >= 5 and row[1] in ("1", "5"):
            demo.setdefault((row[0].split()[0].strip("`"), row[1]), row[2:5])  # BLEU, chrF, TER
    quoted = [row for row in _table_rows((ROOT / "README.md").read_text(encoding="utf-8"))
              if row[0].split()[0].strip("`") in ("teacher", "ce", "seq") and len(row) == 6]
    assert len(quoted) == 3, quoted
    for name, greedy, bleu5, chrf5, ter5, _ in quoted:
        model = name.split()[0].strip("`")
        assert greedy == demo[(model, "1")][0], (model, greedy)
        assert [bleu5, chrf5, ter5] == demo[(model, "5")], model
