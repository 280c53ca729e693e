"""`gradtune sweep CONFIG --space SPACE.yaml --trials N [--jobs J] [--study NAME] [key=value ...]`."""

from __future__ import annotations

from pathlib import Path

import typer

from gradtune.commands.app import app, friendly_errors, out


@app.command("sweep")
@friendly_errors
def sweep_command(
    config: Path = typer.Argument(..., help="YAML config file"),
    overrides: list[str] | None = typer.Argument(None, help="dotted key=value, applied to every trial"),
    space: Path = typer.Option(..., "--space", help="YAML search space: key: {low, high[, log, step]} or [choices]"),
    trials: int = typer.Option(20, "--trials", help="finished trials to reach (a rerun continues the study)"),
    jobs: int = typer.Option(1, "--jobs", help="trials at once, each in its own process"),
    study: str | None = typer.Option(None, "--study", help="study name in DIR/sweep.db (default gradtune-sweep)"),
    output: Path | None = typer.Option(None, "--output", help="the sweep's folder; default <output_dir>/sweep"),
    pruner: str = typer.Option("median", "--pruner", help="median, hyperband, or none: stop trailing trials early"),
    prune_after: int = typer.Option(0, "--prune-after", help="no trial is pruned before this step"),
    worker_trials: int | None = typer.Option(None, "--worker-trials", hidden=True,
                                             help="internal: run this many trials as one of --jobs workers"),
) -> None:
    """Search hyper-parameters with Optuna: trials pruned early, the study resumable, the best config written."""
    from gradtune.experiments.sweep import read_space, run_worker, sweep, table

    if worker_trials is not None:  # one of the processes of --jobs J, started by the sweep itself
        run_worker(config, space, overrides or [], output, study, (pruner, prune_after), worker_trials)
        return
    result = sweep(config, space, trials, overrides or [], output, jobs=jobs, study=study, pruner=pruner,
                   prune_after=prune_after)
    out.print(table(result, read_space(space)))
    if result.best_config:
        out.print(f"Best: trial {result.best['trial']}, {result.metric} {result.best[result.metric]:.4f}; "
                  f"its config: {result.best_config}")
    out.print(f"Wrote {result.table_path}" + (f" and plots {', '.join(p.name for p in result.plot_paths)}"
                                              if result.plot_paths else ""))
