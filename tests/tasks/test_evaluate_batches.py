"""Evaluation runs on length-sorted batches in inference mode: the metrics must be those of the
rows in file order, one at a time, and the report's worst mistakes must still name the right rows."""

from __future__ import annotations

import csv
import html
import re
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

import gradtune
from gradtune.config import as_config
from gradtune.rundir import RunDir
from gradtune.training.prepare import prepare


def in_file_order(loader: DataLoader, batch_size: int) -> DataLoader:
    """The same features in file order, `batch_size` at a time (1: no padding at all)."""
    return DataLoader(loader.dataset, batch_size=batch_size, shuffle=False, collate_fn=loader.collate_fn)


def test_length_sorted_batches_give_the_metrics_of_the_rows_in_file_order(make_config, wide_init_bert, tmp_path):
    job = prepare(as_config(make_config(model__name=str(wide_init_bert), train__eval_batch_size=16)), tmp_path)
    accelerator = Accelerator(cpu=True)
    lengths = job.val_loader.batch_sampler.lengths
    batches = list(job.val_loader.batch_sampler)
    assert [lengths[i] for b in batches for i in b] == sorted(lengths, reverse=True)  # longest first
    sorted_result = job.task.evaluate(job.model, job.val_loader, accelerator, job.metadata)
    for batch_size in (1, 7):
        plain = job.task.evaluate(job.model, in_file_order(job.val_loader, batch_size), accelerator, job.metadata)
        assert plain.keys() == sorted_result.keys()
        for name, value in plain.items():
            if name == "loss":
                assert sorted_result[name] == pytest.approx(value, rel=1e-5)
            else:  # counts of right and wrong answers: exactly the same
                assert sorted_result[name] == value, name
    # not a constant predictor, so the comparison says something
    assert 0 < sum(sorted_result["confusion_matrix"][0]) < 40 or sorted_result["confusion_matrix"][1][1] > 0


def test_the_model_trains_after_an_evaluation_in_inference_mode(make_config, tmp_path):
    job = prepare(as_config(make_config()), tmp_path)
    job.task.evaluate(job.model, job.val_loader, Accelerator(cpu=True), job.metadata)
    batch = next(iter(job.train_loader))
    logits = job.model(**{k: v for k, v in batch.items() if k not in ("labels", "_row")}).logits
    job.loss_fn(logits, batch["labels"]).backward()
    assert all(p.grad is not None for p in job.model.parameters() if p.requires_grad)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


@pytest.mark.report
def test_the_reports_worst_mistakes_name_the_right_rows(make_config, sentiment_files, tmp_path):
    run = gradtune.train(make_config(train__max_steps=4, train__lr=1e-3, train__eval_batch_size=16,
                                     report=True)).run_dir
    with Path(sentiment_files["validation"]).open(newline="") as f:
        gold = {row["text"]: row["label"] for row in csv.DictReader(f)}
    page = (RunDir(run).report / "index.html").read_text()
    section = page[page.index('id="mistakes"'):]
    section = section[:section.index("</table>")]
    rows = [[html.unescape(re.sub("<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
            for tr in re.findall(r"<tr>(.*?)</tr>", section) if "<td" in tr]
    assert rows, "the model made no mistakes: nothing to check"
    predictor = gradtune.load(run)
    predicted = predictor.predict([text for text, *_ in rows])
    for (text, true, label, confidence, _), prediction in zip(rows, predicted):
        assert gold[text] == true != label
        assert prediction["label"] == label
        assert float(confidence) == pytest.approx(prediction["probabilities"][label], abs=1e-3)
