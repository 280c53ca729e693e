"""Sections of sequence to sequence (task seq2seq): BLEU and chrF of the written targets, sample
translations beside their references, and the sentences with the lowest chrF. Writing is slower
than classifying, so at most MAX_ROWS rows are translated."""

from __future__ import annotations

from gradtune.report.html import Facts, Section, Table, Text
from gradtune.report.sections import WORST, Context, clip
from gradtune.tasks.seq2seq import scores

MAX_ROWS = 200


def seq2seq(ctx: Context) -> list[Section]:
    import sacrebleu

    meta = ctx.meta
    rows = ctx.validation.rows.select(range(min(MAX_ROWS, len(ctx.validation.rows))))
    inputs = ctx.inputs(rows)
    written = [r["generated_text"] for r in ctx.predictor.predict_rows(inputs)]
    references = [str(t) for t in rows[meta["target_column"]]]
    sources = inputs[meta["source_column"]]
    chrf = [sacrebleu.sentence_chrf(w, [r]).score for w, r in zip(written, references)]
    n = len(written)
    corpus = scores(written, references, meta.get("bleu_tokenize", "13a")) if n else {"bleu": None, "chrf": None}
    decoding = f"beam search, {meta['num_beams']} beams" if meta.get("num_beams", 1) > 1 else "greedy"

    def line(i: int) -> list:
        return [clip(sources[i]), clip(references[i]), clip(written[i]) or "(empty)", chrf[i]]

    headers = ["source", "reference", "model's translation", "chrF"]
    blocks = [Text(f"The kept model writes the targets of {ctx.where(n)} ({decoding}, at most "
                   f"{meta.get('max_new_tokens', 64)} new tokens)."),
              Facts([("BLEU", corpus["bleu"]), ("chrF", corpus["chrf"]), ("sentences", n)]),
              Table(headers, [line(i) for i in range(min(ctx.samples, n))], "sample translations",
                    wide=(0, 1, 2))]
    order = sorted(range(n), key=lambda i: chrf[i])[:WORST]
    worst = [Table(headers, [line(i) for i in order], "the lowest sentence chrF", wide=(0, 1, 2))] if order else \
        [Text("No sentences to show.")]
    return [Section("translations", "Translations", blocks), Section("mistakes", "Worst translations", worst)]
