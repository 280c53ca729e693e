"""Extractive question answering data: SQuAD v1.1 JSON (articles -> paragraphs -> questions) read
as one row per question, answers in both shapes SQuAD and the `datasets` hub use, and the official
SQuAD v1.1 scores (exact match and F1 after normalising case, punctuation, articles and spaces;
the best over the gold answers)."""

from __future__ import annotations

import collections
import json
import re
import string
from pathlib import Path
from typing import Any


def is_squad(data: Any) -> bool:
    """Whether parsed JSON is SQuAD's nested shape: {"data": [{"paragraphs": [...]}, ...]}."""
    return isinstance(data, dict) and isinstance(data.get("data"), list) and all(
        isinstance(a, dict) and "paragraphs" in a for a in data["data"])


def flatten(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per question: id, title, question, context and answers {text: [...], answer_start: [...]}."""
    rows = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph.get("qas", []):
                answers = qa.get("answers", [])
                rows.append({"id": str(qa.get("id", len(rows))), "title": article.get("title", ""),
                             "question": qa.get("question"), "context": paragraph.get("context"),
                             "answers": {"text": [a.get("text") for a in answers],
                                         "answer_start": [a.get("answer_start") for a in answers]}})
    return rows


def read_squad(path: Path) -> list[dict[str, Any]] | None:
    """The rows of a SQuAD JSON file, or None if the file is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return flatten(data) if is_squad(data) else None


def parse_answers(value: Any, context: str) -> list[tuple[str, int]]:
    """The gold answers of one row as (text, start character), checked against the context;
    ValueError (the caller names file, line and column) if they are missing or do not fit."""
    if isinstance(value, str):  # a CSV cell holding JSON
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("the answers are not {text: [...], answer_start: [...]} (nor JSON of it)") from None
    if isinstance(value, dict):
        texts, starts = value.get("text"), value.get("answer_start")
        texts = [texts] if isinstance(texts, str) else texts
        starts = [starts] if isinstance(starts, int) else starts
        pairs = list(zip(texts or [], starts or []))
    elif isinstance(value, list):
        pairs = [(a.get("text"), a.get("answer_start")) for a in value if isinstance(a, dict)]
    else:
        raise ValueError(f"the answers are {type(value).__name__}, not {{text: [...], answer_start: [...]}}")
    if not pairs:
        raise ValueError("the question has no answer; extractive QA (SQuAD v1.1) needs one in the context")
    out = []
    for text, start in pairs:
        if not isinstance(text, str) or not text.strip() or not isinstance(start, int) or isinstance(start, bool):
            raise ValueError(f"answer {text!r} at {start!r}: give the answer's text and its start (a character index)")
        if context[start : start + len(text)] != text:
            found = context.find(text)
            hint = f" (it is at {found})" if found >= 0 else " (the context does not hold it)"
            raise ValueError(f"answer {text!r} does not start at character {start} of the context{hint}")
        out.append((text, start))
    return out


def normalize(text: str) -> str:
    """SQuAD v1.1's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize(prediction) == normalize(truth))


def f1(prediction: str, truth: str) -> float:
    predicted, gold = normalize(prediction).split(), normalize(truth).split()
    common = collections.Counter(predicted) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def best_over_answers(score: Any, prediction: str, answers: list[str]) -> float:
    """A prediction's score against the closest gold answer."""
    return max(score(prediction, truth) for truth in answers)
