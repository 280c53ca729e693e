"""train.trackers: TensorBoard and MLflow get the scalars metrics.jsonl gets and the config as
hyper-parameters, each tracker ends with the run (also when it fails), and the config names an
unknown tracker or a missing package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import gradtune
from conftest import at_training_step
from gradtune.config import as_config
from gradtune.errors import GradtuneError
from gradtune.tasks import classification
from gradtune.tracking import trackers
from gradtune.tracking.metrics_log import read_metrics


def records(run_dir: Path, kind: str) -> list[dict]:
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == kind]


def test_tensorboard_event_file_holds_the_logged_scalars(make_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = gradtune.train(make_config(train__epochs=1, train__log_every=5, train__trackers=["tensorboard"]))
    events = EventAccumulator(str(run.run_dir / "tensorboard"))
    events.Reload()
    logged = records(run.run_dir, "train")
    losses = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [s for s, _ in losses] == [r["step"] for r in logged] == [5, 10, 15, 20]
    assert [v for _, v in losses] == pytest.approx([r["loss"] for r in logged], rel=1e-6)
    [evaluation] = records(run.run_dir, "eval")
    [accuracy] = events.Scalars("eval/accuracy")
    assert (accuracy.step, accuracy.value) == (20, pytest.approx(evaluation["accuracy"]))
    layer = events.Scalars("grad_norm/bert.encoder.layer.0")  # a per-layer dict, one scalar per layer
    assert [e.value for e in layer] == pytest.approx([r["layer_grad_norm"]["bert.encoder.layer.0"] for r in logged])


def test_mlflow_file_store_run_has_the_config_and_the_metrics(make_config, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    run = gradtune.train(make_config(train__epochs=1, train__log_every=5, train__trackers=["mlflow"]))
    # the run's own store, set for that run only
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_ALLOW_FILE_STORE" not in os.environ

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.MlflowClient(tracking_uri=(run.run_dir / "mlruns").as_uri())
    [found] = client.search_runs([client.get_experiment_by_name("gradtune").experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == "run"
    params = found.data.params
    assert params["train.lr"] == "0.003" and params["model.name"] == make_config()["model"]["name"]
    assert params["data.test"] == "null" and params["train.betas"] == "[0.9, 0.999]"  # flat scalars
    history = client.get_metric_history(found.info.run_id, "train/loss")
    logged = records(run.run_dir, "train")
    assert [(m.step, m.value) for m in history] == [(r["step"], pytest.approx(r["loss"])) for r in logged]
    assert found.data.metrics["eval/accuracy"] == pytest.approx(records(run.run_dir, "eval")[0]["accuracy"])
    assert "grad_norm/classifier" in found.data.metrics


def test_mlflow_honours_the_tracking_uri_and_marks_a_failed_run(make_config, monkeypatch, tmp_path):
    import mlflow

    store = tmp_path / "shared-store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setattr(classification, "loss_sum", at_training_step(4, lambda value: value * float("nan")))
    cfg = make_config(train__epochs=1, train__log_every=1, train__trackers=["mlflow"])
    with pytest.raises(GradtuneError, match="non-finite loss at step 4"):
        gradtune.train(cfg)
    assert not (Path(cfg["output_dir"]) / "mlruns").exists()
    client = mlflow.MlflowClient(tracking_uri=store.as_uri())
    [found] = client.search_runs([client.get_experiment_by_name("gradtune").experiment_id])
    assert found.info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(found.info.run_id, "train/loss")] == [1, 2, 3]


def test_the_config_names_an_unknown_tracker_and_a_missing_package(make_config, monkeypatch):
    with pytest.raises(GradtuneError, match=r"train.trackers: unknown tracker 'tensorbord' \(did you mean "
                                            r"'tensorboard'\?\); choose from tensorboard, mlflow"):
        as_config(make_config(train__trackers=["tensorbord"]))
    on_the_command_line = as_config(make_config(), ["train.trackers=tensorboard,mlflow"])
    assert on_the_command_line.train.trackers == ["tensorboard", "mlflow"]
    real = trackers.importlib.util.find_spec
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None if name == "mlflow" else real(name))
    with pytest.raises(GradtuneError, match="tracker 'mlflow' needs the mlflow package: pip install mlflow"):
        as_config(make_config(train__trackers=["tensorboard", "mlflow"]))
    assert as_config(make_config(train__trackers=["tensorboard"])).train.trackers == ["tensorboard"]
    with pytest.raises(GradtuneError, match="a tracker is listed twice"):
        as_config(make_config(train__trackers=["tensorboard", "tensorboard"]))
