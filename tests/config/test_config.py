"""The config contract users rely on: typos are caught with the key's full path and a suggestion,
bad values name their key, `key=value` overrides are typed, and the shipped YAML files parse."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gradtune.config import Config, as_config, build_config, load_config, parse_overrides
from gradtune.errors import GradtuneError

REPO = Path(__file__).resolve().parents[2]


def config_error(raw: dict, overrides: list[str] | None = None) -> str:
    with pytest.raises(GradtuneError) as info:
        build_config(raw, overrides)
    return str(info.value)


# -- unknown keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, overrides, key, suggestion",
    [
        ({"train": {"lrr": 1e-4}}, [], "train.lrr", "'lr'"),
        ({"trian": {"lr": 1e-4}}, [], "trian", "'train'"),
        ({}, ["train.lrr=1"], "train.lrr", "'lr'"),
        ({}, ["data.text_colum=sentence"], "data.text_colum", "'text_column'"),
        ({}, ["outptu_dir=runs/x"], "outptu_dir", "'output_dir'"),
    ],
)
def test_unknown_key_names_full_path_and_suggests(raw, overrides, key, suggestion):
    msg = config_error(raw, overrides)
    assert key in msg
    assert "unknown key" in msg
    assert f"did you mean {suggestion}" in msg


def test_unknown_key_in_yaml_file_names_the_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("train:\n  lrr: 0.001\n")
    with pytest.raises(GradtuneError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "train.lrr" in str(info.value) and "'lr'" in str(info.value)


# -- bad values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.lr=-1", ["train.lr", "-1"]),
        ("train.batch_size=0", ["train.batch_size", "0"]),
        ("train.optimizer=adamm", ["train.optimizer", "adamm", "sgd", "adam", "adamw", "rmsprop", "adagrad"]),
        ("train.eval_every=0", ["train.eval_every", "epoch"]),
        ("train.metric=acuracy", ["train.metric", "acuracy", "did you mean 'accuracy'"]),
        ("data.on_empty=drop", ["data.on_empty", "error", "skip"]),
        ("data.validation_split=1.5", ["data.validation_split"]),
    ],
)
def test_bad_value_names_the_key(override, expected):
    msg = config_error({}, [override])
    for part in expected:
        assert part in msg, f"{part!r} missing from: {msg}"


def test_cross_key_error_does_not_dump_the_whole_config():
    # as_config re-validates the full dumped config; the error must stay about the one key
    with pytest.raises(GradtuneError) as info:
        as_config(Config(), ["train.metric=acuracy"])
    msg = str(info.value)
    assert "train.metric" in msg and "'accuracy'" in msg
    assert "output_dir" not in msg and "minilm" not in msg


def test_validation_file_and_split_together_are_rejected():
    msg = config_error({"data": {"validation": "dev.csv", "validation_split": 0.2}})
    assert "data.validation" in msg and "data.validation_split" in msg


# -- typed overrides ------------------------------------------------------------------------


def test_override_float_in_e_notation_is_a_float():
    # PyYAML reads "3e-5" (no dot) as a string; the schema must still give a float
    cfg = build_config({}, ["train.lr=3e-5"])
    assert isinstance(cfg.train.lr, float) and cfg.train.lr == 3e-05


def test_yaml_float_in_e_notation_is_a_float(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("train:\n  lr: 3e-5\n")
    cfg = load_config(path)
    assert isinstance(cfg.train.lr, float) and cfg.train.lr == 3e-05


def test_override_steps_or_epoch():
    steps = build_config({}, ["train.eval_every=50"]).train.eval_every
    assert steps == 50 and type(steps) is int
    assert build_config({"train": {"eval_every": 10}}, ["train.eval_every=epoch"]).train.eval_every == "epoch"


def test_override_null_and_empty_give_none():
    raw = {"data": {"text_pair_column": "question", "validation": "dev.csv"}}
    cfg = build_config(raw, ["data.text_pair_column=null", "data.validation="])
    assert cfg.data.text_pair_column is None
    assert cfg.data.validation is None


def test_override_creates_nested_sections_and_keeps_siblings():
    assert build_config({}, ["model.name=foo"]).model.name == "foo"
    cfg = build_config({"model": {"trust_remote_code": True}}, ["model.name=foo"])
    assert cfg.model.name == "foo" and cfg.model.trust_remote_code is True
    assert parse_overrides(["model.name=foo", "train.lr=0.1"]) == {"model": {"name": "foo"}, "train": {"lr": 0.1}}


def test_override_of_digits_for_a_text_key_stays_text():
    cfg = build_config({}, ["output_dir=2024", "data.label_column=1"])
    assert cfg.output_dir == "2024"
    assert cfg.data.label_column == "1"


def test_overrides_win_over_the_yaml_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("train:\n  lr: 0.1\n  batch_size: 4\n")
    cfg = load_config(path, ["train.lr=0.5"])
    assert cfg.train.lr == 0.5 and cfg.train.batch_size == 4


@pytest.mark.parametrize("pair", ["trainlr", "=5", "  =x"])
def test_malformed_override_says_key_value(pair):
    with pytest.raises(GradtuneError) as info:
        build_config({}, [pair])
    assert "key=value" in str(info.value)
    assert repr(pair) in str(info.value)


# -- load_config ----------------------------------------------------------------------------


def test_load_config_reads_yaml(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(
        "task: classification\nmodel:\n  name: some/model\ndata:\n  train: t.csv\n  max_length: 64\n"
        "train:\n  epochs: 2\n  optimizer: sgd\noutput_dir: runs/x\n"
    )
    cfg = load_config(path)
    assert cfg.model.name == "some/model"
    assert cfg.data.train == "t.csv" and cfg.data.max_length == 64
    assert cfg.train.epochs == 2 and cfg.train.optimizer == "sgd"
    assert cfg.output_dir == "runs/x"
    assert cfg.train.batch_size == Config().train.batch_size  # unset keys keep defaults


def test_load_config_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == Config()


def test_load_config_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(GradtuneError) as info:
        load_config(path)
    assert "not found" in str(info.value) and str(path) in str(info.value)


def test_load_config_top_level_list(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- train\n- data\n")
    with pytest.raises(GradtuneError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "mapping" in str(info.value)


def test_load_config_invalid_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  lr: [1, 2\n")
    with pytest.raises(GradtuneError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "YAML" in str(info.value)


def test_as_config_accepts_dict_config_and_path(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("train:\n  lr: 0.25\n")
    assert as_config(path).train.lr == 0.25
    assert as_config({"train": {"lr": 0.25}}).train.lr == 0.25
    assert as_config(Config(), ["train.lr=0.25"]).train.lr == 0.25


def test_as_config_with_another_task_takes_that_tasks_defaults():
    cfg = as_config(Config(), ["task=regression"])  # Config() filled in cross_entropy and accuracy
    assert (cfg.train.loss, cfg.train.metric) == ("mse", "r2")
    chosen = as_config({"train": {"loss": "cross_entropy", "metric": "f1_macro"}})
    with pytest.raises(GradtuneError, match="does not fit task"):  # a loss the user chose stays chosen
        as_config(chosen, ["task=regression"])


# -- shipped configs ------------------------------------------------------------------------

SHIPPED = sorted(p for p in REPO.glob("examples/**/*.yaml") if p.parent.name != "sweeps") + sorted(
    REPO.glob("src/gradtune/resources/*.yaml"))  # examples/sweeps/ holds search spaces: see test_sweep.py


def test_shipped_configs_exist():
    assert any(p.parts[-2] == "examples" for p in SHIPPED)
    assert any(p.parent.name == "resources" for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_config_parses(path):
    cfg = load_config(path)  # data paths need not exist: only the schema is checked
    from gradtune.tasks import get_task

    assert cfg.task == (yaml.safe_load(path.read_text()).get("task") or "classification")
    assert cfg.train.metric in get_task(cfg.task).metrics_for(cfg.train.loss)


def test_config_reference_in_docs_is_up_to_date():
    from gradtune.config.reference import config_reference

    docs = REPO / "docs" / "config.md"
    assert docs.read_text() == config_reference(), "regenerate: python -m gradtune.config.reference > docs/config.md"


def test_a_key_written_twice_in_the_yaml_names_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("train:\n  max_steps: 3\n  num_threads: 2\n  lr: 0.1\n  max_steps: 5\n")
    with pytest.raises(GradtuneError, match=r"twice.yaml: train.max_steps is set twice, on line 2 and on line 5"):
        load_config(path)
    path.write_text("train:\n  lr: 0.1\nmodel:\n  name: x\ntrain:\n  epochs: 2\n")
    with pytest.raises(GradtuneError, match="train is set twice, on line 1 and on line 5"):
        load_config(path)


def test_yaml_syntax_errors_name_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  lr: 1\n bad: x\n")
    with pytest.raises(GradtuneError, match=r"broken.yaml, line 3, column 2: not valid YAML"):
        load_config(path)


def test_a_value_where_a_section_belongs_names_the_section():
    with pytest.raises(GradtuneError, match=r"train: is a section of keys, not a value \(got 5\); set one of its "
                                            r"keys, e.g. train.epochs=..."):
        build_config({}, ["train=5"])
