"""`gradtune plan CONFIG [key=value ...] [--time 10m] [--memory 4GB] [--json]`: what a run will cost
before it starts (tokens, time, memory, checkpoint size), and what fits a budget."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from gradtune.commands.app import app, friendly_errors, out


def duration(seconds: float) -> str:
    """90 -> '1 min 30 s', 5400 -> '1 h 30 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{int(minutes)} min {seconds % 60:.0f} s"
    return f"{int(minutes // 60)} h {minutes % 60:.0f} min"


def size(mb: float) -> str:
    return f"{mb / 1024:.2f} GB" if mb >= 1024 else f"{mb:.1f} MB"


def plan_table(p: dict[str, Any]) -> Table:
    table = Table(title="gradtune plan")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_column("how", style="dim")
    rows = [
        ("examples", f"{p['examples']:,}", "training rows (features)"),
        ("tokens / epoch", f"{p['tokens_per_epoch']:,}", "counted from the data"),
        ("padded tokens / epoch", f"{p['padded_tokens_per_epoch']:,} ({p['padding_percent']}% padding)",
         "counted from the real batches"),
        ("steps", f"{p['total_steps']:,} ({p['steps_per_epoch']:,} per epoch)", "counted"),
        ("s / step", f"{p['seconds_per_step']:.3f}", f"timed on {p['measured']['timed_steps']} batch sizes"),
        ("time per epoch", duration(p["epoch_seconds"]), "training loop"),
        ("training (train_seconds)", duration(p["train_seconds"]), "training loop, all epochs"),
        ("evaluation", f"{duration(p['eval_seconds'])} ({p['evaluations']} evaluations)",
         f"timed on {p['measured']['timed_eval_batches']} batches"),
        ("whole run", duration(p["run_seconds"]), "setup + training + evaluation + checkpoints"),
        ("peak memory", size(p["peak_memory_mb"]), "peak RSS of the process, measured"),
        ("checkpoint", f"{size(p['checkpoint_mb'])} x {p['checkpoints']} saves", "written once, measured"),
        ("model/", size(p["model_mb"]), "written once, measured"),
        ("parameters", f"{p['trainable_parameters']:,} of {p['parameters']:,} train", "counted"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


@app.command("plan")
@friendly_errors
def plan_command(
    config: Path = typer.Argument(..., help="YAML config file"),
    overrides: list[str] | None = typer.Argument(None, help="dotted key=value, e.g. data.max_length=64"),
    time_budget: str | None = typer.Option(None, "--time", help="time the whole run may take: 10m, 1h30m, 90s"),
    memory_budget: str | None = typer.Option(None, "--memory", help="peak memory allowed: 4GB, 512MB"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of the table"),
) -> None:
    """Predict a run's tokens, time, memory and checkpoint size by timing a few real steps; with a
    budget, suggest changes that fit it."""
    from gradtune.perf.budget import parse_duration, parse_size, suggest
    from gradtune.perf.plan import make_plan

    seconds = parse_duration(time_budget) if time_budget is not None else None  # bad budgets fail before any work
    megabytes = parse_size(memory_budget) if memory_budget is not None else None
    plan = make_plan(config, overrides or [])
    result = plan.as_dict()
    fitting = suggest(plan, seconds, megabytes)
    if seconds is not None or megabytes is not None:
        result["budget"] = {"seconds": seconds, "memory_mb": megabytes,
                            "fits": (seconds is None or result["run_seconds"] <= seconds)
                            and (megabytes is None or result["peak_memory_mb"] <= megabytes)}
        result["suggestions"] = [{"overrides": s.overrides, "run_seconds": round(s.run_seconds, 1),
                                  "peak_memory_mb": round(s.peak_memory_mb, 1), "note": s.note} for s in fitting]
    if as_json:
        print(json.dumps(result))
        return
    out.print(plan_table(result))
    if "budget" not in result:
        return
    asked = " ".join(f"{flag} {value}" for flag, value in (("--time", time_budget), ("--memory", memory_budget))
                     if value)
    needs = f"this run needs ~{duration(result['run_seconds'])} and {size(result['peak_memory_mb'])}"
    if result["budget"]["fits"]:
        out.print(f"{asked}: fits ({needs})")
    elif not fitting:
        out.print(f"{asked}: {needs}; none of the changes tried (strategy, max_length, batch, epochs, rows) fits")
    else:
        options = ", or ".join(f"{' '.join(s.overrides)} (est. {duration(s.run_seconds)}, {size(s.peak_memory_mb)})"
                               for s in fitting)
        out.print(f"{asked}: {needs}; fits: {options}", soft_wrap=True)
        out.print(f"e.g. {shlex.join(['gradtune', 'train', str(config), *(overrides or []), *fitting[0].overrides])}",
                  soft_wrap=True)
