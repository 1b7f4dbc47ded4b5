"""The IWSLT14 recipe's split logic on a tiny local archive (no network)."""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path

from tests.helpers import REPO


def _module():
    path = REPO / "recipes" / "iwslt14-de-en" / "prepare_iwslt14.py"
    spec = importlib.util.spec_from_file_location("prepare_iwslt14", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _train(lang: str, n: int) -> str:
    lines = ["<url>http://www.ted.com/talks/x</url>", "<keywords>talks</keywords>",
             "<speaker>Someone</speaker>", "<talkid>1</talkid>",
             f"<title>Title {lang}</title>", f"<description>About {lang}</description>"]
    lines += [f"{lang} sentence {i}" for i in range(1, n + 1)]
    return "\n".join(lines) + "\n"


def _xml(lang: str, name: str, n: int) -> str:
    segs = [f'<seg id="{i}"> {lang} {name} seg {i} it\u2019s </seg>' for i in range(1, n + 1)]
    return "<mteval><srcset><doc docid=\"1\">\n" + "\n".join(segs) + "\n</doc></srcset></mteval>\n"


def _archive(path: Path, module) -> Path:
    files = {"train.tags.de-en.de": _train("de", 48), "train.tags.de-en.en": _train("en", 48)}
    for name in module.TEST_SETS:
        for lang in ("de", "en"):
            files[f"{name}.de-en.{lang}.xml"] = _xml(lang, name, 2)
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"de-en/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_fairseq_splits(tmp_path: Path) -> None:
    module = _module()
    archive = _archive(tmp_path / "de-en.tgz", module)
    counts = module.prepare(module.read_archive(archive), tmp_path / "out")
    # 48 sentences + title + description = 50 pairs; pairs 23 and 46 go to valid
    assert counts == {"train": 48, "valid": 2, "test": 10}
    train_de = (tmp_path / "out" / "train.de").read_text().splitlines()
    assert train_de[:2] == ["Title de", "About de"]
    assert not any("<" in line for line in train_de)
    assert (tmp_path / "out" / "valid.en").read_text().splitlines() == \
        ["en sentence 21", "en sentence 44"]
    test_en = (tmp_path / "out" / "test.en").read_text().splitlines()
    assert test_en[0] == "en IWSLT14.TED.dev2010 seg 1 it's"
    assert test_en[2].startswith("en IWSLT14.TEDX.dev2012")
