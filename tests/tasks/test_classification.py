"""task: classification. Labels keep their names everywhere; integer labels can be given names
(data.label_names) that metrics, the confusion matrix, predictions and the saved model use."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import gradtune
from conftest import sentiment_rows, write_csv
from gradtune.commands import app
from gradtune.errors import GradtuneError


def numbered(rows: list[dict], seed_labels: list[str]) -> list[dict]:
    return [{"text": r["text"], "label": seed_labels.index(r["label"])} for r in rows]


@pytest.fixture
def integer_files(tmp_path) -> dict[str, str]:
    order = ["negative", "positive"]
    return {"train": str(write_csv(tmp_path / "train.csv", numbered(sentiment_rows(80, 1), order))),
            "validation": str(write_csv(tmp_path / "dev.csv", numbered(sentiment_rows(20, 2), order)))}


@pytest.mark.parametrize("names", [["bad", "good"], {0: "bad", 1: "good"}])
def test_integer_labels_get_their_names_everywhere(make_config, integer_files, names, tmp_path):
    cfg = make_config(data__train=integer_files["train"], data__validation=integer_files["validation"],
                      data__label_names=names, train__epochs=3)
    run = gradtune.train(cfg)
    model_dir = run.run_dir / "model"
    assert json.loads((model_dir / "label_map.json").read_text()) == {"0": "bad", "1": "good"}
    assert json.loads((model_dir / "config.json").read_text())["id2label"] == {"0": "bad", "1": "good"}
    prediction = gradtune.load(run.run_dir).predict(["the movie was great"])[0]
    assert set(prediction["probabilities"]) == {"bad", "good"}
    # a file of integer labels is still read (0 is "bad"), and the tables show the names
    assert gradtune.evaluate(run.run_dir, integer_files["validation"])["accuracy"] == run.best_metric
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({**cfg, "output_dir": str(tmp_path / "cli")}))
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 0 and "│ bad " in result.output and "│ good " in result.output


@pytest.mark.parametrize("names, message", [
    (["a", "b", "c"], r"data.label_names has 3 name\(s\) but .*train.csv \(column 'label'\) has 2 labels: 0, 1"),
    ({0: "a", 7: "b"}, r"names label\(s\) '7' that .* does not have and has no name for '1'"),
    (["a", "a"], r"gives the name\(s\) 'a' to more than one label"),
])
def test_label_names_that_do_not_fit_the_data_are_named(make_config, integer_files, names, message):
    cfg = make_config(data__train=integer_files["train"], data__validation=integer_files["validation"],
                      data__label_names=names)
    with pytest.raises(GradtuneError, match=message):
        gradtune.train(cfg)


def test_brackets_in_labels_and_paths_print_as_typed(make_config, tmp_path):
    rows = [{"text": r["text"], "label": f"[{r['label']}]"} for r in sentiment_rows(60, 3)]
    folder = tmp_path / "[data]"
    cfg = make_config(data__train=str(write_csv(folder / "train.csv", rows)), data__validation=None,
                      data__validation_split=0.25, train__epochs=1, output_dir=str(tmp_path / "[run]"))
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(cfg))
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    assert "[negative]" in result.output and "[positive]" in result.output and "[run]" in result.output
