"""`kdnmt doctor`: check the installation and, optionally, a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kdnmt.cli.common import console, error_boundary

STYLE = {"ok": "green", "warn": "yellow", "FAIL": "bold red"}


@error_boundary
def doctor_command(
    run: Annotated[Path | None, typer.Option(help="Also check this run directory.")] = None,
) -> None:
    """Check versions, OpenNMT-py shims, a run's checksums and free disk."""
    from kdnmt.doctor import doctor

    checks = doctor(run)
    table = Table(title="kdnmt doctor")
    for column in ("check", "status", "detail"):
        table.add_column(column)
    for c in checks:
        table.add_row(c.name, f"[{STYLE[c.status]}]{c.status}[/]", c.detail)
    console.print(table)
    failed = [c for c in checks if c.status == "FAIL"]
    if failed:
        raise typer.Exit(code=1)
