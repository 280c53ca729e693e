"""`gradtune compare`: every combination of the --vary values, trained with the same seed and data
into its own folder; one table (compare.md) whose numbers are the runs' own; three overlay plots;
and bad --vary items caught before anything trains."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pytest
import yaml
from typer.testing import CliRunner

from gradtune.commands import app
from gradtune.errors import GradtuneError
from gradtune.experiments.compare import compare
from gradtune.tracking.metrics_log import read_metrics

runner = CliRunner()
PLOTS = ("loss_vs_step.png", "metric_vs_step.png", "loss_vs_time.png")


def markdown_table(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return cells[0], cells[2:]  # header, rows (after the |---| line)


def test_product_of_two_varies_table_and_plots(make_config, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(make_config(train__epochs=1)))
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", str(config), "train.log_every=5", "--vary", "train.optimizer=sgd,adam",
                                 "--vary", "train.batch_size=8,16", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "compare.md" in result.output

    names = {f"optimizer={o},batch_size={b}" for o in ("sgd", "adam") for b in (8, 16)}
    assert {p.name for p in out.iterdir() if p.is_dir()} == names
    for name in names:  # each run got its own values, and the config's seed and data
        saved = yaml.safe_load((out / name / "config.yaml").read_text())
        assert name == f"optimizer={saved['train']['optimizer']},batch_size={saved['train']['batch_size']}"
        assert saved["train"]["seed"] == 0 and saved["data"]["train"] == make_config()["data"]["train"]

    header, rows = markdown_table(out / "compare.md")
    assert header == ["optimizer", "batch_size", "final accuracy", "best accuracy", "best step",
                      "final train loss", "train time (s)", "steps", "samples/s"]
    assert len(rows) == 4
    for row in rows:  # every number is the run's own, as logged in its metrics.jsonl
        records = read_metrics(out / f"optimizer={row[0]},batch_size={row[1]}" / "metrics.jsonl")
        evals = [r for r in records if r["kind"] == "eval"]
        trains = [r for r in records if r["kind"] == "train"]
        best = max(evals, key=lambda r: r["accuracy"])  # first of equals, as the loop keeps it
        assert row[2:6] == [f"{evals[-1]['accuracy']:.4f}", f"{best['accuracy']:.4f}", str(best["step"]),
                            f"{trains[-1]['loss']:.4f}"]
        assert float(row[6]) == pytest.approx(trains[-1]["elapsed"], abs=0.051)
        assert row[7] == str(trains[-1]["step"]) == str(160 // int(row[1]))  # one epoch of 160 examples
        assert float(row[8]) == pytest.approx(160 / trains[-1]["elapsed"], rel=0.02, abs=0.1)

    text = (out / "compare.md").read_text()
    for name in PLOTS:
        png = out / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({name})" in text
        assert matplotlib.image.imread(png).ndim == 3  # decodes as an image


def test_same_seed_different_lr(make_config, tmp_path):
    cfg = make_config(train__epochs=1, train__log_every=1)
    result = compare(cfg, {"train.lr": [1e-3, 3e-2]})
    assert result.table_path == tmp_path / "run" / "compare" / "compare.md"  # default: <output_dir>/compare
    assert [r["variant"] for r in result.rows] == ["lr=0.001", "lr=0.03"]
    assert [r["train.lr"] for r in result.rows] == [0.001, 0.03]
    assert [p.name for p in result.plot_paths] == list(PLOTS)

    first, last = [], []
    for row in result.rows:
        trains = [r for r in read_metrics(Path(row["run_dir"]) / "metrics.jsonl") if r["kind"] == "train"]
        first.append(trains[0]["loss"])  # step 1: the loss before any update
        last.append(row["final_loss"])
        assert row["final_loss"] == trains[-1]["loss"]
    # same seed and data: identical initial weights, first batch and dropout, so the same first
    # loss; the learning rate alone then makes the runs differ
    assert first[0] == pytest.approx(first[1], abs=1e-6)
    assert last[0] != pytest.approx(last[1], abs=1e-4)


@pytest.mark.parametrize("vary, message", [
    ("train.optimzer=sgd,adam", "train.optimzer: unknown key (did you mean 'optimizer'?)"),
    ("train.optimizer=sgd,adamm", "variant train.optimizer=adamm"),  # the first variant is valid
    ("train.lr", "is not key=value1,value2"),
    ("train.lr=", "is not key=value1,value2"),
    ("train.lr=1e-3,0.001", "two variants are both lr=0.001"),
])
def test_bad_vary_fails_before_training(make_config, tmp_path, monkeypatch, vary, message):
    def no_training(*args, **kwargs):
        raise AssertionError("trained before every variant was validated")

    monkeypatch.setattr("gradtune.api.train", no_training)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(make_config(train__epochs=1)))
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", str(config), "--vary", vary, "--output", str(out)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())  # rich may wrap long lines
    assert not out.exists()


def test_failing_variant_is_named(make_config, tmp_path):
    with pytest.raises(GradtuneError, match=r"variant train=.*missing\.csv: data file not found"):
        compare(make_config(), {"data.train": [str(tmp_path / "missing.csv")]})
