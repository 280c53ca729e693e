"""Fast prediction and files of any length: texts batched longest first come back in the input order
with the results of one-by-one prediction; eval read chunk by chunk gives the metrics of one piece;
predict --input writes one row per input row, in order, chunk after chunk."""

from __future__ import annotations

import csv
import json
import random

import pytest
import torch
from typer.testing import CliRunner

import gradtune
from conftest import sentiment_rows, write_csv
from gradtune.commands import app
from gradtune.inference import streaming


@pytest.fixture(scope="module")
def run(tmp_path_factory, wide_init_bert, sentiment_files):
    out = tmp_path_factory.mktemp("run") / "run"
    cfg = {"model": {"name": str(wide_init_bert)}, "data": {"train": str(sentiment_files["train"]), "max_length": 32},
           "train": {"epochs": 1, "batch_size": 8, "lr": 3e-3, "progress": False, "seed": 0}, "output_dir": str(out)}
    return gradtune.train(cfg).run_dir


def mixed_lengths(n: int, seed: int) -> list[dict[str, str]]:
    """Rows whose texts run from one word to a dozen, in no order."""
    rng = random.Random(seed)
    rows = sentiment_rows(n, seed=seed)
    for row in rows:
        row["text"] = " ".join(row["text"].split()[: rng.randint(1, 12)])
    return rows


def test_length_sorted_batches_return_one_by_one_results_in_input_order(run):
    model = gradtune.load(run)
    texts = [r["text"] for r in mixed_lengths(40, seed=3)]
    assert len({len(t.split()) for t in texts}) > 5  # lengths really differ, so the order changes
    alone = torch.cat([model.logits([t]) for t in texts])
    torch.testing.assert_close(model.logits(texts, batch_size=7), alone, atol=1e-5, rtol=0)
    batched = model.predict(texts, batch_size=7)
    singles = [model.predict([t])[0] for t in texts]
    assert [r["label"] for r in batched] == [r["label"] for r in singles]
    for got, expected in zip(batched, singles):
        assert got["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)


def test_by_length_puts_the_longest_first_and_keeps_ties_in_order():
    from gradtune.inference.predictor import by_length

    assert by_length({"length": [2, 5, 2, 9]}, 4) == [3, 1, 0, 2]
    assert by_length({"input_ids": [[1], [1, 2, 3], [1, 2]]}, 3) == [1, 2, 0]
    assert by_length({"features": [[0.1], [0.2]]}, 2) == [0, 1]  # no tokens: the input order


def test_streamed_eval_over_several_chunks_gives_the_metrics_of_one(run, tmp_path, monkeypatch):
    data = write_csv(tmp_path / "dev.csv", mixed_lengths(50, seed=4))
    whole = gradtune.evaluate(run, data, batch_size=8)
    monkeypatch.setattr(streaming, "CHUNK_ROWS", 7)  # 8 chunks, the last one short
    sizes = []
    real = streaming.chunks

    def counted(ds, rows=None):
        for chunk in real(ds, rows):
            sizes.append(len(chunk))
            yield chunk

    monkeypatch.setattr(streaming, "chunks", counted)
    chunked = gradtune.evaluate(run, data, batch_size=8)
    assert sizes == [7] * 7 + [1]
    assert chunked["examples"] == whole["examples"] == 50
    assert set(chunked) == set(whole)
    for name, value in whole.items():  # counts (the confusion matrix) exactly, the rest to float noise
        assert chunked[name] == (value if isinstance(value, list) else pytest.approx(value, abs=1e-5)), name
    assert whole["loss"] > 0 and sum(map(sum, whole["confusion_matrix"])) == 50


def test_streamed_eval_names_the_line_of_an_empty_text_in_a_later_chunk(run, tmp_path, monkeypatch):
    rows = sentiment_rows(20, seed=5)
    rows[15]["text"] = " "
    data = write_csv(tmp_path / "dev.csv", rows)
    monkeypatch.setattr(streaming, "CHUNK_ROWS", 6)
    with pytest.raises(gradtune.errors.GradtuneError, match=r"dev.csv, line 17, column 'text'"):
        gradtune.evaluate(run, data)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_streamed_predict_writes_one_row_per_input_in_order(run, tmp_path, monkeypatch, suffix):
    rows = mixed_lengths(30, seed=6)
    rows[11]["text"] = ""  # skipped, and counted
    source = write_csv(tmp_path / "in.csv", rows)
    monkeypatch.setattr(streaming, "CHUNK_ROWS", 4)  # 8 chunks
    target = tmp_path / f"out{suffix}"
    result = CliRunner().invoke(app, ["predict", str(run), "--input", str(source), "--output", str(target),
                                      "--on-empty", "skip", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    if suffix == ".csv":
        written = list(csv.DictReader(target.open(encoding="utf-8")))
        labels = [w["label"] for w in written]
    else:
        written = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
        labels = [w["label"] for w in written]
    kept = [r["text"] for i, r in enumerate(rows) if i != 11]
    assert [w["text"] for w in written] == kept
    assert labels == [r["label"] for r in gradtune.load(run).predict(kept)]
    assert not list(tmp_path.glob(".*partial"))


def test_a_failed_predict_leaves_no_output_file(run, tmp_path, monkeypatch):
    rows = sentiment_rows(12, seed=7)
    rows[9]["text"] = ""
    source = write_csv(tmp_path / "in.csv", rows)
    monkeypatch.setattr(streaming, "CHUNK_ROWS", 4)  # the empty text is in the third chunk
    result = CliRunner().invoke(app, ["predict", str(run), "--input", str(source), "--output",
                                      str(tmp_path / "o.csv")])
    assert result.exit_code == 2 and "in.csv, line 11, column 'text'" in result.output, result.output
    assert list(tmp_path.iterdir()) == [source]
