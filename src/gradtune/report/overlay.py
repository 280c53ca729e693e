"""Several runs on one page (`gradtune report RUN1 RUN2 ... --output DIR`): their training loss and
validation metric overlaid (against the step and against training time), a table of their best
metrics, and the config keys in which they differ. Read from the runs' files alone (no model)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from gradtune import __version__
from gradtune.config.reference import value
from gradtune.errors import GradtuneError
from gradtune.report import overview, plots
from gradtune.report.build import checked_output
from gradtune.report.collect import RunData, collect
from gradtune.report.html import Page, Section, Table, Text, write


def names(runs: list[RunData]) -> list[str]:
    """Each run's folder name; the whole path where two runs share a name."""
    short = [r.name for r in runs]
    return [s if short.count(s) == 1 else str(r.path) for s, r in zip(short, runs)]


def differences(runs: list[RunData], labels: list[str]) -> Section:
    flat = [overview.flat(r.config) for r in runs]
    keys = sorted({k for f in flat for k in f if k != "output_dir"})
    differ = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
    if not differ:
        return Section("config", "Config differences", [Text("The runs' configs are the same (but for output_dir).")])
    rows = [[k, *[value(f[k]) if k in f else "(not set)" for f in flat]] for k in differ]
    return Section("config", "Config differences", [Table(["key", *labels], rows, "the keys whose values differ")])


def curves(runs: list[RunData], labels: list[str]) -> list[Section]:
    loss = {n: ([r["step"] for r in run.kind("train")], [r["loss"] for r in run.kind("train")])
            for n, run in zip(labels, runs) if run.kind("train")}
    by_time = {n: ([r["elapsed"] for r in run.kind("train")], [r["loss"] for r in run.kind("train")])
               for n, run in zip(labels, runs) if run.kind("train")}
    sections = [Section("loss", "Training loss", [
        plots.overlay(loss, "loss_vs_step.png", "training loss vs step", "step", "loss"),
        plots.overlay(by_time, "loss_vs_time.png", "training loss vs training time", "training seconds", "loss")])]
    metrics = list(dict.fromkeys(run.metric for run in runs))
    blocks = []
    for i, metric in enumerate(metrics):  # runs chosen on different metrics: one plot per metric
        series = {n: ([r["step"] for r in run.kind("eval") if metric in r],
                      [r[metric] for r in run.kind("eval") if metric in r]) for n, run in zip(labels, runs)}
        series = {n: s for n, s in series.items() if s[0]}
        if series:
            blocks.append(plots.overlay(series, f"metric_{i}.png", f"validation {metric} vs step", "step", metric,
                                        markers=True))
    sections.append(Section("validation", "Validation metric", blocks or [Text("No run logged an evaluation.")]))
    return sections


def best_table(runs: list[RunData], labels: list[str]) -> Section:
    rows = []
    for label, run in zip(labels, runs):
        best, step = run.best()
        train = run.kind("train")
        rows.append([label, run.task, (run.metadata or {}).get("base_model") or run.config.get("model", {}).get("name"),
                     run.metric, best, step, train[-1]["loss"] if train else None, train[-1]["step"] if train else None,
                     run.train_seconds, run.samples_per_s])
    table = Table(["run", "task", "model", "metric", "best", "best step", "final train loss", "steps",
                   "train time (s)", "samples / s"], rows, f"{len(runs)} runs")
    scored = [(row[4], row[0], run.mode) for row, run in zip(rows, runs) if row[4] is not None]
    blocks = [table]
    if scored and len({r.metric for r in runs}) == 1:
        pick = max if scored[0][2] == "max" else min
        value, label, _ = pick(scored, key=lambda s: s[0])
        blocks.append(Text(f"Best {runs[0].metric}: {label} ({value:.4g})."))
    return Section("best", "Best metrics", blocks)


def write_overlay(runs: list[str | Path], output: str | Path) -> Path:
    """Write the page comparing `runs` to `output`; returns the path of index.html."""
    if len(runs) < 2:
        raise GradtuneError("an overlay needs at least two runs")
    data = [collect(r) for r in runs]
    labels = names(data)
    sections = [best_table(data, labels), *curves(data, labels), differences(data, labels)]
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = Page(f"{len(data)} runs compared", f"{', '.join(labels)} · written {written}", sections)
    footer = f"gradtune {__version__} · gradtune report {' '.join(map(str, runs))} --output {output}"
    return write(checked_output(Path(output)), page, footer)
