"""Extractive question answering (SQuAD v1.1): the answer is a span of the context. A pretrained
encoder gets a start and an end score per token (AutoModelForQuestionAnswering).

A context longer than data.max_length is cut into overlapping windows (data.doc_stride tokens of
overlap), so one row becomes several features: each knows its row, where the context's tokens are
and each token's characters. A window that does not hold the whole answer learns to point at the
first token ([CLS]): "not here". The answer of a row is the best valid span over all its windows
(start <= end, both in the context, at most data.max_answer_length tokens), scored by
p(start) x p(end); exact match and F1 are SQuAD v1.1's, as fractions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import torch
import torch.nn.functional as F

from gradtune.data.batching import logits_of, model_inputs
from gradtune.data.files import row_location
from gradtune.data.squad import best_over_answers, exact_match, f1, parse_answers
from gradtune.errors import GradtuneError
from gradtune.tasks.base import Task


def best_spans(logits: torch.Tensor, context: torch.Tensor, longest: int) -> list[tuple[int, int, float]]:
    """For each feature, the best (start token, end token, p(start) x p(end)) with both in the
    context's tokens (context[i] = [first, last]) and at most `longest` tokens. The probabilities
    are over the context's tokens only, so the question and any padding never change a score."""
    out = []
    for scores, (first, last) in zip(logits.float(), context.tolist()):
        t = scores.shape[0]
        outside = (torch.arange(t) < first) | (torch.arange(t) > last)
        scores = scores.masked_fill(outside[:, None], float("-inf"))
        start = F.log_softmax(scores[:, 0], dim=0)
        end = F.log_softmax(scores[:, 1], dim=0)
        pair = start[:, None] + end[None, :]  # [t, t]: span (i, j)
        i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
        valid = (j >= i) & (j - i < longest) & (i >= first) & (j <= last)
        pair = pair.masked_fill(~valid, float("-inf"))
        flat = int(pair.argmax())
        out.append((flat // t, flat % t, float(pair.view(-1)[flat].exp())))
    return out


class QuestionAnswering(Task):
    name = "qa"
    losses = ("cross_entropy",)
    metrics = ("f1", "exact_match", "loss")
    default_metric = "f1"
    shown_metrics = ("exact_match", "f1", "loss")
    auto_model = "AutoModelForQuestionAnswering"
    request_fields = ("questions", "contexts")
    hf_task = "question-answering"
    cache_features = False  # encoding sets the tokenizer's padding side, which the collator then uses
    owns = ("data.question_column", "data.context_column", "data.answers_column", "data.doc_stride",
            "data.max_answer_length")
    text_keys = ("data.question_column", "data.context_column")

    def check_config(self, cfg: Any) -> None:
        d, fields = cfg.data, type(cfg.data).model_fields
        given = [f"data.{k}" for k in ("text_column", "text_pair_column", "label_column")
                 if getattr(d, k) != fields[k].default]
        if given:
            raise ValueError(f"{', '.join(given)}: task 'qa' reads data.question_column, data.context_column and "
                             "data.answers_column")
        if d.doc_stride >= d.max_length // 2:
            raise ValueError(f"data.doc_stride={d.doc_stride} must be below half of data.max_length={d.max_length}: "
                             "the question and the overlap must leave room for new context in each window")

    def input_settings(self, cfg: Any) -> dict[str, Any]:
        d = cfg.data
        return {"question_column": d.question_column, "context_column": d.context_column,
                "answers_column": d.answers_column, "max_length": d.max_length, "doc_stride": d.doc_stride,
                "max_answer_length": d.max_answer_length, "text_column": None, "text_pair_column": None,
                "label_column": None}

    def columns(self, meta: dict[str, Any], labelled: bool) -> dict[str, str | None]:
        columns = {"data.question_column": meta["question_column"], "data.context_column": meta["context_column"]}
        if labelled:
            columns["data.answers_column"] = meta["answers_column"]
        return columns

    def fit(self, train_ds: Any, cfg: Any, held_out: Any = None) -> dict[str, Any]:
        return {}

    # --- rows -> windows
    def encode(self, ds: datasets.Dataset, path: str | Path, tokenizer: Any, meta: dict[str, Any],
               labelled: bool = True) -> datasets.Dataset:
        """Checked answers (errors name the file, line and column), then windows."""
        if not getattr(tokenizer, "is_fast", False):
            raise GradtuneError(f"task 'qa' needs a fast tokenizer (it maps tokens to characters); "
                                f"{type(tokenizer).__name__} is not")
        if labelled:
            column, context = meta["answers_column"], meta["context_column"]
            answers = []
            for i, (value, text) in enumerate(zip(ds[column], ds[context])):
                try:
                    answers.append(parse_answers(value, str(text)))
                except ValueError as err:
                    raise GradtuneError(f"{path}, {row_location(path, ds['_row'][i])}, column {column!r}: {err}") \
                        from None
            ds = ds.add_column("_answer_texts", [[t for t, _ in a] for a in answers])
            ds = ds.add_column("_answer_starts", [[s for _, s in a] for a in answers])
        features = ds.map(lambda batch: self.encode_batch(batch, tokenizer, meta), batched=True,
                          remove_columns=ds.column_names, desc="tokenizing")
        return features.add_column("_feature", list(range(len(features))))

    def encode_batch(self, batch: dict[str, list], tokenizer: Any, meta: dict[str, Any]) -> dict[str, list]:
        """Rows -> windows of (question, part of the context); a row gives one or several."""
        tokenizer.padding_side = "right"  # the question comes first, the context is cut on the right
        questions = [str(q).lstrip() for q in batch[meta["question_column"]]]
        contexts = [str(c) for c in batch[meta["context_column"]]]
        enc = tokenizer(questions, contexts, truncation="only_second", max_length=meta["max_length"],
                        stride=meta["doc_stride"], return_overflowing_tokens=True, return_offsets_mapping=True)
        rows = list(range(len(questions))) if "_row" not in batch else batch["_row"]
        out: dict[str, list] = {k: [] for k in (*enc.keys(), "length", "_context", "_row", "context", "answers")}
        for f, sample in enumerate(enc["overflow_to_sample_mapping"]):
            sequence = enc.sequence_ids(f)
            first = sequence.index(1)
            last = len(sequence) - 1 - sequence[::-1].index(1)
            offsets = [list(o) if s == 1 else [-1, -1] for o, s in zip(enc["offset_mapping"][f], sequence)]
            for key in enc.keys():
                out[key].append(offsets if key == "offset_mapping" else enc[key][f])
            out["length"].append(len(enc["input_ids"][f]))
            out["_context"].append([first, last])
            out["_row"].append(rows[sample])
            out["context"].append(contexts[sample])
            texts = batch["_answer_texts"][sample] if "_answer_texts" in batch else []
            out["answers"].append(texts)
            if texts:  # the first gold answer: in this window, or "not here" (the first token)
                text, start = texts[0], batch["_answer_starts"][sample][0]
                begin, finish = start, start + len(text)
                label = [0, 0]
                if offsets[first][0] <= begin and offsets[last][1] >= finish:
                    i = next(k for k in range(first, last + 1) if offsets[k][1] > begin)
                    j = next(k for k in range(last, first - 1, -1) if offsets[k][0] < finish)
                    label = [i, j]
                # the context's range rides along: the loss is over the context's tokens and the first
                # one, whatever the question's length or the batch's padding
                out.setdefault("labels", []).append([*label, first, last])
        out.pop("overflow_to_sample_mapping", None)
        return out

    def collator(self, tokenizer: Any, model: Any = None) -> Any:
        """Pad the windows' tokens; the answer labels, row and context range are stacked."""
        from transformers import DataCollatorWithPadding

        pad = DataCollatorWithPadding(tokenizer)
        keep = ("labels", "_row", "_feature", "_context")

        def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
            tokens = [{k: v for k, v in f.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
                      for f in features]
            batch = dict(pad(tokens))
            for key in keep:
                if key in features[0]:
                    batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)
            return batch

        return collate

    # --- loss and evaluation
    def loss_sum(self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        """The mean of the start and end cross-entropies, summed over windows; each over the tokens an
        answer can be at (the context's, and the first, "not here"), so padding and the question
        never change it. labels: [start, end, first, last] per window."""
        positions = torch.arange(logits.shape[1], device=logits.device)[None, :]
        first, last = labels[:, 2:3], labels[:, 3:4]
        allowed = ((positions >= first) & (positions <= last)) | (positions == 0)
        scores = logits.float().masked_fill(~allowed[..., None], float("-inf"))
        return (F.cross_entropy(scores[..., 0], labels[:, 0], reduction="sum")
                + F.cross_entropy(scores[..., 1], labels[:, 1], reduction="sum")) / 2

    @torch.inference_mode()  # lighter than no_grad: no autograd version counting either
    def evaluate(self, model: torch.nn.Module, loader: Any, accelerator: Any, meta: dict[str, Any]) -> dict[str, Any]:
        """The best span per row over its windows, scored against the gold answers (SQuAD v1.1's
        exact match and F1); the loss per window. Only the best span of each row is kept."""
        was_training = model.training
        model.eval()
        windows = loader.dataset.with_format(None)  # offsets, context and gold answers of every window
        best: dict[int, tuple[float, str, list[str]]] = {}
        loss_total, count = 0.0, 0
        for batch in loader:
            logits = logits_of(model(**model_inputs(batch)))
            logits = accelerator.pad_across_processes(logits, dim=1, pad_index=float("-inf"))
            logits, labels, index, context = accelerator.gather_for_metrics(
                (logits, batch["labels"], batch["_feature"], batch["_context"]))
            loss_total += float(self.loss_sum(logits, labels, meta))
            count += len(labels)
            for (i, j, score), k in zip(best_spans(logits, context, meta["max_answer_length"]), index.tolist()):
                window = windows[k]
                offsets = window["offset_mapping"]
                text = window["context"][offsets[i][0] : offsets[j][1]]
                if window["_row"] not in best or score > best[window["_row"]][0]:
                    best[window["_row"]] = (score, text, window["answers"])
        model.train(was_training)
        n = max(len(best), 1)
        return {"exact_match": round(sum(best_over_answers(exact_match, t, g) for _, t, g in best.values()) / n, 6),
                "f1": round(sum(best_over_answers(f1, t, g) for _, t, g in best.values()) / n, 6),
                "loss": round(loss_total / max(count, 1), 6)}

    # --- prediction
    def prediction_rows(self, inputs: Any, pairs: list[str] | None, meta: dict[str, Any]) -> dict[str, list]:
        """{question, context} dicts (one or a list), or questions with pairs= their contexts."""
        q, c = meta["question_column"], meta["context_column"]
        if isinstance(inputs, dict):
            inputs = [inputs]
        if pairs is not None:
            inputs = [{q: question, c: context} for question, context in zip(inputs, pairs)]
        rows: dict[str, list] = {q: [], c: []}
        for i, item in enumerate(inputs):
            if not isinstance(item, dict) or q not in item or c not in item:
                raise GradtuneError(f"input {i}: give a question and its context, as {{{q!r}: ..., {c!r}: ...}} "
                                    "(or questions with pairs= their contexts)")
            rows[q].append(str(item[q]))
            rows[c].append(str(item[c]))
        return rows

    def file_rows(self, ds: datasets.Dataset, path: str | Path, meta: dict[str, Any]) -> dict[str, list]:
        return {c: [str(v) for v in ds[c]] for c in (meta["question_column"], meta["context_column"])}

    def shown_inputs(self, rows: dict[str, list], meta: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"question": q, "context": c} for q, c in zip(rows[meta["question_column"]],
                                                              rows[meta["context_column"]])]

    def decode(self, logits: torch.Tensor, features: dict[str, list], meta: dict[str, Any]) -> list[dict[str, Any]]:
        """The best span of each row over its windows: the answer text, its characters and a score."""
        context = torch.tensor(features["_context"])
        best: dict[int, dict[str, Any]] = {}
        for f, (i, j, score) in enumerate(best_spans(logits, context, meta["max_answer_length"])):
            row, offsets = features["_row"][f], features["offset_mapping"][f]
            start, end = offsets[i][0], offsets[j][1]
            if row not in best or score > best[row]["score"]:
                best[row] = {"answer": features["context"][f][start:end], "start": start, "end": end, "score": score}
        return [best[row] for row in sorted(best)]

    def csv_columns(self, result: dict[str, Any], meta: dict[str, Any]) -> dict[str, str]:
        return {"answer": result["answer"], "start": str(result["start"]), "end": str(result["end"]),
                "score": f"{result['score']:.6f}"}
