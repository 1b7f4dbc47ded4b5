"""One exception type for every failure a user can fix.

Library code raises :class:`KdnmtError` with a message that names the problem and where
(file, line, key); only the CLI turns it into one red line and exit code 1. Anything else that
escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import NoReturn


class KdnmtError(Exception):
    """A user-facing error: bad input, an incompatible artefact, a refused overwrite."""


def check(condition: object, message: str) -> None:
    """Raise :class:`KdnmtError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise KdnmtError(message)


def fail(message: str) -> NoReturn:
    """Raise :class:`KdnmtError`; reads better than ``check(False, ...)``."""
    raise KdnmtError(message)
