"""Hyper-parameter search on Optuna: train the config many times with values drawn from a search
space, keep the best, and stop early the trials that trail the others.

    gradtune sweep my.yaml --space space.yaml --trials 20

The search space names config keys (as overrides do) and what each may be:

    train.lr: {low: 1.0e-5, high: 1.0e-3, log: true}   # a float, log-uniform
    train.epochs: {low: 1, high: 4}                    # an int (both ends are ints)
    train.warmup_ratio: {low: 0.0, high: 0.2, step: 0.05}
    train.optimizer: [adamw, sgd, rmsprop]             # one of these

Every trial is one `gradtune.api.train` run (the one training loop) in DIR/trial-NNN, scored on the
config's `train.metric` on validation. Trials report each evaluation to Optuna's pruner, which stops
a trial that trails the earlier ones at the same step (its run says so). The study lives in
DIR/sweep.db (SQLite), so a killed sweep, run again, continues: finished trials stay, the trial that
was cut off runs again from its last checkpoint, and the sweep stops at --trials finished trials.
At the end: DIR/sweep.md (the trials), DIR/best.yaml (the config with the best values) and plots.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich import box
from rich.table import Table

from gradtune import api
from gradtune.config import Config, as_config
from gradtune.errors import GradtuneError
from gradtune.folders import FolderLock
from gradtune.rundir import RunDir
from gradtune.tasks import get_task
from gradtune.tracking.console import console, log

NOT_SEARCHED = ("output_dir", "train.metric", "train.metric_mode", "report")  # the sweep owns these
PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class Param:
    """One dimension of the search space."""

    key: str  # a dotted config key
    kind: str  # "float", "int" or "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial: Any) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def corners(self) -> list[Any]:
        """The values that validate the dimension: both ends, or every choice."""
        if self.kind == "categorical":
            return list(self.choices)
        return [int(self.low), int(self.high)] if self.kind == "int" else [self.low, self.high]


@dataclass
class SweepResult:
    trials: list[dict[str, Any]]  # one per finished trial: number, state, values, metric, run_dir
    best: dict[str, Any] | None  # the best trial's row
    metric: str
    table_path: Path
    best_config: Path | None
    plot_paths: list[Path] = field(default_factory=list)


def read_space(space: dict | str | Path) -> list[Param]:
    """The search space from a YAML file or a dict, checked for shape (keys are checked against the
    config by `check_space`)."""
    where = "the search space"
    if not isinstance(space, dict):
        where = str(space)
        try:
            space = yaml.safe_load(Path(space).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GradtuneError(f"--space {space}: no such file") from None
        except yaml.YAMLError as e:
            raise GradtuneError(f"{where}: not valid YAML ({e})") from None
    if not isinstance(space, dict) or not space:
        raise GradtuneError(f"{where}: give config keys and their ranges, e.g. train.lr: {{low: 1.0e-5, high: 1.0e-3, "
                            "log: true}, train.optimizer: [adamw, sgd]")
    return [_param(str(key), spec, where) for key, spec in space.items()]


def _param(key: str, spec: Any, where: str) -> Param:
    if key in NOT_SEARCHED:
        raise GradtuneError(f"{where}: {key} can't be searched (the sweep sets it)")
    if isinstance(spec, list):
        if not spec:
            raise GradtuneError(f"{where}: {key}: the list of choices is empty")
        return Param(key, "categorical", choices=tuple(spec))
    if not isinstance(spec, dict) or not {"low", "high"} <= set(spec):
        raise GradtuneError(f"{where}: {key}: give a list of choices, or {{low: ..., high: ...}} (optionally "
                            f"log: true, step: ...); got {spec!r}")
    unknown = set(spec) - {"low", "high", "log", "step", "type"}
    if unknown:
        raise GradtuneError(f"{where}: {key}: unknown field(s) {', '.join(sorted(unknown))}; use low, high, log, step, "
                            "type (int or float)")
    low, high = spec["low"], spec["high"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low >= high:
        raise GradtuneError(f"{where}: {key}: low and high must be numbers with low < high (got {low!r}, {high!r})")
    kind = spec.get("type") or ("int" if isinstance(low, int) and isinstance(high, int) else "float")
    if kind not in ("int", "float"):
        raise GradtuneError(f"{where}: {key}: type must be int or float (got {kind!r})")
    log_scale = bool(spec.get("log", False))
    if log_scale and low <= 0:
        raise GradtuneError(f"{where}: {key}: a log scale needs low > 0 (got {low})")
    if log_scale and spec.get("step") is not None:
        raise GradtuneError(f"{where}: {key}: choose log or step, not both (Optuna samples one or the other)")
    return Param(key, kind, float(low), float(high), log_scale, spec.get("step"))


def override(key: str, value: Any) -> str:
    """`key=value` as the config reads it back (JSON is YAML: strings, numbers, null, lists)."""
    return f"{key}={value if isinstance(value, str) else json.dumps(value)}"


def check_space(config: Any, overrides: list[str], params: list[Param]) -> Config:
    """Every key exists and every end or choice is a valid value, before any trial trains; the
    config's own errors (with their "did you mean") say what is wrong."""
    base = as_config(config, overrides)
    for p in params:
        for value in p.corners():
            try:
                as_config(config, [*overrides, override(p.key, value)])
            except GradtuneError as e:
                raise GradtuneError(f"search space, {p.key}={value!r}: {e}") from None
    return base


def make_study(output: Path, name: str, base: Config, pruner: str, prune_after: int = 0) -> Any:
    import optuna

    if pruner not in PRUNERS:
        raise GradtuneError(f"--pruner {pruner!r}: use one of {', '.join(PRUNERS)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own lines say what happens
    mode = base.train.metric_mode if base.train.metric_mode != "auto" else get_task(base.task).metric_mode(
        base.train.metric)
    chosen = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=prune_after),
              "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=max(prune_after, 1),
                                                                   max_resource="auto"),
              "none": optuna.pruners.NopPruner}[pruner]()
    return optuna.create_study(storage=f"sqlite:///{output / 'sweep.db'}", study_name=name, load_if_exists=True,
                               direction="maximize" if mode == "max" else "minimize", pruner=chosen,
                               sampler=optuna.samplers.TPESampler(seed=base.train.seed))


def killed(study: Any) -> set[int]:
    """The trials a killed sweep cut off: each was queued again by a trial that `resumes` it."""
    return {t.user_attrs["resumes"] for t in study.trials if "resumes" in t.user_attrs}


def counted(study: Any) -> int:
    """Trials that count towards --trials: finished (complete, pruned or failed), not cut off."""
    from optuna.trial import TrialState

    ended, cut = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL), killed(study)
    return sum(t.state in ended and t.number not in cut for t in study.trials)


def requeue_killed(study: Any) -> int:
    """Trials a killed sweep left RUNNING: ended as failed and queued again with the same values,
    to continue from their last checkpoint in their own folder. Returns how many."""
    from optuna.trial import TrialState

    stale = [t for t in study.trials if t.state == TrialState.RUNNING]
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"resume_dir": t.user_attrs.get("run_dir"), "resumes": t.number})
    return len(stale)


def objective(config: Any, overrides: list[str], params: list[Param], output: Path, base: Config):
    import optuna

    metric = base.train.metric

    def run_trial(trial: Any) -> float:
        values = {p.key: p.suggest(trial) for p in params}
        resume_dir = trial.user_attrs.get("resume_dir")
        run_dir = Path(resume_dir) if resume_dir else output / f"trial-{trial.number:03d}"
        trial.set_user_attr("run_dir", str(run_dir))
        cfg = as_config(config, [*overrides, *(override(k, v) for k, v in values.items()),
                                 override("output_dir", str(run_dir)), "report=false"])
        console.rule(f"trial {trial.number}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                          for k, v in values.items()))
        pruned: list[int] = []

        def on_eval(step: int, result: dict[str, Any]) -> str | None:
            trial.report(float(result[metric]), step)
            if trial.should_prune():
                pruned.append(step)
                return f"pruned by the sweep: {metric} {result[metric]:.4f} trails the earlier trials at step {step}"
            return None

        resume = bool(RunDir(run_dir).list_checkpoints())
        try:
            run = api.train(cfg, resume=resume, overwrite=not resume, on_eval=on_eval)
        except GradtuneError as e:
            trial.set_user_attr("error", str(e))
            log.warning(f"trial {trial.number} failed: {e}")
            raise
        if pruned:
            trial.set_user_attr("pruned_at_step", pruned[0])
            raise optuna.TrialPruned()
        if run.best_metric is None or not math.isfinite(run.best_metric):
            raise GradtuneError(f"trial {trial.number}: no validation {metric}: the sweep needs data.validation")
        return float(run.best_metric)

    return run_trial


def sweep(
    config: Config | dict | str | Path, space: dict | str | Path, trials: int, overrides: list[str] | None = None,
    output: str | Path | None = None, jobs: int = 1, study: str | None = None, pruner: str = "median",
    prune_after: int = 0,
) -> SweepResult:
    """Run the sweep (or continue a killed one in the same DIR) until `trials` trials have finished;
    `jobs` > 1 runs that many trials at once, each in its own process with its share of the CPU threads.
    No trial is pruned before step `prune_after` (slow starters, such as LoRA, get that long)."""
    overrides = list(overrides or [])
    if trials < 1 or jobs < 1 or prune_after < 0:
        raise GradtuneError(f"--trials and --jobs must be at least 1, --prune-after at least 0 (got {trials}, {jobs}, "
                            f"{prune_after})")
    params = read_space(space)
    base = check_space(config, overrides, params)
    output = Path(output) if output is not None else Path(base.output_dir) / "sweep"
    with FolderLock(output, "--output", log.warning):  # one sweep per folder; checks it can be written
        return _sweep(config, space, overrides, params, base, output, study or "gradtune-sweep", trials, jobs,
                      (pruner, prune_after))


def _sweep(config: Any, space: Any, overrides: list[str], params: list[Param], base: Config, output: Path, name: str,
           trials: int, jobs: int, pruning: tuple[str, int]) -> SweepResult:
    the_study = make_study(output, name, base, *pruning)
    again = requeue_killed(the_study)
    done = counted(the_study)
    if done or again:
        console.print(f"Continuing study {name!r} in {output / 'sweep.db'}: {done} trial(s) finished"
                      + (f", {again} cut off by the kill to run again" if again else ""))
    remaining = max(trials - done, 0)
    if remaining and jobs == 1:
        the_study.optimize(objective(config, overrides, params, output, base), n_trials=remaining,
                           catch=(GradtuneError,))
    elif remaining:
        _run_processes(config, space, overrides, output, name, pruning, remaining, jobs, base)
    return summarize(the_study, base, params, output)  # its trials are read from sweep.db, workers' too


def run_worker(config: Any, space: Any, overrides: list[str], output: Path, name: str, pruning: tuple[str, int],
               n_trials: int) -> None:
    """Run `n_trials` trials of the study in this process (one of the processes of --jobs)."""
    params = read_space(space)
    base = check_space(config, overrides, params)
    make_study(output, name, base, *pruning).optimize(objective(config, overrides, params, output, base),
                                                      n_trials=n_trials, catch=(GradtuneError,))


def _run_processes(config: Any, space: Any, overrides: list[str], output: Path, name: str, pruning: tuple[str, int],
                   remaining: int, jobs: int, base: Config) -> None:
    """`jobs` worker processes share the remaining trials and the CPU threads; SQLite is their meeting point."""
    if not isinstance(config, (str, Path)) or not isinstance(space, (str, Path)):
        raise GradtuneError("jobs > 1 needs the config and the space as files (each worker process reads them)")
    threads = max(1, (base.train.num_threads or os.cpu_count() or 1) // jobs)
    shares = [remaining // jobs + (i < remaining % jobs) for i in range(jobs)]
    procs = []
    for share in (s for s in shares if s):
        cmd = [sys.executable, "-m", "gradtune", "sweep", str(config), "--space", str(space), "--output", str(output),
               "--study", name, "--pruner", pruning[0], "--prune-after", str(pruning[1]), "--worker-trials", str(share),
               *overrides,
               f"train.num_threads={threads}"]
        procs.append(subprocess.Popen(cmd))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise GradtuneError(f"{sum(1 for c in codes if c)} of {len(procs)} sweep workers failed (exit codes {codes}); "
                            "run the same command again to continue the study")


def summarize(the_study: Any, base: Config, params: list[Param], output: Path) -> SweepResult:
    from optuna.trial import TrialState

    metric = base.train.metric
    rows, cut = [], killed(the_study)
    for t in the_study.trials:
        if t.state == TrialState.RUNNING or t.number in cut:
            continue
        rows.append({"trial": t.number, "state": t.state.name.lower(), **t.params,
                     metric: t.value, "pruned_at_step": t.user_attrs.get("pruned_at_step"),
                     "seconds": round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
                     if t.datetime_complete and t.datetime_start else None,
                     "run_dir": t.user_attrs.get("run_dir"), "error": t.user_attrs.get("error")})
    complete = [r for r in rows if r["state"] == "complete"]
    best = None
    best_config = None
    if complete:
        best_trial = the_study.best_trial
        best = next(r for r in rows if r["trial"] == best_trial.number)
        chosen = as_config(base, [override(k, v) for k, v in best_trial.params.items()])
        best_config = output / "best.yaml"
        best_config.write_text(f"# the best of {len(rows)} sweep trials: trial {best_trial.number}, "
                               f"{metric} {best_trial.value:.4f}\n" + chosen.to_yaml())
    table_path = output / "sweep.md"
    plots = plot(the_study, output) if complete else []
    write_markdown(table_path, rows, params, metric, best, plots)
    return SweepResult(rows, best, metric, table_path, best_config, plots)


def _cells(rows: list[dict[str, Any]], params: list[Param], metric: str) -> tuple[list[str], list[list[str]]]:
    headers = ["trial", "state", *(p.key for p in params), metric, "seconds"]

    def show(v: Any) -> str:
        return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    cells = []
    for r in rows:
        state = r["state"] + (f" at step {r['pruned_at_step']}" if r.get("pruned_at_step") is not None else "")
        cells.append([str(r["trial"]), state, *(show(r.get(p.key)) for p in params), show(r[metric]),
                      show(r["seconds"])])
    return headers, cells


def table(result: SweepResult, params: list[Param]) -> Table:
    headers, cells = _cells(result.trials, params, result.metric)
    t = Table(*headers, box=box.SIMPLE_HEAD, title=f"sweep: {result.metric} on validation")
    for row, r in zip(cells, result.trials):
        best = result.best is not None and r["trial"] == result.best["trial"]
        t.add_row(*row, style="bold green" if best else None)
    return t


def write_markdown(path: Path, rows: list[dict[str, Any]], params: list[Param], metric: str,
                   best: dict[str, Any] | None, plots: list[Path]) -> None:
    headers, cells = _cells(rows, params, metric)
    lines = ["# Sweep", "", f"{len(rows)} trials, scored on validation {metric}."]
    if best:
        lines += ["", f"Best: trial {best['trial']}, {metric} {best[metric]:.4f} "
                      f"({', '.join(f'{p.key}={best.get(p.key)}' for p in params)}); config in best.yaml."]
    lines += ["", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    lines += [""] + [f"![{p.stem}]({p.name})" for p in plots]
    path.write_text("\n".join(lines) + "\n")


def plot(the_study: Any, output: Path) -> list[Path]:
    """Optuna's own plots (matplotlib): the optimization history, the parameters' importances and
    the slice plot (each value tried against the metric). A plot Optuna can't draw yet (e.g.
    importances from one trial) is left out with a note."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis
    from matplotlib.ticker import NullFormatter

    paths = []
    for filename, draw in (("optimization_history.png", vis.plot_optimization_history),
                           ("param_importances.png", vis.plot_param_importances),
                           ("slice.png", vis.plot_slice)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ExperimentalWarning: the matplotlib backend is "experimental"
                axes = draw(the_study)
        except (ValueError, RuntimeError, ZeroDivisionError) as e:
            log.info(f"no {filename}: {e}")
            continue
        all_axes = list(axes.flat) if hasattr(axes, "flat") else [axes]
        figure = all_axes[0].figure
        figure.set_size_inches(max(7.0, 4.0 * len(all_axes)), 4.5)  # a slice panel per parameter
        for ax in all_axes:  # log axes: label the decades only, the minor labels overlap
            ax.xaxis.set_minor_formatter(NullFormatter())
        figure.savefig(output / filename, dpi=100, bbox_inches="tight")
        plt.close(figure)
        paths.append(output / filename)
    return paths
