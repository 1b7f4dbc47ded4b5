"""What every command shares: consoles, the error boundary, option types."""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from kdnmt.config import PRECISIONS
from kdnmt.devices import COMPUTE_TYPES, DEVICES
from kdnmt.errors import KdnmtError, check

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")



def choices(names: Iterable[str]) -> Any:
    """The type of an option that takes one of ``names``, kdnmt's own list of them (methods,
    presets, quantizations...), so that the list stays the only one: ``--help`` shows the
    choices, shell completion offers them, and anything else is a usage error (one line,
    exit code 1: see :class:`kdnmt.cli.app.KdnmtGroup`).

    A type built at run time is no type to mypy: an annotation that calls ``choices()`` carries
    ``# type: ignore[valid-type]`` (mypy takes the parameter as ``Any``), and the shared aliases
    below show mypy the ``str`` the choice holds."""
    return Literal[tuple(names)]


def renamed(old: str, new: str, old_value: T | None, new_value: T, default: T) -> T:
    """The value of an option given under its new name or its old, hidden one (kept working
    for a while, with a note on stderr); both at once is an error."""
    if old_value is None:
        return new_value
    check(new_value == default, f"{old} is the old name of {new}: give {new} only")
    err_console.print(f"[yellow]note:[/] {old} is now {new} (the old name will be removed)",
                      soft_wrap=True)
    return old_value


RunOption = Annotated[Path, typer.Option("--run", help="Run directory (created by `kdnmt prepare`).")]
# Options shared by `train` and `distill` (both train through the same bridge).
WorldSizeOption = Annotated[int, typer.Option(
    help="Data-parallel processes (CPU: gloo; cuda: one GPU each, NCCL); 1 = this process only.")]
DeviceOption = Annotated[str, typer.Option(help="cpu, or cuda (GPU ranks 0..N-1).")]
InitFromOption = Annotated[str | None, typer.Option(
    help="Warm start: begin with the weights of this finished model of the run (same "
         "architecture); optimizer and step start afresh.")]
if TYPE_CHECKING:
    _Precision = str
else:
    _Precision = choices(PRECISIONS)
PrecisionOption = Annotated[_Precision | None, typer.Option(
    help="Training arithmetic on the CPU: fp32, bf16 (autocast; faster on CPUs with "
         "avx512_bf16 or AMX), or auto (bf16 where the CPU has it natively, else fp32). "
         "Overrides training.precision [default: fp32].")]
# Options shared by the commands that decode with CTranslate2 (generate, eval, translate);
# the names and checks are kdnmt.devices', the same as train's and distill's --device.
if TYPE_CHECKING:
    _DecodeDevice = str
    _ComputeType = str
else:
    _DecodeDevice = choices(DEVICES)
    _ComputeType = choices(COMPUTE_TYPES)
DecodeDeviceOption = Annotated[_DecodeDevice, typer.Option(
    "--device", help="Where CTranslate2 decodes: cpu, or cuda (the GPUs CTranslate2 sees).")]
ComputeTypeOption = Annotated[_ComputeType, typer.Option(
    help="CTranslate2 compute type. default: the conversion's own on cpu (int8), "
         "int8_float16 (float16 for a float conversion) on cuda; any other is checked "
         "against what CTranslate2 supports on the device.")]


#: errno -> one line for an environment failure; {path} is the file it happened to.
_OS_ERRORS = {
    errno.ENOSPC: "disk full while writing {path}",
    errno.EDQUOT: "disk quota exceeded while writing {path}",
    errno.EFBIG: "file too large while writing {path} (file size limit, see `ulimit -f`)",
    errno.EACCES: "permission denied: {path}",
    errno.EPERM: "operation not permitted: {path}",
    errno.EROFS: "read-only file system: cannot write {path}",
    errno.ENOENT: "no such file or directory: {path}",
    errno.ENOTDIR: "not a directory: a part of {path} is a file",
    errno.EISDIR: "{path} is a directory, expected a file",
    errno.ENAMETOOLONG: "file name too long: {path}",
}
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def os_error_message(exc: OSError) -> str | None:
    """One line for an environment failure (a full disk, a file size limit, permissions, a
    path that is missing or of the wrong kind), naming the path; None for any other OSError,
    which is a bug and keeps its traceback."""
    template = _OS_ERRORS.get(exc.errno) if exc.errno is not None else None
    if template is None:
        return None
    path = "a file" if exc.filename is None else str(exc.filename)
    if exc.filename2 is not None:
        path += f" (-> {exc.filename2})"
    message = template.format(path=path)
    if exc.errno in _NO_ROOM:
        # kdnmt writes every artefact under a temporary name and renames it when complete
        message += ": free space (or raise the limit) and rerun; finished outputs are kept"
    return message


def error_boundary(func: F) -> F:
    """Turn a user-facing error into one red line on stderr and exit code 1.

    Only :class:`KdnmtError` and environment failures (a full disk, a file size limit,
    permissions, a path that is missing or of the wrong kind: :func:`os_error_message`,
    interrupted) are translated; anything else is a bug and keeps its traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KdnmtError as exc:
            # escaped: a path or a range like "[0, 1]" in a message is text, not Rich markup
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(code=1) from None
        except OSError as exc:
            message = os_error_message(exc)
            if message is None:
                raise
            err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
            raise typer.Exit(code=1) from None
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
