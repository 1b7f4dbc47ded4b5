"""What every command shares: consoles, the error boundary, option types."""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from kdnmt.errors import KdnmtError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])

RunOption = Annotated[Path, typer.Option("--run", help="Run directory (created by `kdnmt prepare`).")]


def error_boundary(func: F) -> F:
    """Turn a user-facing error into one red line on stderr and exit code 1.

    Only :class:`KdnmtError` and a few environment failures (disk full, interrupted) are
    translated; anything else is a bug and keeps its traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KdnmtError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
            raise typer.Exit(code=1) from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                where = f" writing {exc.filename}" if exc.filename else ""
                err_console.print(f"[bold red]error:[/] disk full{where}; nothing was "
                                  "left half-written: free space and rerun", soft_wrap=True)
                raise typer.Exit(code=1) from None
            raise
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: finished work is kept; rerun to resume")
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def limit_torch_threads() -> None:
    """Respect KDNMT_THREADS (used by the tests to stay on one core)."""
    threads = os.environ.get("KDNMT_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
