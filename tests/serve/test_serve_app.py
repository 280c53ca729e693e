"""gradtune serve's app, in-process: every task answers POST /predict exactly as Predictor.predict (or,
a run that writes text, greedy Predictor.generate) and its Hugging Face payload at POST /; /metadata
tells the task and its validation metrics; limits, malformed bodies and unsupported parameters are
JSON errors that name what is wrong; the API key guards everything but /health."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from serve_helpers import task_inputs, train_task  # noqa: E402

import gradtune  # noqa: E402
from conftest import build_tiny_bert  # noqa: E402
from gradtune.rundir import read_metadata  # noqa: E402
from gradtune.serve.app import create_app  # noqa: E402
from gradtune.serve.limits import Limits  # noqa: E402
from gradtune.tasks import TASKS  # noqa: E402

GREEDY = {"greedy": True, "max_new_tokens": 6}


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("bert"), initializer_range=0.2)


@pytest.fixture(scope="module")
def runs(bert, chat_llama, tmp_path_factory):
    """A run of each task, trained on first use."""
    trained: dict[str, Path] = {}

    def run(task: str) -> Path:
        if task not in trained:
            trained[task] = train_task(task, tmp_path_factory.mktemp(task), bert, chat_llama)
        return trained[task]

    return run


def client(run: Path, api_key: str | None = None, **limits: Any) -> TestClient:
    return TestClient(create_app(gradtune.load(run), Limits(**limits), api_key=api_key))


def predict_body(task: Any, inputs: list[Any]) -> dict[str, Any]:
    """The POST /predict body of the inputs test_matrix predicts: the task's request fields."""
    fields = task.request_fields
    if len(fields) == 2 and isinstance(inputs[0], dict):  # question + context
        return {fields[0]: [i["question"] for i in inputs], fields[1]: [i["context"] for i in inputs]}
    return {fields[0]: inputs, **(GREEDY if task.writes_text else {})}


def expected_hf(predictor: Any, inputs: list[Any]) -> tuple[dict[str, Any], Any]:
    """A Hugging Face payload of the inputs, and what the server must answer (from the Predictor)."""
    hf = predictor.task.hf_task
    if hf == "text-generation":
        text = predictor.generate(inputs[0], greedy=True, max_new_tokens=6)
        return {"inputs": inputs[0], "parameters": {"max_new_tokens": 6}}, [{"generated_text": text}]
    if hf == "question-answering":
        r = predictor.predict(inputs)[0]
        return {"inputs": inputs[0]}, {k: r[k] for k in ("answer", "score", "start", "end")}
    if hf == "tabular":
        names = [*predictor.metadata["feature_columns"], *predictor.metadata.get("categorical_columns", [])]
        rows = [dict(zip(names, r)) if isinstance(r, list) else r for r in inputs]
        table = {n: [r[n] for r in rows] for n in names}
        return {"table": table}, [r.get("label", r.get("value")) for r in predictor.predict(rows)]
    if hf == "text2text-generation":
        return {"inputs": inputs}, [{"generated_text": r["generated_text"], "translation_text": r["generated_text"],
                                     "summary_text": r["generated_text"]} for r in predictor.predict(inputs)]
    assert hf == "text-classification", f"add the payload of {hf!r} here"
    scores = [r.get("probabilities") or {predictor.metadata["label_column"]: r["value"]}
              for r in predictor.predict(inputs)]
    return {"inputs": inputs}, [[{"label": k, "score": v} for k, v in sorted(s.items(), key=lambda kv: -kv[1])]
                                for s in scores]


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_answers_as_the_predictor_does(task, runs):
    run = runs(task)
    predictor, inputs = gradtune.load(run), task_inputs(task)
    with client(run) as c:
        got = c.post("/predict", json=predict_body(predictor.task, inputs))
        assert got.status_code == 200, got.text
        if predictor.task.writes_text:
            written = predictor.generate(inputs, greedy=True, max_new_tokens=6)
            assert [r["generated_text"] for r in got.json()["results"]] == written
        else:
            assert got.json()["results"] == json.loads(json.dumps(predictor.predict(inputs)))
        payload, answer = expected_hf(predictor, inputs)
        hf = c.post("/", content=json.dumps(payload))  # no Content-Type, as huggingface_hub sends it
        assert hf.status_code == 200, hf.text
        assert hf.json() == pytest.approx(answer) if predictor.task.hf_task == "question-answering" else \
            hf.json() == json.loads(json.dumps(answer))
        meta = c.get("/metadata").json()
        saved = read_metadata(run / "model")
        assert (meta["task"], meta["base_model"], meta["validation_metrics"]) == \
            (task, saved["base_model"], saved["metrics"])
        assert meta["labels"] == saved.get("labels", [])
        assert ("/v1" in meta["routes"]) == predictor.task.writes_text
        assert c.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]


def test_limits_are_json_errors_that_name_the_limit(runs):
    with client(runs("classification"), max_inputs=3, max_chars=40, max_body_bytes=3000) as c:
        def error(response: Any, status: int) -> dict[str, Any]:
            assert response.status_code == status, response.text
            return response.json()["error"]

        assert error(c.post("/predict", json={"texts": ["good"] * 4}), 413)["code"] == "texts_per_request"
        assert error(c.post("/predict", json={"texts": ["good " * 20]}), 413)["code"] == "characters_per_text"
        assert error(c.post("/", json={"inputs": ["good"] * 4}), 413)["code"] == "texts_per_request"
        assert error(c.post("/predict", content=b'{"texts": ["' + b"a" * 5000 + b'"]}'), 413)["code"] == "body_bytes"
        assert "not JSON" in error(c.post("/predict", content=b"\xff\xfe{garbage"), 422)["message"]
        assert "nested too deeply" in error(c.post("/predict", content=b"[" * 1400 + b"]" * 1400), 422)["message"]
        wrong = error(c.post("/predict", json={"texts": [1, {"a": 2}]}), 422)
        assert wrong["param"] == "texts.0" and "valid string" in wrong["message"]
        assert "texts" in error(c.post("/predict", json={"text": ["good"]}), 422)["message"]  # a typo'd field
        assert "empty" in error(c.post("/predict", json={"texts": ["the movie", "  "]}), 422)["message"]
        assert "top_kk" in error(c.post("/", json={"inputs": "good", "parameters": {"top_kk": 2}}), 422)["message"]
        assert c.post("/predict", json={"texts": ["the movie was great"]}).status_code == 200  # still answers


def test_a_question_without_its_context_is_refused(runs):
    with client(runs("qa")) as c:
        r = c.post("/predict", json={"questions": ["what?", "who?"], "contexts": ["the movie was great"]})
        assert r.status_code == 422 and r.json()["error"]["param"] == "contexts"
        assert c.post("/predict", json={"questions": ["what?"]}).status_code == 422  # qa reads a context


def test_generation_is_bounded_by_max_tokens_and_the_server_cap(runs):
    with client(runs("instruct"), max_tokens=5) as c:
        chat = {"model": "x", "messages": [{"role": "user", "content": "What is the sentiment of: great"}]}
        capped = c.post("/v1/chat/completions", json={**chat, "max_tokens": 6})
        assert capped.status_code == 413 and capped.json()["error"]["code"] == "max_tokens"
        assert c.post("/predict", json={"prompts": ["hi"], "max_new_tokens": 50}).json()["error"]["code"] == \
            "max_new_tokens"
        answer = c.post("/v1/chat/completions", json={**chat, "temperature": 0}).json()  # default: the cap
        assert answer["usage"]["completion_tokens"] <= 5
        refused = c.post("/v1/chat/completions", json={**chat, "tools": [{"type": "function"}]})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "tools"
        hf = c.post("/", json={"inputs": "hi", "parameters": {"watermark": True}})
        # TGI's wording, which huggingface_hub's InferenceClient reads to retry without the parameter
        assert hf.status_code == 400 and "The following `model_kwargs` are not used by the model: ['watermark']" \
            in hf.json()["error"]["message"]


def test_the_api_key_guards_everything_but_health(runs):
    with client(runs("classification"), api_key="s3cret") as c:
        assert c.get("/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            denied = c.post("/predict", json={"texts": ["good"]}, headers=headers)
            assert denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error"
        assert c.get("/metadata").status_code == 401
        allowed = c.post("/predict", json={"texts": ["good"]}, headers={"Authorization": "Bearer s3cret"})
        assert allowed.status_code == 200


def test_the_command_names_a_bad_option_and_the_missing_extra(runs, monkeypatch):
    from typer.testing import CliRunner

    from gradtune.commands import app

    run = str(runs("classification"))
    bad = CliRunner().invoke(app, ["serve", run, "--max-batch", "0"])
    assert bad.exit_code == 2 and "--max-batch must be at least 1" in bad.output
    threads = CliRunner().invoke(app, ["serve", run, "--threads", "0"])
    assert threads.exit_code == 2 and "--threads must be at least 1" in threads.output
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if gradtune[serve] were not installed
    missing = CliRunner().invoke(app, ["serve", run])
    assert missing.exit_code == 2 and "pip install 'gradtune[serve]'" in missing.output
