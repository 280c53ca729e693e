"""`gradtune sweep` on Optuna: a search space checked against the config before anything trains;
trials that are real runs scored on validation; a trial that trails the others pruned at an
evaluation (and its run says so); a killed sweep that continues with no trial lost or repeated;
the best config written ready to train."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gradtune.config import as_config
from gradtune.errors import GradtuneError
from gradtune.experiments.sweep import check_space, make_study, read_space, run_worker, summarize, sweep
from gradtune.tracking.metrics_log import read_metrics

optuna = pytest.importorskip("optuna")

SPACE = {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}, "train.optimizer": ["adamw", "sgd"]}


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("space, message", [
    ({"train.lrr": {"low": 1e-4, "high": 1e-2}}, r"train\.lrr: unknown key \(did you mean 'lr'\?\)"),
    ({"train.optimizer": ["adamw", "adamx"]}, r"train\.optimizer='adamx'"),
    ({"train.lr": {"low": 1e-2, "high": 1e-4}}, "low < high"),
    ({"train.lr": {"low": 0.0, "high": 1e-2, "log": True}}, "log scale needs low > 0"),
    ({"train.lr": {"low": 1e-4, "hgh": 1e-2}}, r"give a list of choices, or \{low"),
    ({"output_dir": ["a", "b"]}, "output_dir can't be searched"),
    ({"train.batch_size": {"low": 0, "high": 8}}, r"train\.batch_size=0"),
])
def test_a_bad_search_space_is_refused_before_anything_trains(make_config, tmp_path, space, message):
    with pytest.raises(GradtuneError, match=message):
        sweep(make_config(), space, trials=2, output=tmp_path / "sweep")
    assert not (tmp_path / "sweep" / "sweep.db").exists()


def test_ranges_become_ints_floats_and_choices():
    params = {p.key: p for p in read_space({"train.epochs": {"low": 1, "high": 4}, **SPACE,
                                            "train.warmup_ratio": {"low": 0.0, "high": 0.2, "step": 0.05}})}
    assert params["train.epochs"].kind == "int" and params["train.lr"].log
    assert params["train.optimizer"].choices == ("adamw", "sgd") and params["train.warmup_ratio"].step == 0.05


def test_a_sweep_trains_real_trials_and_writes_the_best_config(make_config, tmp_path):
    result = sweep(make_config(train__epochs=2), SPACE, trials=3, output=tmp_path / "sweep", pruner="none")
    assert [r["state"] for r in result.trials] == ["complete"] * 3
    for row in result.trials:  # each trial's value is its run's best validation accuracy
        evals = [r["accuracy"] for r in read_metrics(Path(row["run_dir"]) / "metrics.jsonl") if r["kind"] == "eval"]
        assert row["accuracy"] == pytest.approx(max(evals))
        saved = yaml.safe_load((Path(row["run_dir"]) / "config.yaml").read_text())
        assert saved["train"]["lr"] == pytest.approx(row["train.lr"]) and saved["train"]["optimizer"] == row[
            "train.optimizer"]
    assert result.best["accuracy"] == max(r["accuracy"] for r in result.trials)
    best = as_config(result.best_config)  # ready to train as it is
    assert best.train.lr == pytest.approx(result.best["train.lr"]) and best.train.epochs == 2
    assert {p.name for p in result.plot_paths} >= {"optimization_history.png", "slice.png"}
    assert "| trial | state | train.lr | train.optimizer | accuracy |" in result.table_path.read_text()


def test_a_trailing_trial_is_pruned_and_its_run_says_so(make_config, tmp_path):
    cfg, output = make_config(train__epochs=3, train__eval_every=5), tmp_path / "sweep"
    space = {"train.lr": {"low": 1e-9, "high": 1e-2, "log": True}}
    base = as_config(cfg)
    output.mkdir()
    study = make_study(output, "s", base, "median")
    for lr in (3e-3, 3e-3, 1e-9):  # two trials that learn, then one that can't move
        study.enqueue_trial({"train.lr": lr})
    run_worker(cfg, space, [], output, "s", ("median", 0), 3)
    result = summarize(make_study(output, "s", base, "median"), base, read_space(space), output)
    states = [r["state"] for r in result.trials]
    assert states == ["complete", "complete", "pruned"], result.trials
    pruned = result.trials[2]
    records = read_metrics(Path(pruned["run_dir"]) / "metrics.jsonl")
    assert records[-1]["kind"] == "end" and "pruned by the sweep" in json.dumps(records[-1])
    steps = [r["step"] for r in records if r["kind"] == "eval"]
    assert pruned["pruned_at_step"] == steps[-1] < 60  # stopped at an evaluation before the end (3 epochs, 60 steps)


def test_a_killed_sweep_continues_with_no_trial_lost_or_repeated(make_config, tmp_path):
    config = write(tmp_path / "config.yaml", make_config(train__epochs=4))
    space = write(tmp_path / "space.yaml", SPACE)
    output = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "gradtune", "sweep", str(config), "--space", str(space), "--trials", "3",
           "--output", str(output), "--pruner", "none"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # kill it while its third trial trains
        if (output / "trial-002" / "metrics.jsonl").exists():
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name="gradtune-sweep", storage=f"sqlite:///{output / 'sweep.db'}")
    before = [(t.number, t.state.name, t.params) for t in study.trials]
    assert [s for _, s, _ in before] == ["COMPLETE", "COMPLETE", "RUNNING"], before

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    said = " ".join(rerun.stderr.split())  # the console wraps long lines
    assert "2 trial(s) finished, 1 cut off by the kill" in said
    trials = optuna.load_study(study_name="gradtune-sweep", storage=f"sqlite:///{output / 'sweep.db'}").trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3  # not 4: the sweep stops at --trials
    assert [t.params for t in complete] == [p for _, _, p in before]  # the cut-off trial ran again, with its values
    assert complete[2].user_attrs["run_dir"] == str(output / "trial-002")  # continued in its own folder


def test_jobs_share_the_trials_between_processes(make_config, tmp_path):
    config = write(tmp_path / "config.yaml", make_config(train__epochs=1))
    space = write(tmp_path / "space.yaml", SPACE)
    result = sweep(config, space, trials=3, jobs=2, output=tmp_path / "sweep", pruner="none")
    assert sorted(r["state"] for r in result.trials) == ["complete"] * 3  # 2 + 1, none extra
    assert len({r["run_dir"] for r in result.trials}) == 3
    for row in result.trials:  # each worker process got its share of the CPU threads
        assert yaml.safe_load((Path(row["run_dir"]) / "config.yaml").read_text())["train"]["num_threads"] >= 1


def test_no_trial_is_pruned_before_prune_after(make_config, tmp_path):
    cfg, output = make_config(train__epochs=3, train__eval_every=5), tmp_path / "sweep"
    space = {"train.lr": {"low": 1e-9, "high": 1e-2, "log": True}}
    base = as_config(cfg)
    output.mkdir()
    study = make_study(output, "s", base, "median", prune_after=1000)
    for lr in (3e-3, 3e-3, 1e-9):
        study.enqueue_trial({"train.lr": lr})
    run_worker(cfg, space, [], output, "s", ("median", 1000), 3)
    result = summarize(make_study(output, "s", base, "median"), base, read_space(space), output)
    assert [r["state"] for r in result.trials] == ["complete"] * 3


@pytest.mark.parametrize("space", sorted((Path(__file__).parents[2] / "examples" / "sweeps").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_search_spaces_fit_their_configs(space):
    config = space.parents[1] / f"{space.stem.split('_')[0]}.yaml"  # sst2_method.yaml searches sst2.yaml
    check_space(config, [], read_space(space))
