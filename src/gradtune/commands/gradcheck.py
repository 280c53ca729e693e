"""`gradtune gradcheck CONFIG`: backpropagation against finite differences."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from gradtune.commands.app import app, friendly_errors, out


@app.command()
@friendly_errors
def gradcheck(
    config: Path = typer.Argument(..., help="YAML config file"),
    overrides: list[str] | None = typer.Argument(None, help="dotted key=value, e.g. model.hidden_sizes=[8]"),
    params: int = typer.Option(5, "--params", help="entries checked per trainable tensor (seeded sample)"),
    batch: int = typer.Option(4, "--batch", help="examples in the batch the loss is taken on"),
    eps: float = typer.Option(1e-6, "--eps", help="finite-difference step"),
    tol: float = typer.Option(1e-5, "--tol", help="largest relative error that passes"),
) -> None:
    """Check backpropagation: autograd's gradient against central finite differences, in float64."""
    from gradtune.experiments.gradcheck import check_gradients

    report = check_gradients(config, overrides or [], params_per_tensor=params, batch_size=batch, eps=eps, tol=tol)
    table = Table(title=f"gradient check: {report.examples} examples, loss {report.loss:.6g}, eps {eps:g}")
    table.add_column("tensor")
    table.add_column("shape")
    table.add_column("entries checked", justify="right")
    table.add_column("worst relative error", justify="right")
    table.add_column("ok")
    for row in report.rows:
        ok = Text("FAIL", "red") if not row.ok else "ok (round-off)" if row.roundoff_limited else Text("ok", "green")
        table.add_row(row.tensor, "x".join(map(str, row.shape)) or "scalar", str(row.checked),
                      f"{row.worst_rel_error:.2e}", ok)
    out.print(table)
    for note in report.notes:
        out.print(f"note: {note}", style="yellow")
    failed = [r for r in report.rows if not r.ok]
    if report.passed:
        # the worst of the tensors whose errors were resolved (round-off-limited ones are noted above)
        worst = max((r for r in report.rows if not r.roundoff_limited), key=lambda r: r.worst_rel_error,
                    default=report.worst)
        out.print(f"PASS: backward agrees with finite differences on all {len(report.rows)} tensors "
                  f"(worst relative error {worst.worst_rel_error:.2e} in {worst.tensor}, tol {tol:g})",
                  highlight=False)
        return
    for row in failed:
        out.print(f"{row.tensor}{list(row.worst_entry)}: autograd {row.autograd:.6g}, finite difference "
                  f"{row.numeric:.6g}", highlight=False)
    out.print(f"FAIL: {len(failed)} of {len(report.rows)} tensors disagree beyond tol {tol:g}: "
              f"{', '.join(r.tensor for r in failed)}", highlight=False)
    raise typer.Exit(1)
