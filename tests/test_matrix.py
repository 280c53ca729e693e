"""The matrix every task and every model family goes through (as PEFT runs one check class over every
tuner): train a few steps on a tiny model, save, reload and predict exactly what the trained model
predicted, evaluate the saved model to the numbers training logged for it, and export it (a Hugging
Face folder that predicts the same; ONNX where the architecture allows it, else a clear refusal).

A task or family added to its registry without a case here fails `test_every_*_has_a_case`."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

import gradtune
from conftest import build_tiny_bert, counting_rows, sentiment_rows, train_in_memory, write_csv
from gradtune.errors import GradtuneError
from gradtune.export import export
from gradtune.inference.predictor import Predictor
from gradtune.models import FAMILIES
from gradtune.rundir import RunDir, read_metadata
from gradtune.tasks import TASKS
from gradtune.tracking.metrics_log import read_metrics

TEXTS = ["the movie was great", "the food was awful", "this book is dull and boring"]
ROWS = [[0.5, "north"], {"x": -0.2, "city": "west"}, [0.1, "south"]]
FAST = {"batch_size": 8, "warmup_ratio": 0.0, "log_every": 2, "progress": False, "seed": 0}
SMALL_TEXT_MODEL = {"embedding_size": 16, "hidden_size": 16, "vocab_size": 200}


@dataclass
class Case:
    """A tiny run of one task: its config (without data paths), its rows, and inputs to predict."""

    config: dict[str, Any]
    rows: list[dict[str, Any]]
    inputs: list[Any]


def sentiment(label_of: Any) -> list[dict[str, Any]]:
    return [{"text": r["text"], "label": label_of(r)} for r in sentiment_rows(96, seed=3)]


def city_rows(n: int) -> list[dict[str, Any]]:
    rng, offset = random.Random(0), {"north": 2.0, "south": -2.0, "east": 0.0, "west": 4.0}
    rows = [{"x": round(rng.uniform(-1, 1), 3), "city": rng.choice(list(offset))} for _ in range(n)]
    return [{**r, "y": round(r["x"] + offset[r["city"]], 3)} for r in rows]


def case(task: str, model: dict[str, Any]) -> Case:
    """The case of `task` on `model` (model.name and its settings)."""
    train = {"max_steps": 27, "lr": 3e-3, **FAST}  # 3 epochs of 72 rows
    if model["name"] in FAMILIES:  # from scratch: a larger step than fine-tuning takes
        train.update(lr=1e-2, optimizer="adam")
    if task == "classification":
        return Case({"task": task, "model": model, "train": train}, sentiment(lambda r: r["label"]), TEXTS)
    if task == "regression":
        rows = sentiment(lambda r: 4.0 if r["label"] == "positive" else 1.0)
        return Case({"task": task, "model": model, "data": {"standardize_target": True}, "train": train}, rows, TEXTS)
    if task == "multilabel":
        rows = sentiment(lambda r: r["label"] + (",long" if len(r["text"]) > 30 else ""))
        return Case({"task": task, "model": model, "train": train}, rows, TEXTS)
    if task == "tabular":
        return Case({"task": task, "model": model,
                     "data": {"feature_columns": ["x"], "categorical_columns": ["city"], "label_column": "y"},
                     "train": {**train, "max_steps": 45, "lr": 0.05, "optimizer": "adam"}}, city_rows(96), ROWS)
    if task == "qa":  # which thing is the review about? (the subject starts every sentence)
        rows = [{"question": "what is it about?", "context": r["text"],
                 "answers": json.dumps({"text": [r["text"].split(" was")[0].split(" is")[0].split()[0] + " "
                                                 + r["text"].split()[1]], "answer_start": [0]})}
                for r in sentiment_rows(96, seed=3)]
        return Case({"task": task, "model": model, "data": {"max_length": 32, "doc_stride": 8}, "train": train}, rows,
                    [{"question": "what is it about?", "context": "the movie was great"}])
    if task == "seq2seq":
        rows = [{"source": r["text"], "target": r["label"]} for r in sentiment_rows(96, seed=3)]
        return Case({"task": task, "model": model, "data": {"max_length": 32},
                     "train": {**train, "max_steps": 54, "lr": 1e-3, "max_new_tokens": 8}}, rows, TEXTS)
    if task == "instruct":
        rows = [{"instruction": f"What is the sentiment of: {r['text']}", "output": r["label"]}
                for r in sentiment_rows(96, seed=3)]
        return Case({"task": task, "model": model, "data": {"max_length": 64}, "train": {**train, "lr": 1e-2}},
                    rows, ["What is the sentiment of: the movie was great"])
    if task == "causal_lm":
        return Case({"task": task, "model": model, "data": {"max_length": 16}, "train": {**train, "lr": 1e-2}},
                    counting_rows(96, seed=1), ["three four"])
    raise KeyError(task)


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> str:
    return str(build_tiny_bert(tmp_path_factory.mktemp("bert"), initializer_range=0.2))  # learns in few steps


# every task on its usual tiny model: a pretrained (tiny random) BERT for text, the mlp for tables,
# the gpt for language modelling
TASK_MODELS = {"classification": None, "regression": None, "multilabel": None, "qa": None, "tabular": {"name": "mlp"},
               "causal_lm": {"name": "gpt", **SMALL_TEXT_MODEL, "num_heads": 2, "vocab_size": 300},
               "instruct": "chat_llama",
               "seq2seq": {"name": "bart", "embedding_size": 32, "hidden_size": 64, "num_heads": 2, "vocab_size": 300}}
# every family from scratch, on a task it learns
FAMILY_CASES = {
    "mlp": ("tabular", {"hidden_sizes": [8]}),
    **{cell: ("classification", SMALL_TEXT_MODEL) for cell in ("rnn", "lstm", "gru")},
    "transformer": ("regression", {**SMALL_TEXT_MODEL, "num_heads": 2}),
    "gpt": ("causal_lm", {**SMALL_TEXT_MODEL, "num_heads": 2, "vocab_size": 300}),
    "bart": ("seq2seq", {**SMALL_TEXT_MODEL, "embedding_size": 32, "num_heads": 2, "vocab_size": 300}),
}


def outputs(predictor: Predictor, inputs: list[Any]) -> Any:
    """What a user gets: predictions, or (a language model) greedy continuations."""
    if predictor.task.writes_text:
        return [predictor.generate(prompt, max_new_tokens=4, greedy=True) for prompt in inputs]
    if not predictor.task.onnx:  # seq2seq: written translations
        return predictor.predict(inputs)
    return predictor.logits(inputs)


def same(a: Any, b: Any) -> bool:
    """Equal texts, or logits equal up to float round-off (a model object fresh from training and the
    same weights read from disk can differ in the last bit of a padded batch)."""
    return torch.allclose(a, b, rtol=1e-6, atol=1e-6) if isinstance(a, torch.Tensor) else a == b


def run_the_matrix(c: Case, tmp_path: Path) -> None:
    train, dev = write_csv(tmp_path / "train.csv", c.rows[:72]), write_csv(tmp_path / "dev.csv", c.rows[72:])
    cfg = {**c.config, "data": {**c.config.get("data", {}), "train": str(train), "validation": str(dev)},
           "output_dir": str(tmp_path / "run")}

    # one evaluation, after the last step: model/ then holds the weights the training ended with
    cfg["train"]["eval_every"] = cfg["train"]["max_steps"]

    # train a few steps: the loss is logged, finite, and falls
    trained, run_dir = train_in_memory(cfg)
    records = read_metrics(RunDir(run_dir).metrics)
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) >= 6 and all(loss == loss for loss in losses)
    assert sum(losses[-3:]) < sum(losses[:3]), losses

    # save: model/ holds safetensors weights and the task's metadata
    folder = RunDir(run_dir).model
    meta = read_metadata(folder)
    assert meta["task"] == cfg["task"] and any(folder.rglob("*.safetensors"))
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in folder.rglob("*"))

    # reload: the saved model predicts exactly what the trained model object predicts
    reloaded, in_memory = Predictor(run_dir), Predictor(run_dir)
    in_memory.model = trained
    assert same(outputs(reloaded, c.inputs), outputs(in_memory, c.inputs))

    # evaluate: the saved model on the validation file scores what training logged for it
    logged = next(r for r in records if r["kind"] == "eval")
    scored = gradtune.evaluate(run_dir, dev)
    assert scored["examples"] == len(c.rows) - 72
    for name, value in logged.items():
        if name not in ("kind", "step", "epoch", "elapsed"):
            assert scored[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name

    # export: a Hugging Face folder that predicts the same; ONNX with parity, or a clear refusal
    exported = export(run_dir, tmp_path / "hf")
    assert same(outputs(Predictor(exported.folder), c.inputs), outputs(reloaded, c.inputs))
    if reloaded.task.writes_text:
        return  # a language model writes text: predict-time ONNX export does not apply
    try:
        onnx = export(run_dir, RunDir(run_dir).onnx, format="onnx")
    except GradtuneError as e:
        assert "ONNX" in str(e)
        return
    assert onnx.max_abs_diff < 1e-4
    torch.testing.assert_close(Predictor(run_dir, backend="onnx").logits(c.inputs), reloaded.logits(c.inputs),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_trains_saves_reloads_evaluates_and_exports(task, bert, tmp_path, request):
    model = TASK_MODELS[task] or {"name": bert}
    if isinstance(model, str):  # a fixture's model folder
        model = {"name": str(request.getfixturevalue(model))}
    run_the_matrix(case(task, model), tmp_path)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_model_family_trains_saves_reloads_evaluates_and_exports(family, tmp_path):
    task, settings = FAMILY_CASES[family]
    run_the_matrix(case(task, {"name": family, **settings}), tmp_path)


def test_every_task_and_family_has_a_case():
    assert set(TASK_MODELS) == set(TASKS), "add a case for the new task to TASK_MODELS and case()"
    assert set(FAMILY_CASES) == set(FAMILIES), "add a case for the new model family to FAMILY_CASES"
