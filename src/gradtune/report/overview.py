"""The sections every run's report has, read from its files alone: the run at a glance, training
curves (loss, learning rate), validation metrics, gradient health per layer, the data, time and
machine, and the config."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import yaml

from gradtune.report import plots
from gradtune.report.collect import RunData
from gradtune.report.html import Code, Facts, Section, Table, Text

MAX_EVAL_ROWS = 30  # rows of the validation table (evenly spaced, the best and the last always in)


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m} min" if hours else f"{m} min {s} s" if m else f"{seconds:.1f} s"


def summary(run: RunData) -> Section:
    best, best_step = run.best()
    train = run.kind("train")
    meta = run.metadata or {}
    facts: list[tuple[str, Any]] = [
        ("task", run.task), ("model", meta.get("base_model") or run.config.get("model", {}).get("name")),
        ("strategy", run.setup.get("strategy") or run.config.get("strategy", {}).get("method")),
        (f"best {run.metric}", best), ("best at step", best_step),
        ("steps", train[-1]["step"] if train else None), ("epochs", train[-1].get("epoch") if train else None),
        ("final training loss", train[-1]["loss"] if train else None),
        ("training time", _duration(run.train_seconds)), ("samples / s", run.samples_per_s)]
    facts += [(f"test {k}", v) for k, v in run.test_metrics.items() if isinstance(v, (int, float))][:4]
    end = next(iter(run.kind("end")[-1:]), {})  # how training ended (logs of older runs have no such record)
    started = run.setup.get("started")
    facts += [("ended", end.get("status")),
              ("started", datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if started
               else None)]
    blocks = [Facts([(k, v) for k, v in facts if v is not None])]
    if end.get("error"):
        blocks.append(Text(f"Training ended with an error: {end['error']}", note=True))
    if run.metadata is None:
        blocks.append(Text("No saved model (model/gradtune.json): training stopped before its first evaluation, "
                           "so there are curves but no predictions.", note=True))
    return Section("summary", "Summary", blocks)


def training(run: RunData) -> Section:
    train = [r for r in run.kind("train") if isinstance(r.get("loss"), (int, float))]
    if not train:
        return Section("training", "Training", [Text("No training step was logged.", note=True)])
    skipped = [r["step"] for r in run.kind("skip")]
    blocks = [plots.training([r["step"] for r in train], [r["loss"] for r in train], [r.get("lr") for r in train],
                             skipped)]
    logged = run.config.get("train", {}).get("log_every")
    blocks.append(Text(f"Each point is the mean loss of the steps since the one before (train.log_every={logged})."
                       + (f" {len(skipped)} step(s) were skipped for a non-finite loss or gradient." if skipped
                          else "")))
    return Section("training", "Training loss and learning rate", blocks)


def _spaced(records: list[dict], keep: set[int]) -> list[dict]:
    """At most MAX_EVAL_ROWS records, evenly spaced, always holding the steps in `keep`."""
    if len(records) <= MAX_EVAL_ROWS:
        return records
    every = len(records) / MAX_EVAL_ROWS
    picked = {round(i * every) for i in range(MAX_EVAL_ROWS)}
    return [r for i, r in enumerate(records) if i in picked or r["step"] in keep]


def validation(run: RunData) -> Section:
    evals = run.kind("eval")
    if not evals:
        return Section("validation", "Validation", [Text("No evaluation was logged (no validation data, or training "
                                                         "stopped before the first one).", note=True)])
    names = run.metric_names()
    best, best_step = run.best()
    series = {m: [r.get(m) for r in evals] for m in names[:6]}
    blocks = [plots.metrics([r["step"] for r in evals], series, best_step)]
    if best is not None:
        which = "highest" if run.mode == "max" else "lowest"
        blocks.append(Text(f"model/ holds the weights of step {best_step}, the {which} {run.metric} ({best:.4g}); "
                           "train.metric chooses it."))
    shown = _spaced(evals, {best_step, evals[-1]["step"]})
    rows = [[r["step"], r.get("epoch"), *[r.get(m) for m in names]] for r in shown]
    caption = f"{len(shown)} of {len(evals)} evaluations" if len(shown) < len(evals) else f"{len(evals)} evaluations"
    blocks.append(Table(["step", "epoch", *names], rows, caption))
    return Section("validation", "Validation metrics", blocks)


def gradient_health(run: RunData) -> Section:
    probes = [r for r in run.kind("train") if r.get("layer_grad_norm")]
    if not probes:
        return Section("gradients", "Gradient health", [Text("No per-layer gradient norms were logged.", note=True)])
    layers = list(probes[0]["layer_grad_norm"])
    steps = [r["step"] for r in probes]
    norms = {name: [r["layer_grad_norm"].get(name) for r in probes] for name in layers}
    ratios = {name: [(r.get("update_ratio") or {}).get(name) for r in probes] for name in layers}
    last = probes[-1]
    rows = [[name, last["layer_grad_norm"].get(name), (last.get("update_ratio") or {}).get(name)] for name in layers]
    return Section("gradients", "Gradient health per layer", [
        plots.layers(steps, norms, ratios),
        Text("Gradient norms that shrink towards the first layers by orders of magnitude mean those layers barely "
             "learn (vanishing); an update ratio far above 1e-3 means the steps are large for the weights "
             "(lower train.lr), far below means they hardly move."),
        Table(["layer", "gradient norm", "update / weight"], rows, f"at the last logged step ({last['step']})")])


def data(run: RunData, validation_rows: int | None) -> Section:
    d, meta = run.config.get("data", {}), run.metadata or {}
    rows = [["training file", d.get("train")], ["training examples", meta.get("train_examples")],
            ["validation", d.get("validation") or (f"{d.get('validation_split')} of the training file"
                                                    if d.get("validation_split") else None)],
            ["validation rows", validation_rows], ["test file", d.get("test")],
            ["max_length (tokens)", d.get("max_length")]]
    labels = meta.get("labels")
    if labels:
        rows.append([f"labels ({len(labels)})", ", ".join(map(str, labels[:30])) + (" …" if len(labels) > 30 else "")])
    counts = {k: run.setup.get(k) for k in ("trainable", "total")}
    if counts["total"]:
        rows.append(["parameters (trainable / total)", f"{counts['trainable']:,} / {counts['total']:,}"])
    return Section("data", "Data", [Table(["", ""], [r for r in rows if r[1] is not None], wide=(1,))])


def machine(run: RunData) -> Section:
    m = run.setup.get("machine")
    rows = [["training time", _duration(run.train_seconds)], ["samples / s (mean)", run.samples_per_s]]
    if m:
        device = m.get("gpu") or m.get("device")
        rows += [["processor", m.get("processor")], ["cores", m.get("cores")],
                 ["torch threads", m.get("torch_threads")], ["device", device], ["processes", m.get("processes")],
                 ["system", m.get("os")],
                 ["Python / torch / gradtune", f"{m.get('python')} / {m.get('torch')} / {m.get('gradtune')}"]]
    blocks = [Table(["", ""], [r for r in rows if r[1] is not None], wide=(1,))]
    if not m:
        blocks.append(Text("This run's log does not record its machine (it was trained by an older gradtune).",
                           note=True))
    return Section("machine", "Time and machine", blocks)


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1e-3}} -> {"train.lr": 1e-3}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def defaults() -> dict[str, Any]:
    """Every config key's default, flat (null where the task chooses it)."""
    from pydantic import BaseModel

    from gradtune.config.schema import Config

    out: dict[str, Any] = {}
    for name, f in Config.model_fields.items():
        is_section = isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
        out.update(flat({name: f.annotation().model_dump(mode="json")}) if is_section else {name: f.default})
    return out


def config(run: RunData) -> Section:
    if not run.config:
        return Section("config", "Config", [Text("config.yaml is missing from the run.", note=True)])
    known = defaults()
    from gradtune.config.reference import value  # as YAML writes it: true, [World, Sports], null

    changed = [[k, value(v)] for k, v in flat(run.config).items() if k not in known or known[k] != v]
    return Section("config", "Config", [
        Table(["key", "value"], changed, "the keys that differ from their defaults", wide=(1,)),
        Code(yaml.safe_dump(run.config, sort_keys=False, allow_unicode=True),
             folded="config.yaml: every key, as training resolved it")])
