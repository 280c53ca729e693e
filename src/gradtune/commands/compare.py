"""`gradtune compare CONFIG --vary key=v1,v2 ...`."""

from __future__ import annotations

from pathlib import Path

import typer

from gradtune.commands.app import app, friendly_errors, out


@app.command("compare")
@friendly_errors
def compare_command(
    config: Path = typer.Argument(..., help="YAML config file"),
    overrides: list[str] | None = typer.Argument(None, help="dotted key=value, applied to every variant"),
    vary: list[str] = typer.Option(..., "--vary", help="key=v1,v2,... (repeatable; every combination is trained)"),
    output: Path | None = typer.Option(None, "--output", help="folder for it all; default <output_dir>/compare"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier comparison in that folder"),
) -> None:
    """Train every combination of the --vary values (same seed and data) and compare them."""
    from gradtune.experiments.compare import compare, table

    result = compare(config, vary, overrides or [], output, overwrite=overwrite)
    out.print(table(result))
    out.print(f"Wrote {result.table_path} and plots {', '.join(p.name for p in result.plot_paths)}")
