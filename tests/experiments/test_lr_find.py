"""The learning-rate range test: a suggestion where the loss falls, its files, the user's run left
alone, early stop on divergence, and the `gradtune lr-find` command."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gradtune.commands import app
from gradtune.errors import GradtuneError
from gradtune.experiments.lr_find import find_lr, suggest_lr

runner = CliRunner()

# One step per lr from 1e-4 up: the random-init tiny model sits at loss ln 2 until it has had
# enough updates, so the range must spend its steps where lrs are useful (1e-3..1e-2; lr 3e-3
# trains to 100% accuracy) for the curve to show a descent before it diverges (at 10 it does).
RANGE = {"start_lr": 1e-4, "end_lr": 10.0, "steps": 100}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_suggestion_is_in_the_descent_and_the_run_is_untouched(make_config):
    cfg = make_config()
    run_dir = Path(cfg["output_dir"])
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text('{"kind": "train"}\n')  # a file of the user's own run

    result = find_lr(cfg, **RANGE)

    assert 1e-4 <= result.suggestion <= 1e-1
    # a real descent was seen (> 5% below the loss of ln 2), and the suggestion is on its way
    # down: below the lr of the lowest loss, where training already starts to be unstable
    lowest = min(range(len(result.smoothed)), key=result.smoothed.__getitem__)
    assert result.smoothed[lowest] < 0.95 * result.smoothed[len(result.smoothed) // 10]
    assert result.suggestion < result.lrs[lowest]

    assert result.csv_path == run_dir / "lr_find" / "lr_find.csv"
    rows = read_rows(result.csv_path)
    assert list(rows[0]) == ["lr", "loss", "smoothed_loss"] and len(rows) == len(result.lrs)
    assert [float(r["lr"]) for r in rows] == result.lrs
    assert [float(r["smoothed_loss"]) for r in rows] == result.smoothed
    assert result.png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # nothing but the lr_find folder was added, and the run's own file is as it was
    assert sorted(p.name for p in run_dir.iterdir()) == ["lr_find", "metrics.jsonl"]
    assert (run_dir / "metrics.jsonl").read_text() == '{"kind": "train"}\n'


def test_divergence_stops_the_test_early(make_config, tmp_path):
    result = find_lr(make_config(), start_lr=1e-2, end_lr=1e4, steps=40, output=tmp_path / "out")
    assert len(result.lrs) < 40
    last = result.smoothed[-1]
    assert last != last or last > 4 * min(result.smoothed[:-1])  # NaN, or 4x the best loss
    assert len(read_rows(tmp_path / "out" / "lr_find.csv")) == len(result.lrs)
    assert result.lrs[0] <= result.suggestion <= result.lrs[-1]


def test_cli_prints_the_suggestion_as_an_override(make_config, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(make_config()))
    out = tmp_path / "lr"
    result = runner.invoke(app, ["lr-find", str(config), "train.batch_size=8", "--steps", "20",
                                 "--start-lr", "1e-3", "--end-lr", "1", "--output", str(out)])
    assert result.exit_code == 0, result.output
    match = re.search(r"suggested learning rate: (\S+)  ->  gradtune train (\S+) train.batch_size=8 "
                      r"train.lr=(\S+)\n", result.output)
    assert match and match[1] == match[3] and match[2] == str(config), result.output
    rows = read_rows(out / "lr_find.csv")
    lrs, smoothed = [float(r["lr"]) for r in rows], [float(r["smoothed_loss"]) for r in rows]
    assert match[1] == f"{suggest_lr(lrs, smoothed):.1e}"  # the printed lr is the curve's suggestion
    assert 1e-3 <= float(match[1]) <= 1 and (out / "lr_find.png").is_file()
    assert not (tmp_path / "run").exists()  # --output given: output_dir is not even created


@pytest.mark.parametrize(("args", "message"), [
    (["--start-lr", "0"], "must be > 0"),
    (["--start-lr", "1", "--end-lr", "0.1"], "must be smaller than --end-lr"),
    (["--steps", "5"], "--steps must be at least 10"),
])
def test_bad_arguments_exit_2_with_a_message(make_config, tmp_path, args, message):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(make_config()))
    result = runner.invoke(app, ["lr-find", str(config), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    with pytest.raises(GradtuneError, match="at least 10"):
        find_lr(make_config(), steps=9)
