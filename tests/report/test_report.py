"""gradtune report: training writes RUN/report/index.html, a self-contained page (no external URL)
holding every section of its task; `report: false` skips it; a run whose validation file is gone
still reports; several runs overlay on one page; a report that fails never loses the run."""

from __future__ import annotations

import base64
import csv
import re
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import gradtune
from conftest import build_tiny_bert, write_csv
from gradtune.commands.app import app
from gradtune.report import write_report
from gradtune.rundir import RunDir
from test_matrix import TASK_MODELS, case

pytestmark = pytest.mark.report  # these tests write reports (conftest skips them elsewhere)

COMMON = ["summary", "training", "validation", "gradients", "data", "machine", "config"]
EXPECTED = {  # task -> the ids of its own sections
    "classification": ["confusion", "per-class", "mistakes"],
    "regression": ["predicted-vs-true", "mistakes"],
    "causal_lm": ["perplexity", "generations"],
    "qa": ["answers", "mistakes"],
    "seq2seq": ["translations", "mistakes"],
    "multilabel": ["per-label", "mistakes"],
    "tabular": ["predicted-vs-true", "mistakes"],
    "instruct": ["perplexity", "generations"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, request):
    """A tiny trained run per task, trained on first use (the report written by training itself);
    `name` gives another run of the same task, with `settings` (top-level keys, train.* keys)."""
    root = tmp_path_factory.mktemp("report-runs")
    (root / "bert").mkdir()
    bert = build_tiny_bert(root / "bert", initializer_range=0.2)
    trained: dict[str, Path] = {}

    def run(task: str, name: str = "", report: bool = True, **train) -> Path:
        name = name or task
        if name not in trained:
            model = TASK_MODELS[task] or {"name": str(bert)}
            if isinstance(model, str):  # a conftest fixture's model folder
                model = {"name": str(request.getfixturevalue(model))}
            c = case(task, model)
            folder = root / name
            data = {**c.config.get("data", {}), "train": str(write_csv(folder / "train.csv", c.rows[:72])),
                    "validation": str(write_csv(folder / "dev.csv", c.rows[72:]))}
            cfg = {**c.config, "data": data, "train": {**c.config["train"], "eval_every": 9, **train},
                   "output_dir": str(folder / "run"), "report": report}
            trained[name] = gradtune.train(cfg).run_dir
        return trained[name]

    return run


def page_of(run: Path) -> str:
    return (RunDir(run).report / "index.html").read_text(encoding="utf-8")


def section_ids(html: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', html)


def assert_self_contained(html: str, folder: Path) -> None:
    """Every src/href is inline data or an anchor; no external URL, stylesheet import or script; the
    inlined images are the PNGs beside the page."""
    links = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', html)
    assert links and all(link.startswith(("data:image/png;base64,", "#")) for link in links), links
    assert "http://" not in html and "https://" not in html
    assert "@import" not in html and "<script" not in html.lower() and "url(" not in html
    assert '<meta name="viewport"' in html
    inlined = [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]
    beside = sorted(folder.glob("*.png"))
    assert inlined and len(inlined) == len(beside) and {p.read_bytes() for p in beside} == set(inlined)


@pytest.mark.parametrize("task", list(EXPECTED))
def test_training_writes_a_self_contained_report_with_every_section_of_its_task(runs, task):
    run = runs(task)
    html = page_of(run)
    assert_self_contained(html, RunDir(run).report)
    ids = section_ids(html)
    assert "predictions" not in ids, "no predictions: " + html[html.find('id="predictions"'):][:400]
    for section in COMMON + EXPECTED[task]:
        assert section in ids, (section, ids)


def test_the_classification_report_counts_what_the_model_predicts(runs):
    run = runs("classification")
    dev = Path(yaml.safe_load(RunDir(run).config.read_text())["data"]["validation"])
    with dev.open(newline="") as f:
        rows = list(csv.DictReader(f))
    predicted = gradtune.load(run).predict([r["text"] for r in rows])
    mistakes = sum(p["label"] != r["label"] for p, r in zip(predicted, rows))
    html = page_of(run)
    assert f"<span>rows</span><b>{len(rows)}</b>" in html
    assert f"<span>mistakes</span><b>{mistakes}</b>" in html
    assert html.count("<tr>") > 2 + 2  # the per-class table: a header, two labels, the average


def test_report_false_skips_it(runs):
    run = runs("classification", name="no-report", report=False, max_steps=4)
    assert (RunDir(run).model / "gradtune.json").is_file()
    assert not RunDir(run).report.exists()


def test_a_run_whose_validation_file_is_gone_still_reports(runs, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(runs("classification"), moved)
    cfg = yaml.safe_load(RunDir(moved).config.read_text())
    cfg["data"]["validation"] = str(tmp_path / "gone" / "dev.csv")
    RunDir(moved).config.write_text(yaml.safe_dump(cfg))
    page = write_report(moved)
    html = page.read_text(encoding="utf-8")
    assert page == RunDir(moved).report / "index.html"
    assert "is not there any more" in html and str(tmp_path / "gone" / "dev.csv") in html
    ids = section_ids(html)
    assert "predictions" in ids and "confusion" not in ids
    assert set(COMMON) <= set(ids)
    assert_self_contained(html, RunDir(moved).report)


def test_several_runs_overlay_on_one_page(runs, tmp_path):
    first, second = runs("classification"), runs("classification", name="no-report", report=False, max_steps=4)
    result = CliRunner().invoke(app, ["report", str(first), str(second), "--output", str(tmp_path / "both")])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "both" / "index.html").read_text(encoding="utf-8")
    assert_self_contained(html, tmp_path / "both")
    assert {"best", "loss", "validation", "config"} <= set(section_ids(html))
    # both runs (both folders are called run: so by their paths), and the config keys they differ in
    assert f"<td>{first}</td>" in html and f"<td>{second}</td>" in html
    assert "train.max_steps" in html


def test_the_command_reports_one_run_and_refuses_unclear_requests(runs, tmp_path):
    run = runs("regression")
    result = CliRunner().invoke(app, ["report", str(run), "--output", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert "predicted-vs-true" in section_ids((tmp_path / "again" / "index.html").read_text(encoding="utf-8"))
    result = CliRunner().invoke(app, ["report", str(run), str(run)])
    assert result.exit_code == 2 and "--output" in result.output
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a gradtune run" in result.output
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["report", str(run), "--output", str(tmp_path / "busy")])
    assert result.exit_code == 2 and "holds other files" in result.output
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_a_failing_report_warns_and_keeps_the_run(make_config, monkeypatch, caplog):
    caplog.set_level("WARNING", logger="gradtune")
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("gradtune.report.build.run_page", broken)
    run = gradtune.train(make_config(train__max_steps=2))
    assert run.report is None and not RunDir(run.run_dir).report.exists()
    assert gradtune.load(run.run_dir).predict(["the movie was great"])[0]["label"] in ("positive", "negative")
    assert "The report could not be written (RuntimeError: disk full)" in caplog.text


def test_every_task_is_in_the_report_matrix():
    from gradtune.report.sections import TASK_SECTIONS
    from gradtune.tasks import TASKS

    assert set(EXPECTED) == set(TASKS), "add the new task's section ids to EXPECTED (and its sections to TASK_SECTIONS)"
    assert set(TASK_SECTIONS) <= set(TASKS)
