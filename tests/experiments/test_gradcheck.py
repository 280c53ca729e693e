"""Gradient checking: autograd agrees with central differences on the tiny BERT, on the mlp
(with and without a hidden layer), on rnn / lstm / gru (backprop through time, one and two
directions, every pooling) and on the from-scratch transformer encoder and gpt decoder, a
deliberately wrong backward fails and is named, the `gradtune gradcheck` command prints the table
and exits 0 / 1 / 2, and the user's run is left alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import gradtune.experiments.gradcheck
from conftest import counting_rows, linear_rows, tabular_config, write_csv
from gradtune.commands import app
from gradtune.errors import GradtuneError
from gradtune.experiments.gradcheck import check_gradients, rel_error

runner = CliRunner()


class DoubledTanhBackward(torch.autograd.Function):
    """tanh whose backward returns twice the true gradient: a planted backprop bug."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return 2 * grad * (1 - y * y)


class BrokenTanh(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return DoubledTanhBackward.apply(x)


@pytest.fixture
def mlp_config(tmp_path):
    train = write_csv(tmp_path / "train.csv", linear_rows(40, 0))

    def build(hidden: list[int]) -> dict:
        return tabular_config(train, tmp_path / "run", model={"hidden_sizes": hidden, "activation": "tanh"},
                              data={"standardize_features": True})

    return build


def test_relative_error_floor_and_zero_rule():
    assert rel_error(2.0, 2.0) == 0.0
    assert rel_error(1.0, 2.0) == pytest.approx(0.5)
    assert rel_error(0.0, 1e-12) == 0.0  # both zero up to round-off: nothing to compare
    assert rel_error(0.0, 1e-9) == pytest.approx(0.1)  # the 1e-8 floor, not 1e-9 / 1e-9


def test_tiny_bert_passes_and_embeddings_are_sampled_from_used_rows(make_config):
    report = check_gradients(make_config(), params_per_tensor=4)
    assert report.passed, [(r.tensor, r.worst_rel_error) for r in report.rows if not r.ok]
    names = [r.tensor for r in report.rows]
    assert "classifier.weight" in names and "bert.embeddings.word_embeddings.weight" in names
    assert all(r.checked == min(4, torch.Size(r.shape).numel()) for r in report.rows)
    word = next(r for r in report.rows if r.tensor == "bert.embeddings.word_embeddings.weight")
    assert abs(word.autograd) > 1e-10  # a row the batch uses, not a zero-gradient unused word
    assert report.loss == pytest.approx(0.693, abs=0.01) and report.examples == 4
    # the head's gradients are large enough to be checked to the full tolerance
    head = next(r for r in report.rows if r.tensor == "classifier.weight")
    assert head.ok and not head.roundoff_limited and head.worst_rel_error < 1e-5


@pytest.mark.parametrize("hidden", [[8], []])
def test_mlp_passes_with_and_without_a_hidden_layer(mlp_config, hidden):
    report = check_gradients(mlp_config(hidden), params_per_tensor=5, batch_size=8)
    assert report.passed and report.examples == 8
    expected = ["layers.0.weight", "layers.0.bias", "head.weight", "head.bias"] if hidden else \
        ["head.weight", "head.bias"]
    assert [r.tensor for r in report.rows] == expected
    assert max(r.worst_rel_error for r in report.rows) < 1e-6
    assert not any(r.roundoff_limited for r in report.rows)


@pytest.mark.parametrize("name", ["transformer", "gpt"])
def test_from_scratch_transformers_pass(make_config, tmp_path, name):
    cfg = make_config()
    cfg["model"] = {"name": name, "embedding_size": 16, "hidden_size": 32, "num_layers": 2, "num_heads": 2,
                    "vocab_size": 120 if name == "transformer" else 280}
    if name == "gpt":  # next-token loss, normalised by the batch's target tokens
        cfg["task"] = "causal_lm"
        cfg["data"] = {"train": str(write_csv(tmp_path / "count.csv", counting_rows(20, 0))), "max_length": 16}
    report = check_gradients(cfg, params_per_tensor=3)
    assert report.passed, [(r.tensor, r.worst_rel_error) for r in report.rows if not r.ok]
    names = [r.tensor for r in report.rows]
    assert "tokens.weight" in names and "positions.weight" in names and "blocks.1.attention.qkv.weight" in names
    # the loss at init: about log(classes) for the encoder, log(vocabulary) for the decoder
    assert report.loss == pytest.approx(0.693 if name == "transformer" else 5.63, abs=0.1)
    # at GPT-2's small init a few attention tensors have gradients near the finite difference's
    # round-off; the rest, the embeddings among them, are checked to the full tolerance
    resolved = {r.tensor: r.worst_rel_error for r in report.rows if not r.roundoff_limited}
    assert len(resolved) >= 0.75 * len(report.rows) and "tokens.weight" in resolved
    assert max(resolved.values()) < 1e-5


def test_a_wrong_backward_fails_and_names_the_tensors(mlp_config, monkeypatch):
    real_prepare = gradtune.experiments.gradcheck.prepare

    def broken(cfg, run_dir):
        job = real_prepare(cfg, run_dir)
        job.model.layers[1] = BrokenTanh()  # the hidden layer's activation: backward 2x too large
        return job

    monkeypatch.setattr(gradtune.experiments.gradcheck, "prepare", broken)
    report = check_gradients(mlp_config([8]))
    assert not report.passed
    verdict = {r.tensor: r.ok for r in report.rows}
    # only the tensors below the broken activation get the doubled gradient
    assert verdict == {"layers.0.weight": False, "layers.0.bias": False, "head.weight": True, "head.bias": True}
    bad = next(r for r in report.rows if r.tensor == "layers.0.weight")
    assert bad.worst_rel_error == pytest.approx(0.5, abs=1e-4)  # |2g - g| / |2g|
    assert bad.autograd == pytest.approx(2 * bad.numeric, rel=1e-6)


def test_a_gradient_hook_that_scales_one_tensor_is_caught(make_config, monkeypatch):
    real_prepare = gradtune.experiments.gradcheck.prepare

    def hooked(cfg, run_dir):
        job = real_prepare(cfg, run_dir)
        job.model.classifier.weight.register_hook(lambda g: 1.01 * g)
        return job

    monkeypatch.setattr(gradtune.experiments.gradcheck, "prepare", hooked)
    report = check_gradients(make_config(), params_per_tensor=3)
    assert [r.tensor for r in report.rows if not r.ok] == ["classifier.weight"]


def write_config(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_prints_the_table_and_exits_0_and_leaves_the_run_alone(mlp_config, tmp_path):
    cfg = mlp_config([8])
    run_dir = Path(cfg["output_dir"])
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"kind": "train"}\n')  # a file of the user's own run
    result = runner.invoke(app, ["gradcheck", str(write_config(tmp_path, cfg)), "--params", "3", "--batch", "6"])
    assert result.exit_code == 0, result.output
    for text in ("worst relative error", "layers.0.weight", "head.bias", "8x2", "PASS"):
        assert text in result.output
    assert "FAIL" not in result.output
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.jsonl"]
    assert (run_dir / "metrics.jsonl").read_text() == '{"kind": "train"}\n'


def test_cli_exits_1_on_a_wrong_backward(mlp_config, tmp_path, monkeypatch):
    real_prepare = gradtune.experiments.gradcheck.prepare

    def broken(cfg, run_dir):
        job = real_prepare(cfg, run_dir)
        job.model.layers[1] = BrokenTanh()
        return job

    monkeypatch.setattr(gradtune.experiments.gradcheck, "prepare", broken)
    cfg = mlp_config([8])
    result = runner.invoke(app, ["gradcheck", str(write_config(tmp_path, cfg))])
    assert result.exit_code == 1, result.output
    assert "FAIL: 2 of 4 tensors" in result.output and "layers.0.weight, layers.0.bias" in result.output
    assert not Path(cfg["output_dir"]).exists()  # nothing written: output_dir not even created


@pytest.mark.parametrize(("args", "message"), [
    (["--params", "0"], "--params must be at least 1"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--eps", "0"], "--eps must be > 0"),
    (["--tol", "-1"], "--tol must be > 0"),
])
def test_bad_arguments_exit_2_with_a_message(mlp_config, tmp_path, args, message):
    result = runner.invoke(app, ["gradcheck", str(write_config(tmp_path, mlp_config([]))), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    with pytest.raises(GradtuneError, match="must be at least 1"):
        check_gradients(mlp_config([]), params_per_tensor=0)


# texts of very different lengths, so the checked batch really has padding and packed sequences of
# several lengths: backprop through time must stop at each text's own end
RAGGED = [
    {"text": "great", "label": "positive"},
    {"text": "the food was really quite awful and the service was so very slow and dull", "label": "negative"},
    {"text": "the movie was lovely", "label": "positive"},
    {"text": "boring boring boring and poor overall it felt weak", "label": "negative"},
]


@pytest.fixture
def recurrent_config(tmp_path):
    train = write_csv(tmp_path / "ragged.csv", RAGGED)

    def build(cell: str, **model) -> dict:
        return {"task": "classification", "data": {"train": str(train), "max_length": 32},
                "model": {"name": cell, "embedding_size": 6, "hidden_size": 5, "vocab_size": 60, **model},
                "train": {"batch_size": 4, "progress": False}, "output_dir": str(tmp_path / "run")}

    # float64 LSTM steps on a batch of 4 are tiny: a second thread only adds contention (20x slower
    # on a busy 2-core machine)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield build
    torch.set_num_threads(threads)


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_backprop_through_time_is_right_for_every_cell(recurrent_config, cell, bidirectional, pooling):
    report = check_gradients(recurrent_config(cell, bidirectional=bidirectional, pooling=pooling),
                             params_per_tensor=4, batch_size=4)
    assert report.passed, [(r.tensor, r.worst_rel_error) for r in report.rows if not r.ok]
    assert report.examples == 4
    names = [r.tensor for r in report.rows]
    recurrent = [n for n in names if n.startswith("rnn.")]
    # input-to-hidden and hidden-to-hidden weights and biases, per direction
    assert len(recurrent) == 4 * (2 if bidirectional else 1)
    assert ("rnn.weight_hh_l0_reverse" in names) == bidirectional
    assert names[0] == "embeddings.weight" and names[-2:] == ["head.weight", "head.bias"]
    # the hidden-to-hidden weights (the through-time path) get real, non-zero gradients
    hh = next(r for r in report.rows if r.tensor == "rnn.weight_hh_l0")
    assert hh.ok and abs(hh.autograd) > 1e-9 and hh.autograd == pytest.approx(hh.numeric, rel=1e-3)


def test_a_stacked_lstm_passes_and_a_wrong_recurrent_gradient_fails(recurrent_config, monkeypatch):
    cfg = recurrent_config("lstm", num_layers=2, bidirectional=True)
    report = check_gradients(cfg, params_per_tensor=3)
    assert report.passed and "rnn.weight_hh_l1_reverse" in [r.tensor for r in report.rows]
    real_prepare = gradtune.experiments.gradcheck.prepare

    def hooked(cfg, run_dir):
        job = real_prepare(cfg, run_dir)
        job.model.rnn.weight_hh_l0.register_hook(lambda g: 0.9 * g)  # a BPTT term lost: 10% short
        return job

    monkeypatch.setattr(gradtune.experiments.gradcheck, "prepare", hooked)
    report = check_gradients(cfg, params_per_tensor=3)
    assert [r.tensor for r in report.rows if not r.ok] == ["rnn.weight_hh_l0"]


def test_cli_gradcheck_passes_on_a_bidirectional_gru(recurrent_config, tmp_path):
    cfg = recurrent_config("gru", bidirectional=True, pooling="max")
    result = runner.invoke(app, ["gradcheck", str(write_config(tmp_path, cfg)), "--params", "3"])
    assert result.exit_code == 0, result.output
    assert "all 11 tensors" in result.output and "weight_hh_l0" in result.output  # 4 per direction + 3
