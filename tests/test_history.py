"""A run's history (log.jsonl, train.log) in process; the Ray path is checked in test_ray_train.py."""
import json

import pytest

from suite.config import load
from suite.run.history import LOG, TRAIN_LOG
from suite.run.local import run_in_process
from suite.run.plan import plan_run
from suite.run.recorder import RunRecorder
from tests.conftest import TINY

pytestmark = pytest.mark.usefixtures("one_thread")


def records(run_dir):
    return [json.loads(line) for line in (run_dir / LOG).read_text().splitlines()]


def test_every_epoch_and_task_is_logged(tmp_path, capsys):
    cfg = load([], TINY + ["train.epochs=2"])
    doc = run_in_process(plan_run(cfg, tmp_path / "run"), resume=False)
    logged = records(tmp_path / "run")
    epochs = [r for r in logged if r["event"] == "epoch"]
    assert [(r["task"], r["phase"], r["epoch"]) for r in epochs] == [
        (1, "train", 1), (1, "train", 2),
        (2, "train", 1), (2, "train", 2), (2, "finetune", 1),
        (3, "train", 1), (3, "train", 2), (3, "finetune", 1)]
    assert all(r["loss"] > 0 and r["lr"] > 0 and r["seconds"] > 0 and r["time"] > 0 for r in epochs)
    tasks = [r for r in logged if r["event"] == "task"]
    assert [r["acc"] for r in tasks] == doc["acc"] and [r["acc_row"] for r in tasks] == doc["acc_matrix"]
    assert [r["memory"] for r in tasks] == doc["memory_size"] and [r["task"] for r in tasks] == [1, 2, 3]
    printed = capsys.readouterr().out
    kept = (tmp_path / "run" / TRAIN_LOG).read_text()
    assert "task 3/3 accuracy: top-1" in kept and kept.splitlines() == [l for l in printed.splitlines() if l]


class _Stop(Exception):
    pass


def test_a_resumed_run_says_where_it_took_up(tmp_path, monkeypatch):
    cfg = load([], TINY)
    real_write = RunRecorder.write

    def stop_after_task_1(recorder, learner, status, error=None):  # the last step of a task's end
        real_write(recorder, learner, status, error)
        raise _Stop

    monkeypatch.setattr(RunRecorder, "write", stop_after_task_1)
    with pytest.raises(_Stop):
        run_in_process(plan_run(cfg, tmp_path / "run"), resume=False)
    monkeypatch.setattr(RunRecorder, "write", real_write)
    run_in_process(plan_run(cfg, tmp_path / "run"), resume=True)
    events = [(r["event"], r.get("task", r.get("next_task"))) for r in records(tmp_path / "run")]
    assert events == [("epoch", 1), ("task", 1), ("resume", 2), ("epoch", 2), ("epoch", 2), ("task", 2),
                      ("epoch", 3), ("epoch", 3), ("task", 3)]


def test_epochs_shorter_than_trains_poll_interval_stay_out_of_ray_reports():
    from suite.run.ray_train import worth_reporting

    assert worth_reporting(0.6) and worth_reporting(30.0)
    assert not worth_reporting(0.1)
