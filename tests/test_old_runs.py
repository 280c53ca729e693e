"""Run folders written by an older gradtune still load and predict as they did when written
(tests/fixtures/old_runs, made by tests/fixtures/make_old_runs.py at gradtune 0.1.0)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import gradtune

OLD = Path(__file__).resolve().parent / "fixtures" / "old_runs"
EXPECTED = json.loads((OLD / "expected.json").read_text())
TEXTS = ["the movie was great", "the food was awful", "this book is dull and boring"]
ROWS = [[0.5, "north", "flat"], {"x": -0.2, "city": "west", "kind": "house"}, [0.0, "nowhere", "flat"]]


def close(a, b) -> bool:
    """Equal up to float round-off, recursively."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == pytest.approx(b, rel=1e-5, abs=1e-6)
    return a == b


@pytest.fixture
def old_run(tmp_path):
    """A copy, so that nothing a test does can change the fixture."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(OLD / name, tmp_path / name))

    return copy


@pytest.mark.parametrize("name", ["classification", "multilabel_lora", "regression_lstm"])
def test_an_old_text_run_predicts_as_it_did(old_run, name):
    assert close(gradtune.load(old_run(name)).predict(TEXTS), EXPECTED[name])


def test_an_old_tabular_run_predicts_as_it_did(old_run):
    assert close(gradtune.load(old_run("tabular")).predict(ROWS), EXPECTED["tabular"])


def test_an_old_language_model_writes_what_it_wrote(old_run):
    text = gradtune.load(old_run("causal_lm_gpt")).generate("three four", max_new_tokens=4, greedy=True)
    assert text == EXPECTED["causal_lm_gpt"]
