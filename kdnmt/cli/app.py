"""The `kdnmt` Typer application: commands in pipeline order."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from kdnmt import __version__
from kdnmt.cli.advise import advise_command
from kdnmt.cli.compare import compare_command
from kdnmt.cli.distill import distill_command
from kdnmt.cli.doctor import doctor_command
from kdnmt.cli.evaluate import eval_command
from kdnmt.cli.export import export_command
from kdnmt.cli.generate import generate_command
from kdnmt.cli.noise import noise_command
from kdnmt.cli.plot import plot_command
from kdnmt.cli.prepare import prepare_command
from kdnmt.cli.study import study_command
from kdnmt.cli.train import train_command
from kdnmt.cli.translate import translate_command

# Typer vendors its own Click; its UsageError is reached through the public BadParameter.
_USAGE_ERROR: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class KdnmtGroup(TyperGroup):
    """The root command. A usage error (an unknown option, ``--steps many``, a value that is
    not one of an option's choices) is bad input like any other: one ``error:`` line naming the
    command and exit code 1, instead of Click's boxed usage message and exit code 2
    (``kdnmt COMMAND --help`` shows the usage). Done here rather than in :func:`main` so that
    the tests' in-process runner sees exactly what a user's shell sees."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        extra["windows_expand_args"] = windows_expand_args  # Click's, passed on unchanged
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        from rich.markup import escape

        from kdnmt.cli.common import err_console

        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False,
                                  **extra)
        except _USAGE_ERROR as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "kdnmt"
            # A choice's message comes from a validator: "Value error, 'x' is not one of ..."
            message = exc.format_message().replace("Value error, ", "")
            err_console.print(f"[bold red]error:[/] {escape(where)}: {escape(message)} "
                              f"(see {escape(where)} --help)", soft_wrap=True)
            sys.exit(1)
        except typer.Abort:
            err_console.print("[yellow]interrupted[/]")
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    name="kdnmt",
    cls=KdnmtGroup,
    help="Knowledge distillation for neural machine translation: a small, fast student from a "
         "big teacher. Every command reads and writes one run directory.",
    no_args_is_help=True,
    # `kdnmt --install-completion`: the shell then completes commands, options and choices
    add_completion=True,
    pretty_exceptions_enable=False,
)

app.command("noise")(noise_command)
app.command("prepare")(prepare_command)
app.command("train")(train_command)
app.command("advise")(advise_command)
app.command("generate")(generate_command)
app.command("distill")(distill_command)
app.command("export")(export_command)
app.command("translate")(translate_command)
app.command("eval")(eval_command)
app.command("compare")(compare_command)
app.command("plot")(plot_command)
app.command("doctor")(doctor_command)
app.command("study")(study_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kdnmt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """kdnmt: knowledge distillation for NMT on OpenNMT-py and CTranslate2."""


def main() -> None:
    """The `kdnmt` entry point (usage errors: see :class:`KdnmtGroup`)."""
    app()
