"""``onmt_translate`` with kdnmt's shims applied, for benchmarks and comparisons.

OpenNMT-py's own translator imports every transform (spaCy, fastText) and loads checkpoints
with torch's safe loader; without the shims of :mod:`.shims` it fails on torch 2.13. Usage:
``python -m kdnmt.onmt_bridge.onmt_translate -model M.pt -src S -output O ...``.
"""

from __future__ import annotations

from kdnmt.onmt_bridge import shims


def main() -> None:
    shims.install()
    from onmt.bin.translate import main as onmt_main

    onmt_main()


if __name__ == "__main__":
    main()
