"""Reading and checking data: every format reads to the same rows, every error names the file,
the 1-based line (text formats) and the column, labels round-trip to predictions, and batches
are padded only to their own longest sequence."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gradtune
from conftest import sentiment_rows, write_csv
from gradtune.config import as_config, build_config
from gradtune.data.batching import LengthGroupedBatchSampler, make_loader
from gradtune.data.files import read_table
from gradtune.data.rows import load_split
from gradtune.errors import GradtuneError
from gradtune.models.pretrained import load_tokenizer
from gradtune.tasks import classification, get_task
from gradtune.tasks.labels import label_names
from gradtune.training.prepare import read_data

task = get_task("classification")


def load(path: Path, **data: object):
    """One split read and checked as classification training reads it, with these data.* settings."""
    cfg = build_config({"data": data})
    return load_split(path, task.columns(task.input_settings(cfg), labelled=True), task.text_keys, cfg.data.on_empty)


def data_error(path: Path, **data: object) -> str:
    with pytest.raises(GradtuneError) as info:
        load(path, **data)
    return str(info.value)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- formats --------------------------------------------------------------------------------

ROWS = [
    {"text": "the movie was good", "label": "positive"},
    {"text": 'with, a comma and "quotes"', "label": "negative"},
    {"text": "two\nlines", "label": "positive"},
    {"text": "the food was awful", "label": "negative"},
]


def write_format(path: Path, rows: list[dict]) -> Path:
    fmt = path.suffix
    if fmt == ".csv":
        return write_csv(path, rows)
    if fmt == ".tsv":
        return write_csv(path, rows, delimiter="\t")
    if fmt == ".jsonl":
        return write_jsonl(path, rows)
    if fmt == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
        return path
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_every_format_reads_the_same_rows(tmp_path, suffix):
    path = write_format(tmp_path / f"data{suffix}", ROWS)
    ds, skipped = load(path)
    assert skipped == 0
    assert ds["text"] == [r["text"] for r in ROWS]
    assert ds["label"] == [r["label"] for r in ROWS]
    assert ds["_row"] == list(range(len(ROWS)))


# -- columns --------------------------------------------------------------------------------


def test_missing_text_column_names_column_key_and_existing_columns(tmp_path):
    path = write_csv(tmp_path / "train.csv", [{"sentence": "good", "label": "positive"}])
    msg = data_error(path)
    assert str(path) in msg
    assert "'text'" in msg and "data.text_column" in msg
    assert "sentence" in msg and "label" in msg


def test_missing_label_column_names_its_key(tmp_path):
    path = write_csv(tmp_path / "train.csv", [{"text": "good", "y": "positive"}])
    msg = data_error(path, label_column="sentiment")
    assert str(path) in msg and "'sentiment'" in msg and "data.label_column" in msg
    assert "'text', 'y'" in msg


def test_missing_pair_column_names_its_key(tmp_path):
    path = write_csv(tmp_path / "train.csv", [{"text": "good", "label": "positive"}])
    msg = data_error(path, text_pair_column="hypothesis")
    assert "'hypothesis'" in msg and "data.text_pair_column" in msg


# -- empty files ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["train.csv", "train.jsonl", "train.tsv"])
def test_zero_byte_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    msg = data_error(path)
    assert str(path) in msg and "empty" in msg


def test_header_only_csv(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\n")
    msg = data_error(path)
    assert str(path) in msg and "no data rows" in msg


def test_json_empty_list_and_zero_row_parquet(tmp_path):
    empty_json = tmp_path / "train.json"
    empty_json.write_text("[]")
    empty_parquet = tmp_path / "train.parquet"
    schema = pa.schema([("text", pa.string()), ("label", pa.string())])
    pq.write_table(schema.empty_table(), empty_parquet)
    for path in (empty_json, empty_parquet):
        msg = data_error(path)
        assert str(path) in msg and "no data rows" in msg


# -- empty text rows ------------------------------------------------------------------------

# line 1 header, line 2 row 0, lines 3-4 row 1 (a quoted two-line field), line 5 row 2 (empty),
# line 6 row 3, line 7 row 4 (blank text)
CSV_WITH_EMPTY = (
    "text,label\n"
    "the movie was good,positive\n"
    '"the food\nwas awful",negative\n'
    ",positive\n"
    "the show was dull,negative\n"
    '"   ",positive\n'
)


def test_empty_text_error_names_line_after_multiline_field(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(CSV_WITH_EMPTY)
    msg = data_error(path)
    assert str(path) in msg
    assert "line 5" in msg
    assert "'text'" in msg and "data.text_column" in msg
    assert "data.on_empty=skip" in msg


def test_blank_text_error_in_tsv_names_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text('text\tlabel\n"two\nlines"\tpositive\ngood\tpositive\n  \tnegative\n')
    msg = data_error(path)
    assert str(path) in msg and "line 5" in msg and "'text'" in msg


def test_empty_text_error_in_jsonl_counts_blank_lines(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "good", "label": "a"}\n\n{"text": "bad", "label": "b"}\n{"text": " ", "label": "a"}\n')
    msg = data_error(path)
    assert str(path) in msg and "line 4" in msg and "'text'" in msg


def test_empty_pair_text_names_pair_column(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,hypothesis,label\ngood,fine,a\nbad,,b\n")
    msg = data_error(path, text_pair_column="hypothesis")
    assert "line 3" in msg and "'hypothesis'" in msg and "data.text_pair_column" in msg


def test_empty_text_skip_drops_rows_and_counts_them(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(CSV_WITH_EMPTY)
    ds, skipped = load(path, on_empty="skip")
    assert skipped == 2
    assert ds["text"] == ["the movie was good", "the food\nwas awful", "the show was dull"]
    assert ds["_row"] == [0, 1, 3]  # original rows, so later errors still find the right line


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_na_like_words_are_text_not_missing(tmp_path, suffix):
    rows = [{"text": "NA", "label": "positive"}, {"text": "None", "label": "NA"}, {"text": "null", "label": "n/a"}]
    path = write_format(tmp_path / f"train{suffix}", rows)
    ds, skipped = load(path, on_empty="skip")
    assert skipped == 0
    assert ds["text"] == ["NA", "None", "null"]
    assert ds["label"] == ["positive", "NA", "n/a"]


def rows_with_empty_text(n: int, seed: int) -> list[dict]:
    rows = sentiment_rows(n, seed=seed)
    rows[3]["text"] = ""
    rows[7]["text"] = "   "
    return rows


def test_train_with_on_empty_skip(make_config, tmp_path):
    train = write_csv(tmp_path / "train.csv", rows_with_empty_text(40, seed=3))
    run = gradtune.train(make_config(data__train=str(train), data__on_empty="skip", train__epochs=1))
    assert run.steps == 5  # 38 rows left, batch 8
    assert (run.run_dir / "model" / "gradtune.json").is_file()


def test_train_without_skip_stops_at_the_empty_row(make_config, tmp_path):
    train = write_csv(tmp_path / "train.csv", rows_with_empty_text(40, seed=3))
    with pytest.raises(GradtuneError) as info:
        gradtune.train(make_config(data__train=str(train), train__epochs=1))
    assert str(train) in str(info.value) and "line 5" in str(info.value)


# -- unknown validation labels ----------------------------------------------------------------


def test_unseen_validation_label_names_file_line_column_and_value(make_config, tmp_path):
    dev = tmp_path / "dev.csv"
    # line 1 header, line 2, lines 3-4 (two-line text), line 5 the bad label
    dev.write_text(
        "text,label\nthe movie was good,positive\n\"the food\nwas awful\",negative\nthe app was fun,neutral\n"
    )
    with pytest.raises(GradtuneError) as info:
        gradtune.train(make_config(data__validation=str(dev), train__epochs=1))
    msg = str(info.value)
    assert str(dev) in msg
    assert "line 5" in msg
    assert "'label'" in msg
    assert "'neutral'" in msg
    assert "negative" in msg and "positive" in msg  # the known labels


def test_unseen_validation_label_line_survives_skipped_rows(make_config, tmp_path):
    dev = tmp_path / "dev.csv"
    dev.write_text("text,label\nthe movie was good,positive\n,negative\nthe app was fun,neutral\n")
    with pytest.raises(GradtuneError) as info:
        gradtune.train(make_config(data__validation=str(dev), data__on_empty="skip", train__epochs=1))
    assert str(dev) in str(info.value) and "line 4" in str(info.value) and "'neutral'" in str(info.value)


# -- encoding and file types --------------------------------------------------------------------


def test_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"text,label\nthe movie was good,positive\nthe caf\xff was bad,negative\n")
    msg = data_error(path)
    assert str(path) in msg and "line 3" in msg and "UTF-8" in msg


def test_unsupported_extension_lists_supported(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("text,label\ngood,positive\n")
    msg = data_error(path)
    assert str(path) in msg and ".txt" in msg
    for suffix in (".csv", ".tsv", ".jsonl", ".json", ".parquet"):
        assert suffix in msg


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    msg = data_error(path)
    assert str(path) in msg and "not found" in msg


# -- labels ---------------------------------------------------------------------------------


def test_string_labels_are_sorted_names(tmp_path):
    path = write_csv(tmp_path / "t.csv", [{"text": "a", "label": x} for x in ["pos", "neg", "neu", "pos"]])
    ds, _ = load(path)
    assert label_names(ds["label"]) == ["neg", "neu", "pos"]


def test_integer_labels_are_numeric_names(tmp_path):
    path = write_csv(tmp_path / "t.csv", [{"text": "a", "label": x} for x in [2, 0, 10, 1, 0]])
    ds, _ = load(path)
    assert label_names(ds["label"]) == ["0", "1", "2", "10"]  # numeric order, not "10" < "2"
    label2id = {name: i for i, name in enumerate(label_names(ds["label"]))}
    assert [classification.encode_label(v, label2id) for v in ds["label"]] == [2, 0, 3, 1, 0]


def test_trained_run_keeps_label_names(make_config):
    run = gradtune.train(make_config(train__epochs=1))
    model = run.run_dir / "model"
    assert json.loads((model / "label_map.json").read_text()) == {"0": "negative", "1": "positive"}
    assert json.loads((model / "gradtune.json").read_text())["labels"] == ["negative", "positive"]
    results = gradtune.load(run.run_dir).predict(["the movie was great", "the food was awful"])
    assert len(results) == 2
    for r in results:
        assert r["label"] in ("negative", "positive")
        assert set(r["probabilities"]) == {"negative", "positive"}


def test_trained_run_with_integer_labels_predicts_their_names(make_config, tmp_path):
    def numbered(rows: list[dict]) -> list[dict]:
        return [{"text": r["text"], "label": int(r["label"] == "positive")} for r in rows]

    train = write_csv(tmp_path / "train.csv", numbered(sentiment_rows(40, seed=6)))
    dev = write_csv(tmp_path / "dev.csv", numbered(sentiment_rows(10, seed=7)))
    run = gradtune.train(make_config(data__train=str(train), data__validation=str(dev), train__epochs=1))
    assert json.loads((run.run_dir / "model" / "label_map.json").read_text()) == {"0": "0", "1": "1"}
    results = gradtune.load(run.run_dir).predict(["the movie was great"])
    assert results[0]["label"] in ("0", "1") and set(results[0]["probabilities"]) == {"0", "1"}


def test_missing_training_label_names_line(make_config, tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\nthe movie was good,positive\nthe food was bad,negative\nthe app was fun,\n")
    with pytest.raises(GradtuneError) as info:
        gradtune.train(make_config(data__train=str(train), train__epochs=1))
    msg = str(info.value)
    assert str(train) in msg and "line 4" in msg and "'label'" in msg and "missing" in msg


def test_label_column_named_labels(make_config, tmp_path):
    def renamed(rows: list[dict]) -> list[dict]:
        return [{"text": r["text"], "labels": r["label"]} for r in rows]

    train = write_csv(tmp_path / "train.csv", renamed(sentiment_rows(40, seed=4)))
    dev = write_csv(tmp_path / "dev.csv", renamed(sentiment_rows(10, seed=5)))
    run = gradtune.train(make_config(
        data__train=str(train), data__validation=str(dev), data__label_column="labels", train__epochs=1,
    ))
    assert json.loads((run.run_dir / "model" / "gradtune.json").read_text())["labels"] == ["negative", "positive"]
    assert "accuracy" in run.metrics


# -- validation_split -----------------------------------------------------------------------


def split_rows(make_config, tiny_bert, seed: int) -> tuple[list[int], list[int]]:
    cfg = as_config(make_config(data__validation=None, data__validation_split=0.25, train__seed=seed))
    splits = read_data(cfg, task)
    assert splits.meta["labels"] == ["negative", "positive"]
    return sorted(splits.train["_row"]), sorted(splits.validation["_row"])


def test_validation_split_is_seeded_and_sized(make_config, tiny_bert):
    train_rows, val_rows = split_rows(make_config, tiny_bert, seed=0)
    assert len(train_rows) == 120 and len(val_rows) == 40  # 160 rows, 0.25 held out
    assert set(train_rows) | set(val_rows) == set(range(160))
    assert not set(train_rows) & set(val_rows)
    assert split_rows(make_config, tiny_bert, seed=0) == (train_rows, val_rows)
    assert split_rows(make_config, tiny_bert, seed=1)[1] != val_rows


# -- batching -------------------------------------------------------------------------------


def epoch_batches(sampler: LengthGroupedBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return [list(b) for b in sampler]


def test_length_grouped_sampler_covers_every_index_once():
    rng = random.Random(0)
    lengths = [rng.randint(3, 60) for _ in range(1003)]
    sampler = LengthGroupedBatchSampler(lengths, batch_size=8, seed=7)
    for epoch in range(3):
        batches = epoch_batches(sampler, epoch)
        assert len(batches) == len(sampler) == 126
        assert sorted(i for b in batches for i in b) == list(range(1003))
        assert all(len(b) <= 8 for b in batches)


def test_length_grouped_sampler_is_deterministic_per_seed_and_epoch():
    rng = random.Random(0)
    lengths = [rng.randint(3, 60) for _ in range(500)]
    a = LengthGroupedBatchSampler(lengths, batch_size=8, seed=7)
    b = LengthGroupedBatchSampler(lengths, batch_size=8, seed=7)
    assert epoch_batches(a, 0) != epoch_batches(a, 1)  # reshuffled each epoch
    assert epoch_batches(a, 1) == epoch_batches(b, 1)  # a resumed run sees the same batches
    assert epoch_batches(a, 0) == epoch_batches(b, 0)


def test_length_grouped_sampler_without_shuffle_covers_every_index():
    lengths = [5, 50, 7, 30, 1, 9, 12]
    batches = list(LengthGroupedBatchSampler(lengths, batch_size=3, seed=0, shuffle=False))
    assert sorted(i for b in batches for i in b) == list(range(7))


@pytest.mark.parametrize("shuffle", [False, True])
def test_make_loader_pads_each_batch_to_its_own_longest(tiny_bert, tmp_path, shuffle):
    rng = random.Random(0)
    rows = [{"text": "good", "label": "positive"} for _ in range(24)]
    rows += [{"text": " ".join(rng.choice(["very", "good", "the", "movie"]) for _ in range(60)), "label": "negative"}
             for _ in range(8)]
    rng.shuffle(rows)
    path = write_csv(tmp_path / "mixed.csv", rows)
    tokenizer = load_tokenizer(str(tiny_bert))
    ds, _ = load(path)
    ds = task.encode(ds, path, tokenizer, {"text_column": "text", "text_pair_column": None, "max_length": 32,
                                           "label_column": "label", "labels": ["negative", "positive"]})
    loader = make_loader(ds, tokenizer, batch_size=8, seed=0, shuffle=shuffle)
    widths = []
    for batch in loader:
        width = batch["input_ids"].shape[1]
        assert int(batch["attention_mask"].sum(dim=1).max()) == width  # no column of pure padding
        widths.append(width)
    assert len(widths) == 4
    assert max(widths) == 32  # the long texts are truncated to max_length
    assert min(widths) < 32  # a batch of short texts is not padded to max_length
    assert min(widths) == 3  # [CLS] good [SEP]


def test_read_table_reports_unreadable_json(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "good", "label": "a"}\n{"text": "bad", "label"\n')
    with pytest.raises(GradtuneError) as info:
        read_table(path)
    assert str(path) in str(info.value) and "jsonl" in str(info.value)


# -- files that cannot be read name the line -----------------------------------------------------


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": \n{"text": "c", "label": "y"}\n',
     r"line 2, column 24 is not valid JSON: Expecting value"),
    ("bad.json", '[{"text": "a", "label": "x"},\n {"text": "b" "label": "y"}]', r"line 2, column 15 is not valid JSON"),
    ("noheader.csv", "\na,b\n", r"line 1, the header, names no columns"),
    ("scalar.json", '"just a string"', r"holds a list of records"),
    ("extra.csv", "text,label\na,b\nc,d,e\n", r"line 3 has 3 fields but the header has 2 \(text, label\)"),
    ("quote.csv", 'text,label\n"a,b\nc,d\n', r"a quote opened on line \d+ or before is never closed"),
])
def test_an_unreadable_file_names_the_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    assert re.search(message, data_error(path)), data_error(path)


def test_a_column_name_with_a_stray_space_is_pointed_out(tmp_path):
    path = write_csv(tmp_path / "t.csv", [{"text ": "good", "label": "positive"}])
    assert "no column 'text' (set by data.text_column) (did you mean 'text '?)" in data_error(path)


def test_a_folder_is_not_a_data_file(tmp_path):
    write_csv(tmp_path / "data" / "train.csv", ROWS)
    msg = data_error(tmp_path / "data")
    assert "is a folder, not a data file" in msg and "train.csv" in msg


def test_a_missing_relative_path_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    msg = data_error(Path("data/train.csv"))
    assert "data file not found: data/train.csv" in msg and str(tmp_path / "data" / "train.csv") in msg


def test_a_text_column_of_numbers_is_warned(tmp_path, caplog):
    path = tmp_path / "numbers.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": i, "label": "a" if i % 2 else "b"} for i in range(6)]), path)
    with caplog.at_level("WARNING", logger="gradtune"):
        load(path)
    assert "column 'text' (data.text_column) holds numbers (int64)" in caplog.text


def test_max_train_and_validation_rows_take_a_seeded_sample(make_config):
    cfg = as_config(make_config(data__max_train_rows=50, data__max_validation_rows=10))
    first, again = read_data(cfg, task), read_data(cfg, task)
    assert len(first.train) == 50 and len(first.validation) == 10
    assert first.train["_row"] == again.train["_row"] == sorted(first.train["_row"])  # the same rows, in file order
    other = read_data(as_config(make_config(data__max_train_rows=50, train__seed=1)), task)
    assert other.train["_row"] != first.train["_row"]
