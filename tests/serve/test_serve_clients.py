"""`gradtune serve` as a real uvicorn process on loopback, spoken to by the real client libraries:
huggingface_hub's InferenceClient (classification, text generation, streamed too) and the official
openai client (chat and plain completions, streamed too) get what the Predictor gives; 400 concurrent
requests among hostile ones (garbage bytes, a huge body, wrong types, deeply nested JSON, a broken
connection) are all answered, in fewer model calls than requests, and /health still answers after;
SIGTERM lets the request in flight finish; --api-key guards the server."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
import warnings
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
huggingface_hub = pytest.importorskip("huggingface_hub")

from serve_helpers import Server, train_task  # noqa: E402

import gradtune  # noqa: E402
from conftest import build_tiny_bert  # noqa: E402

REVIEW = "What is the sentiment of: the movie was great"


@pytest.fixture(scope="module")
def classification_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("served-classification")
    bert = build_tiny_bert(folder / "bert", initializer_range=0.2) if (folder / "bert").mkdir() is None else None
    return train_task("classification", folder, bert, None)


@pytest.fixture(scope="module")
def instruct_run(tmp_path_factory, chat_llama) -> Path:
    # 27 steps: the tiny model answers "positive" / "negative", so the texts compared are not empty
    return train_task("instruct", tmp_path_factory.mktemp("served-instruct"), None, chat_llama, max_steps=27)


@pytest.fixture(scope="module")
def classifier(classification_run):
    with Server(classification_run) as url:
        yield url


@pytest.fixture(scope="module")
def writer(instruct_run):
    with Server(instruct_run, "--max-tokens", "16") as url:
        yield url


def test_huggingface_inference_client_classifies_unchanged(classifier, classification_run):
    expected = gradtune.load(classification_run).predict(["the movie was great"])[0]["probabilities"]
    client = huggingface_hub.InferenceClient(model=classifier)
    ranked = client.text_classification("the movie was great")
    assert [e.label for e in ranked] == sorted(expected, key=lambda k: -expected[k])
    assert {e.label: e.score for e in ranked} == pytest.approx(expected)
    assert [e.label for e in client.text_classification("the movie was great", top_k=1)] == [ranked[0].label]


async def storm(url: str) -> tuple[list, list]:
    """400 concurrent predictions and, among them, hostile requests."""
    hostile = [
        ("garbage bytes", b"\x00\xff\xfe{{{not json", 422),
        ("a huge body", b'{"texts": ["' + b"a" * 3_000_000 + b'"]}', 413),
        ("wrong types", b'{"texts": [1, null, {"x": []}]}', 422),
        ("deep nesting", b"[" * 200_000 + b"]" * 200_000, 422),
        ("a list for an object", b'["the movie was great"]', 422),
        ("too many texts", b'{"texts": [' + b'"good",' * 100 + b'"bad"]}', 413),
    ]
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        texts = [f"the movie was {'great' if i % 2 else 'awful'}" for i in range(400)]
        calls = [client.post("/predict", json={"texts": [t]}) for t in texts]
        calls += [client.post("/predict", content=body) for _, body, _ in hostile]
        responses = await asyncio.gather(*calls, return_exceptions=True)
    return responses[:400], list(zip(hostile, responses[400:]))


def test_400_concurrent_requests_and_hostile_ones_all_answered_in_batches(classifier, classification_run):
    with socket.create_connection(("127.0.0.1", int(classifier.rsplit(":", 1)[1]))) as s:  # a broken request
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"texts\": [")
    before = httpx.get(f"{classifier}/metadata").json()["served"]
    answers, hostile = asyncio.run(storm(classifier))
    expected = gradtune.load(classification_run).predict(["the movie was awful", "the movie was great"])
    for i, r in enumerate(answers):
        assert not isinstance(r, Exception) and r.status_code == 200, r
        (got,) = r.json()["results"]  # batched with others: the same as predicted alone
        assert got["label"] == expected[i % 2]["label"]
        assert got["probabilities"] == pytest.approx(expected[i % 2]["probabilities"], abs=1e-5)
    for (what, _, status), r in hostile:
        if isinstance(r, httpx.TransportError):  # a 413 may close the connection before the body is sent
            assert status == 413, what
            continue
        assert r.status_code == status, (what, r.text[:200])
        assert r.json()["error"]["message"], what
    after = httpx.get(f"{classifier}/metadata").json()["served"]
    assert after["inputs"] - before["inputs"] == 400
    assert after["model_calls"] - before["model_calls"] < 100  # batched: 400 requests, far fewer model calls
    assert httpx.get(f"{classifier}/health").json()["status"] == "ok"


def test_openai_client_chats_and_completes_unchanged_streamed_or_not(writer, instruct_run):
    predictor = gradtune.load(instruct_run)
    answer = predictor.generate(REVIEW, greedy=True, max_new_tokens=8)
    continuation = predictor.generate("the movie was", chat=False, greedy=True, max_new_tokens=8)
    assert answer.strip() in ("positive", "negative")
    client = openai.OpenAI(base_url=f"{writer}/v1", api_key="not-needed", max_retries=0)
    chat = dict(model="run", messages=[{"role": "user", "content": REVIEW}], temperature=0, max_tokens=8)
    reply = client.chat.completions.create(**chat)
    assert reply.choices[0].message.content == answer
    assert reply.choices[0].finish_reason in ("stop", "length") and reply.usage.prompt_tokens > 0
    chunks = list(client.chat.completions.create(**chat, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens
    completion = client.completions.create(model="run", prompt="the movie was", temperature=0, max_tokens=8)
    assert completion.choices[0].text == continuation
    streamed = client.completions.create(model="run", prompt="the movie was", temperature=0, max_tokens=8, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == continuation
    assert [m.id for m in client.models.list()] == [instruct_run.name]
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(**{**chat, "max_tokens": 17})  # the server's cap is 16
    assert refused.value.status_code == 413 and "max_tokens" in str(refused.value)


def test_huggingface_client_generates_streamed_or_not(writer, instruct_run):
    answer = gradtune.load(instruct_run).generate(REVIEW, greedy=True, max_new_tokens=8)
    client = huggingface_hub.InferenceClient(model=writer)
    assert client.text_generation(REVIEW, max_new_tokens=8) == answer
    assert "".join(client.text_generation(REVIEW, max_new_tokens=8, stream=True)) == answer
    chat = client.chat_completion([{"role": "user", "content": REVIEW}], max_tokens=8, temperature=0)  # at /v1
    assert chat.choices[0].message.content == answer
    with warnings.catch_warnings(record=True) as caught:  # refused, then asked again without it
        warnings.simplefilter("always")
        assert client.text_generation(REVIEW, max_new_tokens=8, watermark=True) == answer
    assert any("watermark" in str(w.message) for w in caught)


def test_sigterm_lets_the_request_in_flight_finish_and_the_api_key_guards(classification_run):
    server = Server(classification_run, "--api-key", "s3cret")
    with server as url:
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.post(f"{url}/predict", json={"texts": ["good"]}).status_code == 401
        # a request the server has begun (headers and half the body read) when SIGTERM arrives
        body = json.dumps({"texts": ["the movie was great"]}).encode()
        connection = socket.create_connection(("127.0.0.1", server.port))
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer s3cret\r\n"
                           b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10])
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.7)
        assert server.process.poll() is None, "the server must wait for the request in flight"
        connection.sendall(body[10:])
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        connection.close()
        # uvicorn ends by raising SIGTERM again once the requests in flight are answered: exit code -15
        assert server.terminate() in (0, -15)
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), answer[:300]
        expected = gradtune.load(classification_run).predict(["the movie was great"])
        assert json.loads(payload)["results"][0]["probabilities"] == pytest.approx(expected[0]["probabilities"])
        log = server.process.stdout.read()
        assert "Waiting for" in log and "Finished server process" in log, log
