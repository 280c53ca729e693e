"""The report's figures, drawn with matplotlib's Agg canvas (no GUI, the caller's pyplot untouched) and
returned as PNG images: curves over the steps, gradient health per layer, a confusion matrix,
predicted against true values, and overlays of several runs."""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from typing import Any

from gradtune.report.html import Image

Series = dict[str, tuple[list[float], list[float]]]  # line name -> (x values, y values)
WIDTH, DPI = 7.2, 110  # 792 pixels wide: sharp on a desktop, and its text still legible scaled to a phone
STYLE = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10, "xtick.labelsize": 10,
         "ytick.labelsize": 10}


def readable(draw: Callable[..., Image]) -> Callable[..., Image]:
    """Draw with the report's type sizes (the caller's matplotlib settings are left as they were)."""

    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Image:
        from matplotlib import rc_context

        with rc_context(STYLE):
            return draw(*args, **kwargs)

    return wrapper


def _figure(height: float, rows: int = 1, cols: int = 1, sharex: bool = False) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, sharex=sharex, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _png(fig: Any, name: str, alt: str) -> Image:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return Image(name, buffer.getvalue(), alt)


def _style(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _log_if_wide(ax: Any, values: list[float]) -> None:
    """A log scale when the values span more than two orders of magnitude (and are all positive)."""
    positive = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if positive and len(positive) == len([v for v in values if v is not None]) and max(positive) > 100 * min(positive):
        ax.set_yscale("log")


@readable
def training(steps: list[int], loss: list[float], lr: list[float], skipped: list[int]) -> Image:
    """Training loss (top) and learning rate (bottom) against the step."""
    fig, (top, bottom) = _figure(5.2, rows=2, sharex=True)
    top.plot(steps, loss, color="#2f5fb3", marker="." if len(steps) < 40 else None)
    for step in skipped:
        top.axvline(step, color="#d62728", alpha=0.4, lw=1)
    _style(top, "training loss" + (" (red: skipped non-finite steps)" if skipped else ""), "", "loss")
    _log_if_wide(top, loss)
    bottom.plot(steps, lr, color="#e07b00")
    _style(bottom, "learning rate", "step", "lr")
    bottom.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    return _png(fig, "training.png", "training loss and learning rate against the step")


@readable
def metrics(steps: list[int], values: dict[str, list[float]], best_step: int | None) -> Image:
    """One small panel per validation metric (two per row), the best model's step marked."""
    names = list(values)
    cols = 1 if len(names) == 1 else 2
    rows = math.ceil(len(names) / cols)
    fig, axes = _figure(2.6 * rows + 0.4, rows=rows, cols=cols, sharex=True)
    for ax, name in zip(axes, names):
        ax.plot(steps, values[name], marker=".", color="#2f5fb3")
        if best_step is not None:
            ax.axvline(best_step, color="#2ca02c", ls="--", lw=1)
        _style(ax, name, "step", "")
    for ax in axes[len(names):]:
        ax.set_visible(False)
    if best_step is not None:
        fig.suptitle(f"validation metrics (dashed: the kept model, step {best_step})", fontsize=11)
    return _png(fig, "validation.png", "validation metrics against the step")


@readable
def layers(steps: list[int], per_layer: dict[str, list[float]], ratios: dict[str, list[float]]) -> Image:
    """Gradient norm (top) and update-to-weight ratio (bottom) of each layer against the step, log
    scale, colored from the first layer (dark) to the last (light)."""
    from matplotlib import colormaps

    fig, (top, bottom) = _figure(6.4, rows=2, sharex=True)
    cmap, names = colormaps["viridis"], list(per_layer)
    for i, name in enumerate(names):
        color = cmap(i / max(len(names) - 1, 1) * 0.9)
        top.plot(steps, per_layer[name], color=color, lw=1.2, label=name)
        if name in ratios:
            bottom.plot(steps, ratios[name], color=color, lw=1.2)
    for ax in (top, bottom):
        if any(v > 0 for line in ax.get_lines() for v in line.get_ydata()):
            ax.set_yscale("log")
    _style(top, "gradient norm per layer", "", "norm")
    _style(bottom, "update / weight ratio per layer (about 1e-3 is healthy)", "step", "ratio")
    if len(names) <= 12:
        fig.legend(*top.get_legend_handles_labels(), loc="outside lower center", ncols=min(3, len(names)),
                   fontsize="small", frameon=False)
    else:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        bar = fig.colorbar(ScalarMappable(Normalize(0, len(names) - 1), cmap), ax=[top, bottom], shrink=0.8)
        bar.set_label(f"layer: 0 = {names[0]} ... {len(names) - 1} = {names[-1]}", fontsize="small")
    return _png(fig, "gradient_health.png", "gradient norm and update ratio of each layer against the step")


@readable
def confusion(matrix: list[list[int]], labels: list[str]) -> Image:
    """Counts of each true label (row) predicted as each label (column), shaded by the share of the row."""
    n = len(labels)
    size = min(max(3.2, 0.45 * n + 2), 7.5)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size + 1.2, size), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    shares = [[c / max(sum(row), 1) for c in row] for row in matrix]
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    short = [label if len(label) <= 14 else label[:13] + "…" for label in labels]
    ax.set_xticks(range(n), short, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), short)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=9 if n <= 10 else 7,
                        color="white" if shares[i][j] > 0.6 else "black")
    ax.set_title("confusion matrix (shade: share of the true label's rows)", fontsize=10)
    return _png(fig, "confusion_matrix.png", "confusion matrix of the validation rows")


@readable
def predicted_vs_true(true: list[float], predicted: list[float]) -> Image:
    fig, (ax,) = _figure(5.0)
    ax.scatter(true, predicted, s=12, alpha=0.6, color="#2f5fb3", edgecolors="none")
    low, high = min(true + predicted), max(true + predicted)
    ax.plot([low, high], [low, high], color="#888", ls="--", lw=1, label="predicted = true")
    ax.set_aspect("equal", adjustable="datalim")
    _style(ax, f"predicted vs true ({len(true)} validation rows)", "true value", "predicted value")
    ax.legend(fontsize="small")
    return _png(fig, "predicted_vs_true.png", "predicted against true values of the validation rows")


@readable
def overlay(series: Series, name: str, title: str, xlabel: str, ylabel: str, markers: bool = False) -> Image:
    """One line per run."""
    fig, (ax,) = _figure(4.6)
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="." if markers else None, label=label)
    _style(ax, title, xlabel, ylabel)
    _log_if_wide(ax, [y for _, ys in series.values() for y in ys])
    if ax.lines:
        ax.legend(fontsize="small")
    return _png(fig, name, title)
