"""Sections of the language models (causal_lm, instruct): perplexity (per text, and the texts the
model finds hardest) and sample generations beside what the data says. A language model's forward
pass is the slow part, so at most MAX_TEXTS texts are scored."""

from __future__ import annotations

import math
from typing import Any

import torch

from gradtune.data.batching import logits_of
from gradtune.errors import GradtuneError
from gradtune.report.html import Facts, Section, Table, Text
from gradtune.report.sections import WORST, Context, clip

MAX_TEXTS = 64
BATCH = 8


@torch.no_grad()
def losses(ctx: Context, features: Any) -> list[tuple[float, int]]:
    """(summed loss, target tokens) of each encoded text, as evaluation counts them."""
    task, model, meta = ctx.task, ctx.predictor.model, ctx.meta
    collate = task.collator(ctx.predictor.tokenizer, model)
    out = []
    for start in range(0, len(features), BATCH):
        items = [{k: features[i][k] for k in ("input_ids", "attention_mask", "labels")}
                 for i in range(start, min(len(features), start + BATCH))]
        batch = {k: v.to(ctx.predictor.device) for k, v in collate(items).items()}
        logits = logits_of(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])).float()
        for j in range(len(items)):
            labels = batch["labels"][j: j + 1]
            out.append((float(task.loss_sum(logits[j: j + 1], labels, meta)), task.loss_units(labels)))
    return out


def perplexity_section(ctx: Context, features: Any, texts: dict[int, str], what: str) -> Section:
    """Perplexity over the scored texts, and the hardest ones (`texts`: file row -> what to show)."""
    scored = losses(ctx, features)
    total, units = sum(s for s, _ in scored), sum(u for _, u in scored)
    per_text = [(math.exp(s / u), row) for (s, u), row in zip(scored, features["_row"]) if u]
    logged = (ctx.meta.get("metrics") or {}).get("perplexity")
    facts = [("perplexity", math.exp(total / units) if units else None), (what, len(scored)), ("tokens scored", units)]
    if logged is not None:
        facts.append((f"perplexity, all validation rows (step {ctx.meta.get('step')})", logged))
    hardest = sorted(per_text, reverse=True)[:WORST]
    return Section("perplexity", "Perplexity", [
        Text(f"The kept model on {ctx.where(len(scored))}. Perplexity is exp(mean loss per predicted token): the "
             "number of tokens the model is, on average, choosing between."),
        Facts(facts),
        Table([what[:-1], "perplexity"], [[clip(texts[row]), p] for p, row in hardest],
              f"the {len(hardest)} {what} the model finds hardest", wide=(0,))])


def generations_section(prompts: list[Any], shown: list[str], references: list[str], write: Any,
                        first: str) -> Section:
    """What the model writes (greedy) for each prompt, beside what the data says comes next."""
    if not prompts:
        return Section("generations", "Sample generations", [Text("No validation text to prompt with.")])
    try:
        written = write(prompts)
    except GradtuneError as e:
        return Section("generations", "Sample generations", [Text(f"Generation failed: {e}", note=True)])
    rows = [[clip(s), clip(w) or "(nothing)", clip(r)] for s, w, r in zip(shown, written, references)]
    return Section("generations", "Sample generations", [
        Text("Greedy decoding (the likeliest token at each step), so the same model always writes the same."),
        Table([first, "the model wrote", "the data says"], rows, wide=(0, 1, 2))])


def _max_new(tokenizer: Any, references: list[str]) -> int:
    longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references), default=16)
    return min(96, longest + 8)


def causal_lm(ctx: Context) -> list[Section]:
    rows = ctx.validation.rows.select(range(min(MAX_TEXTS, len(ctx.validation.rows))))
    column = ctx.meta["text_column"]
    texts = dict(zip(rows["_row"], (str(t) for t in rows[column])))
    features = ctx.task.encode(rows, ctx.validation.path, ctx.predictor.tokenizer, ctx.meta, labelled=False)
    prompts, references = [], []
    for text in list(texts.values())[: ctx.samples]:
        words = text.split()
        pieces, joiner = (words, " ") if len(words) > 1 else (list(text), "")  # a text without spaces (Chinese)
        cut = min(max(1, len(pieces) // 2), 48)
        prompts.append(joiner.join(pieces[:cut]))
        references.append(joiner.join(pieces[cut:]))
    tokenizer = ctx.predictor.tokenizer
    write = lambda ps: ctx.predictor.generate(ps, greedy=True, max_new_tokens=_max_new(tokenizer, references))
    return [perplexity_section(ctx, features, texts, "texts"),
            generations_section(prompts, prompts, references, write, "prompt (the text's first half)")]


def instruct(ctx: Context) -> list[Section]:
    rows = ctx.validation.rows.select(range(min(MAX_TEXTS, len(ctx.validation.rows))))
    chats = ctx.task.conversations(rows, ctx.validation.path, ctx.meta)
    answers = {row: chat[-1]["content"] for row, chat in zip(rows["_row"], chats)}
    features = ctx.task.encode(rows, ctx.validation.path, ctx.predictor.tokenizer, ctx.meta)
    asked = [chat for chat in chats if chat[-1]["role"] == "assistant"][: ctx.samples]
    prompts, references = [chat[:-1] for chat in asked], [chat[-1]["content"] for chat in asked]
    shown = [chat[-2]["content"] if len(chat) > 1 else "" for chat in asked]  # the last user turn
    tokenizer = ctx.predictor.tokenizer
    write = lambda ps: ctx.predictor.generate(ps, greedy=True, max_new_tokens=_max_new(tokenizer, references))
    return [perplexity_section(ctx, features, answers, "answers"),
            generations_section(prompts, shown, references, write, "the question (last user turn)")]
