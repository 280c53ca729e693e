"""Train the same config several times, changing a few keys, and compare the runs side by side.

    gradtune compare my.yaml --vary train.optimizer=sgd,adam --vary train.lr=1e-3,3e-3

Every variant of the cartesian product of the --vary lists is trained by `gradtune.api.train`
(the one training loop) with the config's seed and data, into DIR/<variant-name>. Then one table
(DIR/compare.md) and three overlay plots (PNG) answer "which optimizer / lr / batch size is best?".
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from gradtune import api
from gradtune.config import Config, as_config
from gradtune.errors import GradtuneError
from gradtune.folders import FolderLock
from gradtune.rundir import RunDir
from gradtune.tasks import get_task
from gradtune.tracking.console import console, log
from gradtune.tracking.metrics_log import read_metrics

PLOTS = {  # file name -> (x field, y field, record kind, title)
    "loss_vs_step.png": ("step", "loss", "train", "training loss vs step"),
    "metric_vs_step.png": ("step", None, "eval", "validation {metric} vs step"),  # None: train.metric
    "loss_vs_time.png": ("elapsed", "loss", "train", "training loss vs training time (s)"),
}


@dataclass
class CompareResult:
    rows: list[dict[str, Any]]  # one per variant: its varied values (full dotted keys) and its results
    table_path: Path
    plot_paths: list[Path] = field(default_factory=list)
    metric: str = "accuracy"  # the config's train.metric, which every variant is compared on
    varied: list[str] = field(default_factory=list)  # the --vary keys, in order


@dataclass
class Variant:
    name: str  # also its folder name under DIR
    values: dict[str, Any]  # full dotted key -> value as resolved by the config
    cfg: Config


def parse_vary(vary: dict[str, list] | list[str]) -> dict[str, list[str]]:
    """`["train.lr=1e-3,3e-3"]` or `{"train.lr": [1e-3, 3e-3]}` -> {key: [override text, ...]}."""
    if isinstance(vary, dict):
        # non-strings go through JSON, which YAML reads back as the same value (None -> null)
        lists = {k: vs if isinstance(vs, (list, tuple)) else [vs] for k, vs in vary.items()}
        return {k: [v if isinstance(v, str) else json.dumps(v) for v in vs] for k, vs in lists.items()}
    parsed: dict[str, list[str]] = {}
    for item in vary:
        key, sep, raw = item.partition("=")
        values = [v.strip() for v in raw.split(",")]
        if not sep or not key.strip() or not all(values):
            raise GradtuneError(f"--vary {item!r} is not key=value1,value2,... (example: train.lr=1e-3,3e-3)")
        if key.strip() in parsed:
            raise GradtuneError(f"--vary {key.strip()} is given twice; list all its values in one --vary")
        parsed[key.strip()] = values
    return parsed


def labels(keys: list[str]) -> dict[str, str]:
    """Column and folder labels: the last key segment (lr) unless two keys share it."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: short if last.count(short) == 1 else key for key, short in zip(keys, last)}


def _lookup(cfg: Config, key: str) -> Any:
    node: Any = cfg.model_dump(mode="json")
    for part in key.split("."):
        node = node[part]
    return node


def plan(config: Any, vary: dict[str, list[str]], overrides: list[str], output: Path) -> list[Variant]:
    """Resolve and validate every variant's config before anything trains, so a typo or a bad
    value fails in a second rather than after the first variants have trained."""
    if not vary or not all(vary.values()):
        raise GradtuneError("nothing to compare: give at least one --vary key=value1,value2,...")
    if "train.metric" in vary:  # the table ranks every variant on the one metric of the config
        raise GradtuneError("train.metric can't be varied: every variant is compared on the config's metric")
    label = labels(list(vary))
    variants: list[Variant] = []
    for combo in itertools.product(*vary.values()):
        pairs = [f"{key}={value}" for key, value in zip(vary, combo)]
        try:
            cfg = as_config(config, [*overrides, *pairs])
        except GradtuneError as e:
            raise GradtuneError(f"variant {','.join(pairs)}: {e}") from None
        values = {key: _lookup(cfg, key) for key in vary}
        # names from the resolved values, so 1e-3 and 0.001 name (and are) the same variant
        name = ",".join(f"{label[key]}={value}" for key, value in values.items())
        name = re.sub(r"[^\w.,=+-]", "_", name)  # a path like model.name=/x/y stays one folder
        if any(v.name == name for v in variants):
            raise GradtuneError(f"two variants are both {name}: remove the repeated --vary value")
        variants.append(Variant(name, values, cfg.model_copy(update={"output_dir": str(output / name)})))
    return variants


def summarize(variant: Variant, run: Any, metric: str) -> dict[str, Any]:
    """One table row: the run's own numbers (final/best metric, time) plus the last logged loss."""
    train_records = [r for r in read_metrics(RunDir(run.run_dir).metrics) if r["kind"] == "train"]
    return {
        "variant": variant.name, **variant.values,
        "final_metric": run.metrics.get(metric), "best_metric": run.best_metric, "best_step": run.best_step,
        "final_loss": train_records[-1]["loss"] if train_records else None,
        "train_seconds": run.train_seconds, "steps": run.steps, "samples_per_s": run.samples_per_second,
        "run_dir": str(run.run_dir),
    }


def _columns(rows: list[dict[str, Any]], keys: list[str], metric: str) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells, shared by the terminal table and compare.md."""
    fmt = {"final_metric": "{:.4f}", "best_metric": "{:.4f}", "best_step": "{}", "final_loss": "{:.4f}",
           "train_seconds": "{:.1f}", "steps": "{}", "samples_per_s": "{:.1f}"}
    headers = [*labels(keys).values(), f"final {metric}", f"best {metric}", "best step", "final train loss",
               "train time (s)", "steps", "samples/s"]
    cells = [[str(row[k]) for k in keys] + ["-" if row[k] is None else f.format(row[k]) for k, f in fmt.items()]
             for row in rows]
    return headers, cells


def table(result: CompareResult) -> Table:
    headers, cells = _columns(result.rows, result.varied, result.metric)
    # light borders: nine columns fit a 100-column terminal without abbreviated headers
    out = Table(title=f"compare ({result.table_path})", box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for i, header in enumerate(headers):
        out.add_column(header, justify="left" if i < len(result.varied) else "right")
    for row in cells:
        out.add_row(*row)
    return out


def write_markdown(path: Path, rows: list[dict[str, Any]], keys: list[str], cfg: Config, plots: list[Path]) -> None:
    metric = cfg.train.metric
    headers, cells = _columns(rows, keys, metric)
    lines = [f"# compare: {len(rows)} variants", "",
             "Each row is the config with that row's values and nothing else changed (same data; same seed, "
             f"{cfg.train.seed}, unless varied). Its run is the folder named after the values, next to this file.", "",
             "| " + " | ".join(headers) + " |",
             "|" + "---|" * len(keys) + "---:|" * (len(headers) - len(keys))]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    scored = [r for r in rows if r["best_metric"] is not None]
    if scored:
        mode = cfg.train.metric_mode if cfg.train.metric_mode != "auto" else get_task(cfg.task).metric_mode(metric)
        best = (max if mode == "max" else min)(scored, key=lambda r: r["best_metric"])
        lines += ["", f"Best {metric}: **{best['variant']}** ({best['best_metric']:.4f} at step {best['best_step']})."]
    lines += ["", *(f"![{p.stem.replace('_', ' ')}]({p.name})" for p in plots)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot(output: Path, variants: list[Variant], metric: str) -> list[Path]:
    # the Agg canvas directly, not pyplot: no GUI needed, and the caller's pyplot backend is untouched
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = {v.name: read_metrics(RunDir(output / v.name).metrics) for v in variants}
    paths = []
    for filename, (x, y, kind, title) in PLOTS.items():
        fig = Figure(figsize=(7, 4.5))
        ax = fig.add_subplot()
        for name, recs in records.items():
            points = [(r[x], r[y or metric]) for r in recs if r["kind"] == kind]
            if points:
                ax.plot(*zip(*points), marker="." if kind == "eval" else None, label=name)
        ax.set(title=title.format(metric=metric), xlabel="training seconds" if x == "elapsed" else "step",
               ylabel=y or metric)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
        FigureCanvasAgg(fig).print_png(str(output / filename))
        paths.append(output / filename)
    return paths


def compare(
    config: Config | dict | str | Path, vary: dict[str, list] | list[str], overrides: list[str] | None = None,
    output: str | Path | None = None, overwrite: bool = False,
) -> CompareResult:
    """Train every combination of the `vary` values and write DIR/compare.md plus three PNG plots
    (DIR defaults to <output_dir>/compare). A DIR that holds an earlier comparison is replaced only
    with `overwrite`."""
    overrides = list(overrides or [])
    base = as_config(config, overrides)
    output = Path(output) if output is not None else Path(base.output_dir) / "compare"
    parsed = parse_vary(vary)
    variants = plan(config, parsed, overrides, output)
    with FolderLock(output, "--output", log.warning):  # one comparison per folder; checks it can be written
        earlier = (output / "compare.md").exists() or any(RunDir(output / v.name).holds_a_run() for v in variants)
        if earlier and not overwrite:
            raise GradtuneError(f"--output {output} already holds a comparison; replace it with --overwrite (Python: "
                                "overwrite=True), or choose another --output")
        return _train_all(variants, output, base, list(parsed))


def _train_all(variants: list[Variant], output: Path, base: Config, varied: list[str]) -> CompareResult:
    rows = []
    for i, variant in enumerate(variants, 1):
        console.rule(f"variant {i}/{len(variants)}: {variant.name}")
        try:
            run = api.train(variant.cfg, overwrite=True)  # the one training loop
        except GradtuneError as e:
            raise GradtuneError(f"variant {variant.name}: {e}") from None
        rows.append(summarize(variant, run, base.train.metric))
    plot_paths = plot(output, variants, base.train.metric)
    write_markdown(output / "compare.md", rows, varied, base, plot_paths)
    return CompareResult(rows, output / "compare.md", plot_paths, base.train.metric, varied)
