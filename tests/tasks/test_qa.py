"""task: qa. SQuAD v1.1 exact match and F1 on hand-made cases with known values; windows over long
contexts (an answer that crosses a window edge, a window without the answer); the best span across
windows; errors that name the line; train, reload to identical answers, evaluate, export to ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

import gradtune
from conftest import build_tiny_bert
from gradtune.data.squad import best_over_answers, exact_match, f1, normalize
from gradtune.errors import GradtuneError
from gradtune.export import export
from gradtune.rundir import RunDir
from gradtune.tasks import get_task
from gradtune.tasks.qa import best_spans
from gradtune.tracking.metrics_log import read_metrics

CONTEXT = ("The Broncos defeated the Panthers in Santa Clara. The game was played in February. "
           "Peyton Manning was the quarterback of the Broncos, and Cam Newton played for the Panthers.")


def squad(rows: list[tuple[str, str, str]]) -> dict:
    """SQuAD v1.1 JSON of (context, question, answer) rows, one article."""
    paragraphs = [{"context": c, "qas": [{"id": str(i), "question": q,
                                          "answers": [{"text": a, "answer_start": c.index(a)}]}]}
                  for i, (c, q, a) in enumerate(rows)]
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}


QUESTIONS = [("Who defeated the Panthers?", "The Broncos"), ("Where was the game?", "Santa Clara"),
             ("When was the game played?", "February"), ("Who was the quarterback of the Broncos?", "Peyton Manning"),
             ("Who played for the Panthers?", "Cam Newton")]


# -- the official SQuAD v1.1 scores -------------------------------------------------------------------


@pytest.mark.parametrize("prediction, truth, em, score", [
    ("The Broncos", "Broncos", 1.0, 1.0),  # articles and case do not count
    ("Denver Broncos!", "the Broncos", 0.0, 2 / 3),  # precision 1/2, recall 1 -> F1 2/3
    ("in Santa Clara, California", "Santa Clara", 0.0, 2 * (2 / 4) * 1 / (2 / 4 + 1)),
    ("Peyton", "Cam Newton", 0.0, 0.0),
    ("  a   SUPER bowl.", "super bowl", 1.0, 1.0),
])
def test_squad_scores_match_the_official_definition(prediction, truth, em, score):
    assert exact_match(prediction, truth) == em
    assert f1(prediction, truth) == pytest.approx(score)


def test_the_best_gold_answer_counts():
    assert best_over_answers(f1, "Santa Clara", ["Levi's Stadium", "Santa Clara, California"]) == pytest.approx(0.8)
    assert normalize("The  Cat's, hat") == "cats hat"


# -- windows ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tiny_bert) -> AutoTokenizer:
    return AutoTokenizer.from_pretrained(tiny_bert)


META = {"question_column": "question", "context_column": "context", "answers_column": "answers", "max_length": 24,
        "doc_stride": 6, "max_answer_length": 10}


def windows(tokenizer, question: str, context: str, answer: str) -> dict[str, list]:
    batch = {"question": [question], "context": [context], "_row": [0], "_answer_texts": [[answer]],
             "_answer_starts": [[context.index(answer)]]}
    return get_task("qa").encode_batch(batch, tokenizer, META)


def test_a_long_context_gives_overlapping_windows_and_each_labels_the_answer_or_not_here(tokenizer):
    out = windows(tokenizer, "who played for the panthers?", CONTEXT, "Cam Newton")
    assert len(out["input_ids"]) > 2 and set(out["_row"]) == {0}
    answered = [f for f, label in enumerate(out["labels"]) if label[:2] != [0, 0]]
    assert answered and len(answered) < len(out["labels"])  # some windows hold it, others say "not here"
    assert [label[2:] for label in out["labels"]] == out["_context"]  # the loss knows where the context is
    for f in answered:
        i, j = out["labels"][f][:2]
        offsets = out["offset_mapping"][f]
        assert CONTEXT[offsets[i][0] : offsets[j][1]] == "Cam Newton"
    # windows overlap by doc_stride tokens: consecutive windows share context characters
    spans = [(o[out["_context"][f][0]][0], o[out["_context"][f][1]][1]) for f, o in enumerate(out["offset_mapping"])]
    assert all(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))


def test_an_answer_that_crosses_a_window_edge_is_learned_only_where_it_is_whole(tokenizer):
    answer = "Peyton Manning was the quarterback"  # the third window starts inside it
    out = windows(tokenizer, "who was the quarterback?", CONTEXT, answer)
    spans = [(o[out["_context"][f][0]][0], o[out["_context"][f][1]][1]) for f, o in enumerate(out["offset_mapping"])]
    start = CONTEXT.index(answer)
    end = start + len(answer)
    for (first, last), label in zip(spans, out["labels"]):
        whole = first <= start and end <= last
        assert (label[:2] != [0, 0]) == whole  # a window holding part of it says "not here"
    crossing = [s for s in spans if s[0] < end and s[1] > start and not (s[0] <= start and end <= s[1])]
    assert crossing, "the test context should put the answer across an edge"


def test_the_loss_is_the_same_whatever_the_padding():
    task = get_task("qa")
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 8, 2), torch.tensor([[3, 4, 2, 5], [0, 0, 2, 6]])
    padded = torch.cat([logits, torch.randn(2, 5, 2) * 10], dim=1)  # the same windows, padded further
    assert task.loss_sum(padded, labels, META) == pytest.approx(float(task.loss_sum(logits, labels, META)))


def test_the_best_span_across_windows_wins():
    logits = torch.full((3, 6, 2), -5.0)
    logits[0, 2, 0], logits[0, 3, 1] = 2.0, 2.0  # window 0: the span (2, 3), fairly sure
    logits[1, 1, 0], logits[1, 1, 1] = 9.0, 9.0  # window 1: the span (1, 1), sure
    logits[2, 4, 0], logits[2, 2, 1] = 20.0, 20.0  # window 2: its surest start (4) is after its surest end (2)
    spans = best_spans(logits, torch.tensor([[1, 4]] * 3), longest=3)
    assert [(i, j) for i, j, _ in spans][:2] == [(2, 3), (1, 1)]
    assert spans[2][:2] != (4, 2) and spans[2][2] < 1e-3  # never an end before its start: a poor span
    assert spans[1][2] > spans[0][2]
    features = {"_context": [[1, 4]] * 3, "_row": [0, 0, 0], "context": ["abcdefghij"] * 3,
                "offset_mapping": [[[-1, -1], [0, 1], [2, 3], [4, 5], [6, 7], [-1, -1]]] * 3}
    [answer] = get_task("qa").decode(logits, features, META)
    assert (answer["answer"], answer["start"], answer["end"]) == ("a", 0, 1)  # window 1's token 1


# -- training, errors ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("qa")
    rows = [(CONTEXT, q, a) for q, a in QUESTIONS] * 8
    (folder / "train.json").write_text(json.dumps(squad(rows)))
    flat = [{"question": q, "context": CONTEXT, "answers": {"text": [a], "answer_start": [CONTEXT.index(a)]}}
            for q, a in QUESTIONS]
    (folder / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in flat))
    return {"train": folder / "train.json", "dev": folder / "dev.jsonl"}


def qa_config(bert, files, output: Path, **train) -> dict:
    return {"task": "qa", "model": {"name": str(bert)},
            "data": {"train": str(files["train"]), "validation": str(files["dev"]), "max_length": 48,
                     "doc_stride": 16},
            "train": {"epochs": 15, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.0, "progress": False, "seed": 0,
                      **train},
            "output_dir": str(output)}


@pytest.fixture(scope="module")
def qa_bert(tmp_path_factory) -> Path:
    """A tiny BERT that knows the words of the questions and the context (else they all read [UNK])."""
    text = CONTEXT + " " + " ".join(q for q, _ in QUESTIONS)
    words = {w.strip(".,?").lower() for w in text.split()}
    return build_tiny_bert(tmp_path_factory.mktemp("qa-bert"), initializer_range=0.2, extra_words=tuple(words))


@pytest.fixture(scope="module")
def qa_run(qa_bert, files, tmp_path_factory):
    return gradtune.train(qa_config(qa_bert, files, tmp_path_factory.mktemp("qa-run") / "run"))


def test_a_model_learns_to_point_at_the_answers(qa_run, files):
    evals = [r for r in read_metrics(RunDir(qa_run.run_dir).metrics) if r["kind"] == "eval"]
    assert evals[-1]["loss"] < 0.5 * evals[0]["loss"] and qa_run.best_metric >= 0.8
    scored = gradtune.evaluate(qa_run.run_dir, files["dev"])
    assert scored["examples"] == len(QUESTIONS) and scored["f1"] == pytest.approx(qa_run.best_metric)


def test_predictions_reload_identically_and_name_their_span(qa_run):
    model = gradtune.load(qa_run.run_dir)
    asked = [{"question": q, "context": CONTEXT} for q, _ in QUESTIONS]
    first, again = model.predict(asked), gradtune.load(qa_run.run_dir).predict(asked)
    assert first == again
    for result in first:
        assert CONTEXT[result["start"] : result["end"]] == result["answer"] and 0 < result["score"] <= 1
    [alone] = model.predict(["Where was the game?"], pairs=[CONTEXT])  # another batch, other padding
    assert alone["answer"] == first[1]["answer"] and alone["score"] == pytest.approx(first[1]["score"], rel=1e-5)


def test_the_command_line_answers_a_question_about_a_context(qa_run):
    from typer.testing import CliRunner

    from gradtune.commands import app

    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(qa_run.run_dir), "--text", "Where was the game?", "--pair", CONTEXT])
    line = json.loads(result.output.strip().splitlines()[-1])
    assert line["question"] == "Where was the game?" and line["context"] == CONTEXT
    [expected] = gradtune.load(qa_run.run_dir).predict(["Where was the game?"], pairs=[CONTEXT])
    assert line["answer"] == expected["answer"]
    result = runner.invoke(app, ["predict", str(qa_run.run_dir), "--text", "Where was the game?"])
    assert result.exit_code == 2 and "--pair CONTEXT" in result.output


def test_the_onnx_export_gives_the_same_answers(qa_run):
    result = export(qa_run.run_dir, Path(qa_run.run_dir) / "onnx", format="onnx")
    assert result.max_abs_diff < 1e-4
    asked = [{"question": q, "context": CONTEXT} for q, _ in QUESTIONS]
    onnx = gradtune.load(qa_run.run_dir, backend="onnx").predict(asked)
    assert [r["answer"] for r in onnx] == [r["answer"] for r in gradtune.load(qa_run.run_dir).predict(asked)]


@pytest.mark.parametrize("answers, message", [
    ({"text": ["Denver"], "answer_start": [3]}, r"answer 'Denver' does not start at character 3 of the context "
                                               r"\(the context does not hold it\)"),
    ({"text": ["Santa Clara"], "answer_start": [3]},
     r"answer 'Santa Clara' does not start at character 3 of the context \(it is at 37\)"),
    ({"text": [], "answer_start": []}, "the question has no answer"),
])
def test_an_answer_that_does_not_fit_its_context_names_the_line(tiny_bert, files, tmp_path, answers, message):
    rows = [{"question": "q?", "context": CONTEXT, "answers": {"text": ["Broncos"], "answer_start": [4]}}] * 2
    rows.append({"question": "q?", "context": CONTEXT, "answers": answers})
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = qa_config(tiny_bert, {"train": path, "dev": files["dev"]}, tmp_path / "run")
    with pytest.raises(GradtuneError, match=f"train.jsonl, line 3, column 'answers': {message}"):
        gradtune.train(cfg)
