"""Chinese text end to end: a CSV or JSONL file of Chinese reviews with Chinese label names trains a
from-scratch model, and predict / eval give the text and labels back unchanged (UTF-8, no \\u
escapes); an Excel UTF-8 file (with a BOM) reads, a GBK file is a clear error; tables line up with
Chinese labels; the bundled demo set (examples/data/zh_sentiment) has the shape its README states."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest
import yaml
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

from conftest import write_csv
from gradtune.commands import app
from gradtune.commands.tables import confusion_table, metrics_table
from gradtune.data.files import read_table
from gradtune.errors import GradtuneError
from gradtune.models.tokenizers import train_bpe, train_wordpiece

runner = CliRunner()
DEMO = Path(__file__).resolve().parents[2] / "examples" / "data" / "zh_sentiment"

SUBJECTS = ["这家餐厅", "这个酒店", "这部电影", "这本书", "快递", "客服", "这款手机", "导游"]
GOOD = ["很好", "特别棒", "让人满意", "值得推荐", "非常出色"]
BAD = ["很差", "太糟糕", "让人失望", "不值这个价", "非常难受"]
FILLER = ["", "真的", "总体", "说实话", "这次"]


def chinese_rows(n: int, seed: int) -> list[dict[str, str]]:
    """Short reviews labelled 正面 / 负面, alternating, shuffled."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "正面" if i % 2 == 0 else "负面"
        words = GOOD if label == "正面" else BAD
        rows.append({"text": f"{rng.choice(FILLER)}{rng.choice(SUBJECTS)}{rng.choice(words)}。", "label": label})
    rng.shuffle(rows)
    return rows


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def config(train: Path, validation: Path, output_dir: Path) -> dict:
    """A tiny transformer trained from scratch with its own tokenizer: seconds on a CPU."""
    return {
        "task": "classification",
        "model": {"name": "transformer", "tokenizer": "train", "vocab_size": 200, "embedding_size": 32,
                  "hidden_size": 64, "num_layers": 1, "num_heads": 2},
        "data": {"train": str(train), "validation": str(validation), "max_length": 32},
        "train": {"epochs": 6, "batch_size": 8, "optimizer": "adamw", "lr": 3e-3, "warmup_ratio": 0.0,
                  "log_every": 5, "progress": False, "seed": 0},
        "output_dir": str(output_dir),
        "report": False,  # the conftest's switch is per test; the module's fixture trains before it
    }


def train_cli(tmp_path: Path, fmt: str) -> tuple[Path, list[dict[str, str]], Path]:
    """Train through `gradtune train` on Chinese files of format `fmt`; the run, the dev rows, their file."""
    write = write_csv if fmt == "csv" else write_jsonl
    train = write(tmp_path / f"train.{fmt}", chinese_rows(120, seed=1))
    dev_rows = chinese_rows(30, seed=2)
    dev = write(tmp_path / f"dev.{fmt}", dev_rows)
    run = tmp_path / "runs" / f"中文情感_{fmt}"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config(train, dev, run), allow_unicode=True), encoding="utf-8")
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 0, result.output
    assert "正面" in result.output and "负面" in result.output  # the confusion matrix, labelled
    return run, dev_rows, dev


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory) -> tuple[Path, list[dict[str, str]], Path]:
    return train_cli(tmp_path_factory.mktemp("zh-csv"), "csv")


def test_csv_trains_predicts_and_evaluates_with_chinese_labels(csv_run, tmp_path):
    run, dev_rows, dev = csv_run
    meta = json.loads((run / "model" / "gradtune.json").read_text(encoding="utf-8"))
    assert sorted(meta["labels"]) == ["正面", "负面"]

    predictions = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", str(run), "--input", str(dev), "--output", str(predictions)])
    assert result.exit_code == 0, result.output
    with predictions.open(encoding="utf-8", newline="") as f:  # UTF-8, or this raises
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"text", "label", "prob_正面", "prob_负面"}
    assert [r["text"] for r in rows] == [r["text"] for r in dev_rows]  # the text back, unchanged
    assert {r["label"] for r in rows} <= {"正面", "负面"}
    assert sum(r["label"] == t["label"] for r, t in zip(rows, dev_rows)) >= 27  # 0.9 of 30; chance is 0.5

    scores = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", str(run), "--data", str(dev), "--output", str(scores)])
    assert result.exit_code == 0, result.output
    assert json.loads(scores.read_text())["accuracy"] >= 0.9


def test_jsonl_trains_and_predicts_without_escapes(tmp_path):
    run, dev_rows, dev = train_cli(tmp_path, "jsonl")
    predictions = tmp_path / "pred.jsonl"
    result = runner.invoke(app, ["predict", str(run), "--input", str(dev), "--output", str(predictions)])
    assert result.exit_code == 0, result.output
    raw = predictions.read_bytes().decode("utf-8")
    assert "\\u" not in raw and dev_rows[0]["text"] in raw  # written as characters, not \u6b63 escapes
    lines = [json.loads(line) for line in raw.splitlines()]
    assert [line["text"] for line in lines] == [r["text"] for r in dev_rows]
    assert set(lines[0]["probabilities"]) == {"正面", "负面"}
    assert sum(line["label"] == r["label"] for line, r in zip(lines, dev_rows)) >= 27

    result = runner.invoke(app, ["predict", str(run), "--text", "这家餐厅特别棒。"])
    assert result.exit_code == 0, result.output
    assert "\\u" not in result.output and json.loads(result.output)["text"] == "这家餐厅特别棒。"


def test_an_excel_utf8_file_with_a_bom_reads(tmp_path):
    # Excel's "CSV UTF-8" starts the file with a byte-order mark: it must not stick to the first column's name
    path = tmp_path / "excel.csv"
    path.write_bytes("text,label\n菜很好吃,正面\n太难吃了,负面\n".encode("utf-8-sig"))
    ds = read_table(path)
    assert ds.column_names == ["text", "label"] and ds["text"] == ["菜很好吃", "太难吃了"]
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes('{"text": "很好", "label": "正面"}\n'.encode("utf-8-sig"))
    assert read_table(jsonl)[0] == {"text": "很好", "label": "正面"}


def test_a_gbk_file_is_a_clear_error_naming_it(tmp_path):
    path = tmp_path / "评论.csv"
    path.write_bytes("text,label\n菜很好吃,正面\n太难吃了,负面\n".encode("gbk"))
    with pytest.raises(GradtuneError) as info:
        read_table(path)
    message = str(info.value)
    assert str(path) in message and "line 2 is not valid UTF-8" in message
    assert "GBK" in message and "iconv -f gb18030 -t utf-8" in message

    latin = tmp_path / "latin.csv"  # accents then letters also decode as GB18030, into rare characters
    latin.write_bytes("text,label\nnaïve résumé,x\n".encode("latin-1"))
    with pytest.raises(GradtuneError) as info:
        read_table(latin)
    assert "GBK" not in str(info.value) and "iconv -f latin1" in str(info.value)


@pytest.mark.parametrize("train", [train_wordpiece, train_bpe])
def test_trained_tokenizers_give_each_chinese_character_its_own_token(train):
    # 这家餐厅 is in one text in eight: a plain BPE would merge it into one token. (A vocabulary too
    # small for the texts' characters leaves byte-level BPE's characters as bytes: 1000 holds them all.)
    texts = [r["text"] for r in chinese_rows(60, seed=3)]
    tokenizer = train(texts, 1000, 32)
    tokens = tokenizer.tokenize("这家餐厅很好。")  # byte-level BPE's tokens are bytes: decode each
    assert [tokenizer.convert_tokens_to_string([t]) for t in tokens] == list("这家餐厅很好。")


def columns_line_up(table) -> list[str]:
    """The table printed into an 80-cell console, and a check that it lines up: every line has the
    same width in cells, and the column borders sit at the same cell on every row."""
    console = Console(file=io.StringIO(), width=80, color_system=None, legacy_windows=False)
    console.print(table)
    lines = [line for line in console.file.getvalue().splitlines() if "│" in line or "┃" in line]
    assert len(lines) >= 3
    borders = {tuple(cell_len(line[:i]) for i, c in enumerate(line) if c in "│┃") for line in lines}
    assert len(borders) == 1, "\n".join(lines)
    assert len({cell_len(line) for line in lines}) == 1
    return lines


def test_confusion_matrix_and_metrics_align_with_chinese_labels():
    labels = ["正面", "负面", "中性（无明显倾向）"]
    lines = columns_line_up(confusion_table(labels, [[12, 1, 0], [2, 9, 3], [0, 1, 100]]))
    assert any("中性（无明显倾向）" in line for line in lines)
    assert all(len(line) < cell_len(line) for line in lines)  # wide characters did count double
    columns_line_up(metrics_table("验证集", {"准确率 accuracy": 0.9, "f1_macro": 0.8875, "样本数": 100}))


def test_runs_table_keeps_a_chinese_run_name_whole(csv_run):
    run, _, _ = csv_run
    # a narrow terminal: columns fold, but the run's name keeps the cells it needs (2 per character)
    result = runner.invoke(app, ["runs", str(run.parent)], env={"COLUMNS": "70"})
    assert result.exit_code == 0, result.output
    assert run.name in result.output


# -- the bundled demo set ----------------------------------------------------------------------

def demo_rows(split: str) -> list[dict[str, str]]:
    with (DEMO / f"{split}.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_the_bundled_demo_set_is_balanced_and_splits_do_not_overlap():
    train, dev = demo_rows("train"), demo_rows("dev")
    assert (len(train), len(dev)) == (400, 100)
    for rows in (train, dev):
        assert set(rows[0]) == {"text", "label"}
        counts = {label: sum(r["label"] == label for r in rows) for label in ("正面", "负面")}
        assert counts == {"正面": len(rows) // 2, "负面": len(rows) // 2}
        assert all(r["text"].strip() for r in rows)
    texts = [r["text"] for r in train + dev]
    assert len(set(texts)) == len(texts)  # no duplicate, within or across the splits
    # not solvable by a keyword: negation and contrast words occur under both labels
    for word in ("不", "没", "但是", "虽然"):
        assert {r["label"] for r in train if word in r["text"]} == {"正面", "负面"}, word
