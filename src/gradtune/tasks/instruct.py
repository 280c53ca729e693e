"""Instruction tuning: a causal language model learns to answer, from conversations (a `messages`
list of {role, content}) or alpaca rows (instruction, optional input, output); see data/chat.py.

Everything else is causal_lm's: next-token cross-entropy, normalised by the target tokens of the
whole optimizer step, perplexity. What differs is which tokens are targets: only the assistant's
turns (the prompt's labels are -100), so the model learns to answer rather than to write questions.
A conversation longer than data.max_length is cut, skipped or refused (data.too_long), and counted.
`generate` formats the prompt with the same chat template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from gradtune.data.chat import IGNORE, ensure_template, from_alpaca, from_messages, tokenize_chat
from gradtune.data.files import row_location
from gradtune.errors import GradtuneError
from gradtune.tasks.causal_lm import CausalLM, ready_tokenizer
from gradtune.tracking.console import log


class Instruct(CausalLM):
    name = "instruct"
    default_strategy = "lora"  # a few million weights learn the answers; the pretrained model stays as it was
    owns = ("data.messages_column", "data.instruction_column", "data.input_column", "data.output_column",
            "data.too_long", "data.packing")
    text_keys = ()  # a conversation's own checks name the empty turn
    chat = True
    cache_features = False  # encoding gives the tokenizer its chat template and warns about cut conversations

    def check_config(self, cfg: Any) -> None:
        fields = type(cfg.data).model_fields
        given = [f"data.{k}" for k in ("text_column", "text_pair_column", "label_column")
                 if getattr(cfg.data, k) != fields[k].default]
        if given or cfg.model.classifier_dropout is not None:
            raise ValueError(f"{', '.join(given or ['model.classifier_dropout'])}: task 'instruct' reads conversations "
                             "(data.messages_column) or alpaca rows (data.instruction_column, data.input_column, "
                             "data.output_column); it has no text or label column and no classifier")

    def input_settings(self, cfg: Any) -> dict[str, Any]:
        d = cfg.data
        return {"messages_column": d.messages_column, "instruction_column": d.instruction_column,
                "input_column": d.input_column, "output_column": d.output_column, "max_length": d.max_length,
                "too_long": d.too_long, "text_column": None, "text_pair_column": None, "label_column": None}

    def columns(self, meta: dict[str, Any], labelled: bool) -> dict[str, str | None]:
        return {}  # a file holds conversations or alpaca rows: `conversations` checks which

    def conversations(self, ds: datasets.Dataset, path: str | Path, meta: dict[str, Any]) -> list[list[dict]]:
        """Every row as a checked conversation; an error names the file, line and column."""
        messages, instruction, extra, output = (meta[k] for k in ("messages_column", "instruction_column",
                                                                  "input_column", "output_column"))
        names = ds.column_names
        if messages in names:
            columns, convert = [messages], from_messages
        elif instruction in names and output in names:
            columns = [instruction, extra, output] if extra in names else [instruction, output]
            convert = (lambda i, x, o: from_alpaca(i, x, o)) if extra in names else (lambda i, o: from_alpaca(i, "", o))
        else:
            raise GradtuneError(
                f"{path}: no column {messages!r} (data.messages_column) holding conversations, nor the columns "
                f"{instruction!r} and {output!r} (data.instruction_column, data.output_column) of alpaca rows; the "
                f"file has columns: {', '.join(map(repr, [n for n in names if n != '_row']))}")
        chats = []
        for i, values in enumerate(zip(*(ds[c] for c in columns))):
            try:
                chats.append(convert(*values))
            except ValueError as err:
                column = columns[0] if len(columns) == 1 else "row"
                raise GradtuneError(f"{path}, {row_location(path, ds['_row'][i])}, column {column!r}: {err}") from None
        return chats

    def encode(self, ds: datasets.Dataset, path: str | Path, tokenizer: Any, meta: dict[str, Any],
               labelled: bool = True) -> datasets.Dataset:
        """Conversations -> token ids and labels (the assistant's tokens only), cut to max_length as
        data.too_long says; the cut and skipped ones are counted."""
        ready_tokenizer(ensure_template(tokenizer))
        limit, policy = meta["max_length"], meta.get("too_long", "truncate")
        features: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": [], "length": [], "_row": []}
        cut = skipped = 0
        for chat, row in zip(self.conversations(ds, path, meta), ds["_row"]):
            try:
                ids, labels = tokenize_chat(tokenizer, chat)
            except ValueError as err:
                raise GradtuneError(f"{path}, {row_location(path, row)}: {err}") from None
            if len(ids) > limit:
                if policy == "error":
                    raise GradtuneError(f"{path}, {row_location(path, row)}: the conversation is {len(ids)} tokens, "
                                        f"longer than data.max_length={limit}; shorten it, raise data.max_length, or "
                                        "set data.too_long to truncate or skip")
                ids, labels = ids[:limit], labels[:limit]
                if policy == "skip" or all(label == IGNORE for label in labels[1:]):  # no answer left to learn
                    skipped += 1
                    continue
                cut += 1
            for key, value in (("input_ids", ids), ("attention_mask", [1] * len(ids)), ("labels", labels),
                               ("length", len(ids)), ("_row", row)):
                features[key].append(value)
        if cut:
            log.warning(f"{path}: {cut} conversation(s) longer than data.max_length={limit} tokens were cut to fit "
                        "(data.too_long=truncate)")
        if skipped:
            log.warning(f"{path}: {skipped} conversation(s) longer than data.max_length={limit} tokens were left out "
                        f"(data.too_long={policy}{'; truncating left no answer' if policy == 'truncate' else ''})")
        if not features["input_ids"]:
            raise GradtuneError(f"{path}: no conversation fits in data.max_length={limit} tokens; raise it")
        return datasets.Dataset.from_dict(features)
