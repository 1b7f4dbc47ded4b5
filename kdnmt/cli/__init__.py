"""The `kdnmt` command line: one thin Typer module per command (parse, call, print)."""
