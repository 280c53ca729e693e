"""Folders that never lose work: one live process per run folder, model/ and checkpoints replaced so
that a complete folder always exists and is on disk before it counts, outputs checked up front."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gradtune
from gradtune import folders
from gradtune.errors import GradtuneError
from gradtune.folders import LOCK_FILE, FolderLock, atomic_dir, recover, writable_file, writable_folder
from gradtune.rundir import RunDir

HOLD = textwrap.dedent("""
    import sys, time
    from gradtune.folders import FolderLock
    with FolderLock(sys.argv[1], "output_dir"):
        print("locked", flush=True)
        time.sleep(60)
""")


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process that owns `folder` until killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_run_on_a_live_run_folder_is_refused_naming_the_owner(make_config, tmp_path):
    cfg = make_config(train__epochs=1)
    owner = hold_lock(Path(cfg["output_dir"]))
    try:
        with pytest.raises(GradtuneError) as info:
            gradtune.train(cfg)
        message = str(info.value)
        assert "in use by another gradtune process" in message and f"pid {owner.pid}" in message
        assert not RunDir(cfg["output_dir"]).holds_a_run()  # nothing of the refused run was written
    finally:
        owner.kill()
        owner.wait()
    # the owner was killed without releasing the folder: the next run takes it over, with a note
    run = gradtune.train(cfg)
    assert run.steps == 20
    assert (Path(cfg["output_dir"]) / LOCK_FILE).read_text() == ""  # released in good order


def test_the_taken_over_lock_is_reported(tmp_path, capsys):
    owner = hold_lock(tmp_path / "run")
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    with FolderLock(tmp_path / "run", "output_dir", print):
        pass
    out = capsys.readouterr().out
    assert f"pid {owner.pid}" in out and "taking it over" in out


def test_a_lock_is_exclusive_within_one_process_too(tmp_path):
    with FolderLock(tmp_path, "output_dir"):
        with pytest.raises(GradtuneError, match="in use by another gradtune process"):
            with FolderLock(tmp_path, "output_dir"):
                pass
    with FolderLock(tmp_path, "output_dir"):  # released on exit
        pass


def test_compare_and_lr_find_folders_are_owned_too(make_config, tmp_path):
    from gradtune.experiments.compare import compare
    from gradtune.experiments.lr_find import find_lr

    cfg = make_config(train__epochs=1)
    owner = hold_lock(tmp_path / "cmp")
    try:
        with pytest.raises(GradtuneError, match="in use"):
            compare(cfg, ["train.lr=1e-3,3e-3"], output=tmp_path / "cmp")
    finally:
        owner.kill()
        owner.wait()
    owner = hold_lock(tmp_path / "lr")
    try:
        with pytest.raises(GradtuneError, match="in use"):
            find_lr(cfg, steps=10, output=tmp_path / "lr")
    finally:
        owner.kill()
        owner.wait()


def test_a_folder_with_only_a_log_is_a_run(make_config, tmp_path):
    # a run that failed before its first checkpoint still has its config and log: not to be erased
    cfg = make_config(train__epochs=1)
    run = RunDir(cfg["output_dir"])
    run.path.mkdir(parents=True)
    run.metrics.write_text('{"kind": "setup", "step": 0}\n')
    with pytest.raises(GradtuneError, match="already holds a run"):
        gradtune.train(cfg)
    with pytest.raises(GradtuneError, match="no checkpoint to resume from.*--overwrite"):
        gradtune.train(cfg, resume=True)
    assert gradtune.train(cfg, overwrite=True).steps == 20


def test_python_errors_name_python_arguments(make_config):
    cfg = make_config(train__epochs=1)
    gradtune.train(cfg)
    with pytest.raises(GradtuneError, match=r"--resume \(Python: resume=True\).*--overwrite \(overwrite=True\)"):
        gradtune.train(cfg)


# -- model/ and checkpoints: a complete folder always exists ------------------------------------------


def write(text: str):
    return lambda folder: (folder / "weights").write_text(text)


def test_a_crash_between_the_renames_never_leaves_the_folder_missing(tmp_path, monkeypatch):
    final = atomic_dir(tmp_path / "model", write("old"))
    real_replace, calls = os.replace, []

    def crash_on_the_last_rename(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if Path(src).name == "model.new" and Path(dst).name == "model":
            raise KeyboardInterrupt  # the power cut
        real_replace(src, dst)

    monkeypatch.setattr(folders.os, "replace", crash_on_the_last_rename)
    with pytest.raises(KeyboardInterrupt):
        atomic_dir(final, write("new"))
    monkeypatch.setattr(folders.os, "replace", real_replace)
    assert not final.exists() and (tmp_path / "model.new").is_dir() and (tmp_path / "model.old").is_dir()
    recover(final)  # the next start: the complete new folder goes into place
    assert (final / "weights").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_crash_while_writing_keeps_the_old_folder(tmp_path):
    final = atomic_dir(tmp_path / "model", write("old"))

    def half(folder: Path) -> None:
        (folder / "weights").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_dir(final, half)
    recover(final)
    assert (final / "weights").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_readers_find_the_model_while_it_is_being_replaced(make_config, tmp_path):
    run = gradtune.train(make_config(train__epochs=1))
    model = RunDir(run.run_dir).model
    os.replace(model, model.with_name("model.old"))  # as a crash between the two renames leaves it
    assert gradtune.load(run.run_dir).predict(["the movie was great"])[0]["label"] in ("positive", "negative")
    gradtune.train(make_config(train__epochs=2), resume=True)  # the owner recovers it at the start
    assert model.is_dir() and not model.with_name("model.old").exists()


def test_files_are_on_disk_before_a_checkpoint_is_renamed_into_place(make_config, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(folders.os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                           real_fsync(fd))[1])
    monkeypatch.setattr(folders.os, "replace", lambda a, b: (events.append(("rename", str(a))), real_replace(a, b))[1])
    run = gradtune.train(make_config(train__epochs=1, train__keep_checkpoints=1))
    checkpoint = RunDir(run.run_dir).list_checkpoints()[-1]
    renamed = events.index(("rename", f"{checkpoint}.tmp"))
    flushed = {path for kind, path in events[:renamed] if kind == "fsync"}
    assert {str(checkpoint) + ".tmp/" + name for name in ("model.safetensors", "trainer_state.pt", "progress.json")} \
        <= flushed


# -- output locations are checked before any work ----------------------------------------------------


def test_an_output_dir_that_is_a_file_fails_before_loading_anything(make_config, tmp_path, monkeypatch):
    import gradtune.training.prepare

    monkeypatch.setattr(gradtune.training.prepare, "prepare", lambda *a: pytest.fail("loaded before checking"))
    target = tmp_path / "taken"
    target.write_text("not a folder")
    with pytest.raises(GradtuneError, match=r"output_dir .*taken is a file, not a folder"):
        gradtune.train(make_config(output_dir=str(target)))
    with pytest.raises(GradtuneError, match=r"output_dir .*taken/run: .*taken is a file, not a folder"):
        gradtune.train(make_config(output_dir=str(target / "run")))


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs a folder no one can write: /proc")
def test_an_unwritable_output_is_named():
    with pytest.raises(GradtuneError, match="output_dir /proc/gradtune-run: cannot write there"):
        writable_folder("/proc/gradtune-run", "output_dir")
    with pytest.raises(GradtuneError, match="the folder of --output /proc/x: cannot write there"):
        writable_file("/proc/x/metrics.json", "--output")


def test_eval_and_predict_outputs_are_checked_before_the_work(make_config, sentiment_files, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gradtune.commands import app

    run = gradtune.train(make_config(train__epochs=1)).run_dir
    monkeypatch.setattr("gradtune.api.Predictor", lambda *a, **k: pytest.fail("worked before checking"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    for command in (["eval", str(run), "--data", str(sentiment_files["validation"]), "--output"],
                    ["predict", str(run), "--input", str(sentiment_files["validation"]), "--output"]):
        result = CliRunner().invoke(app, [*command, str(blocker / "out.json")])
        assert result.exit_code == 2 and "is a file, not a folder" in result.output, result.output
        result = CliRunner().invoke(app, [*command, str(tmp_path)])
        assert result.exit_code == 2 and "is a folder" in result.output, result.output


def test_every_run_file_written_is_json_or_safetensors(make_config):
    run = gradtune.train(make_config(train__epochs=1))
    for line in RunDir(run.run_dir).metrics.read_text().splitlines():
        json.loads(line)
    assert not [p for p in Path(run.run_dir).rglob("*") if p.name.endswith((".tmp", ".new", ".old"))]
