"""Unit tests of the error boundary's environment failures and of how a failed write names
its file: the pieces the disk-full and unreadable-file cases of the matrix rely on."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer

from kdnmt.cli.common import error_boundary, os_error_message
from kdnmt.errors import KdnmtError
from tests.faults.helpers import temp_files
from tests.helpers import ENV


@pytest.mark.parametrize("exc, expected", [
    (OSError(errno.ENOSPC, "No space left on device", "/r/data/train.de"),
     "disk full while writing /r/data/train.de: free space (or raise the limit) and rerun; "
     "finished outputs are kept"),
    (OSError(errno.EDQUOT, "Disk quota exceeded", "/r/x"), "disk quota exceeded while writing /r/x"),
    (OSError(errno.EFBIG, "File too large"),
     "file too large while writing a file (file size limit, see `ulimit -f`)"),
    (PermissionError(errno.EACCES, "Permission denied", "/r/cfg.yaml"),
     "permission denied: /r/cfg.yaml"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/r/x"),
     "/r/x is a directory, expected a file"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/r/a", None, "/r/b"),
     "no such file or directory: /r/a (-> /r/b)"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/r/f/x"),
     "not a directory: a part of /r/f/x is a file"),
    (OSError(errno.EROFS, "Read-only file system", "/r/x"),
     "read-only file system: cannot write /r/x"),
])
def test_os_error_message(exc: OSError, expected: str) -> None:
    message = os_error_message(exc)
    assert message is not None and message.startswith(expected), message
    assert "\n" not in message


def test_other_os_errors_are_bugs() -> None:
    assert os_error_message(OSError(errno.EIO, "Input/output error", "/r/x")) is None
    assert os_error_message(OSError("no errno")) is None


def _boundary(exc: BaseException):  # type: ignore[no-untyped-def]
    @error_boundary
    def command() -> None:
        raise exc

    return command


def test_boundary_turns_a_full_disk_into_one_line(capsys) -> None:
    with pytest.raises(typer.Exit) as exit_info:
        _boundary(OSError(errno.ENOSPC, "No space left on device", "/r/m/model_step_10.pt"))()
    assert exit_info.value.exit_code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: disk full while writing /r/m/")


def test_boundary_keeps_the_traceback_of_other_errors() -> None:
    with pytest.raises(OSError, match="Input/output"):
        _boundary(OSError(errno.EIO, "Input/output error", "/r/x"))()
    with pytest.raises(ValueError):
        _boundary(ValueError("a bug"))()


def test_messages_are_text_not_rich_markup(capsys) -> None:
    """A path or a range in square brackets is printed as it is (it used to vanish, and a
    '[/x]' crashed the boundary with a MarkupError)."""
    message = "run [exp1] in [0, 1] at /tmp/[/x] and [bold]"
    with pytest.raises(typer.Exit):
        _boundary(KdnmtError(message))()
    assert capsys.readouterr().err == f"error: {message}\n"
    with pytest.raises(typer.Exit):
        _boundary(PermissionError(errno.EACCES, "Permission denied", "/tmp/[red]/x"))()
    assert capsys.readouterr().err == "error: permission denied: /tmp/[red]/x\n"


def _limited(code: str, limit: int, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run Python ``code`` unable to write a file beyond ``limit`` bytes (EFBIG)."""
    prelude = textwrap.dedent(f"""
        import resource, signal, sys
        from pathlib import Path
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        tmp = Path({str(tmp_path)!r})
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], env=ENV,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_a_failed_write_names_its_own_file_among_several(tmp_path: Path) -> None:
    """Two outputs open at once (prepare writes source and target together): the error names
    the one whose write failed, not the innermost one; neither is left behind."""
    result = _limited("""
        from kdnmt.fileio import atomic_open
        try:
            with atomic_open(tmp / "big.txt") as big, atomic_open(tmp / "small.txt") as small:
                for _ in range(1000):
                    big.write("x" * 1000 + "\\n")
                    small.write("y\\n")
        except OSError as exc:
            print(exc.errno, exc.filename)
    """, 100_000, tmp_path)
    assert result.stdout.split() == [str(errno.EFBIG), str(tmp_path / "big.txt")], result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_failed_write_in_a_directory_names_the_directory(tmp_path: Path) -> None:
    result = _limited("""
        from kdnmt.fileio import atomic_dir
        try:
            with atomic_dir(tmp / "store") as d:
                (d / "ids.bin").write_bytes(b"x" * 200_000)
        except OSError as exc:
            print(exc.errno, exc.filename)
    """, 100_000, tmp_path)
    assert result.stdout.split() == [str(errno.EFBIG), str(tmp_path / "store")], result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_failed_checkpoint_save_is_an_oserror_naming_the_checkpoint(tmp_path: Path) -> None:
    """torch.save reports a failed write as an opaque RuntimeError; OpenNMT-py's checkpoint
    writes (shim 4) surface the OSError behind it, named after the checkpoint."""
    result = _limited("""
        import torch
        from kdnmt.onmt_bridge.shims import _AtomicTorch
        try:
            _AtomicTorch.save({"w": torch.zeros(100_000)}, str(tmp / "model_step_10.pt"))
        except OSError as exc:
            print(exc.errno, exc.filename)
    """, 100_000, tmp_path)
    assert result.stdout.split() == [str(errno.EFBIG), str(tmp_path / "model_step_10.pt")], \
        result.stderr
    assert not temp_files(tmp_path) and not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize(("args", "needle"), [
    (("train", "--run", "r", "--steps", "many"), "Invalid value for '--steps'"),
    (("distill", "--bogus"), "No such option: --bogus"),
    (("nosuchcommand",), "No such command"),
    (("prepare",), "Missing option '--run'"),
])
def test_usage_errors_are_one_line_and_exit_1(args: tuple[str, ...], needle: str) -> None:
    """A wrong type or unknown option on the command line is bad input like any other: one
    error line naming the command, exit code 1 (not Click's boxed usage and exit code 2)."""
    from tests.helpers import assert_one_error_line, kdnmt, run

    result = run(kdnmt(*args), timeout=60)
    assert result.returncode == 1, result.stderr
    line = assert_one_error_line(result.stderr, needle)
    assert "--help" in line and "Traceback" not in result.stderr
