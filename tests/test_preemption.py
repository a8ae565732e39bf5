"""Pre-emption: a run killed for real inside a task resumes at its last mid-task checkpoint
(train.checkpoint_every) and ends with the accuracies of an uninterrupted run; and either execution
path continues a run the other one started, from the newest checkpoint of either kind."""
import json
import os
import signal

import pytest

from suite.run.layout import checkpoint_name
from suite.schema import RESULTS
from tests.conftest import TINY, sets, start_cli
from tests.runs import Pause, events, registered_checkpoints, wait_for

pytestmark = pytest.mark.slow  # Ray clusters and real runs: tens of seconds each (CI runs them)

RUN = "tiny"
# MixUp and the releases' augmentation policy draw from every global generator, which a mid-task
# resume must restore; a checkpoint after the first epoch of each task (of 3, finetuning included)
EPOCHS, EVERY_N = 2, 1
RESUMABLE = [*TINY, f"train.epochs={EPOCHS}", "train.mixup=0.8"]
EVERY = sets(f"train.checkpoint_every={EVERY_N}")


def cli(base, *extra, env=None):
    return start_cli(*sets(*RESUMABLE), "--name", RUN, "--output-basedir", base, *extra, env=env)


def finish(proc, timeout=600) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out + err
    return out


def killed_at(pause: Pause, proc, run_dir, registered: str | None = None) -> None:
    """SIGKILL the run's whole process group (an embedded Ray's processes too) once it is halted at
    the pause's point, and Train's controller has registered the checkpoint `registered`, if given
    (what a resume through Ray starts from)."""
    pause.wait(proc)
    if registered:
        wait_for(lambda: registered in registered_checkpoints(run_dir), f"checkpoint {registered} registered", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def outcome(run_dir, after: dict | None = None):
    """The accuracy matrix and every epoch's loss (those logged after the record `after`, if given):
    losses, unlike accuracies on a few test images, tell any difference in training apart."""
    log = events(run_dir)
    if after is not None:
        log = log[log.index(after):]
    losses = {(e["task"], e["phase"], e["epoch"]): e["loss"] for e in log if e["event"] == "epoch"}
    return json.loads((run_dir / RESULTS).read_text())["acc_matrix"], losses


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted in-process run without mid-task checkpoints."""
    base = tmp_path_factory.mktemp("reference")
    finish(cli(base, "--in-process"))
    return outcome(base / RUN)


def same_as(reference, run_dir, after=None) -> bool:
    acc, losses = outcome(run_dir, after)
    return acc == reference[0] and losses == {key: reference[1][key] for key in losses}


@pytest.mark.parametrize("path", [["--in-process"], []], ids=["in-process", "ray"])
def test_killed_mid_task_resumes_at_its_checkpoint_with_identical_results(tmp_path, reference, path):
    run_dir = tmp_path / RUN
    pause = Pause(tmp_path / "pause", "checkpoint:2")
    through_ray = "--in-process" not in path
    killed_at(pause, cli(tmp_path, *path, *EVERY, env=pause.env), run_dir,
              registered=checkpoint_name(1, "train", EVERY_N) if through_ray else None)
    last = [e for e in events(run_dir) if e["event"] in ("task", "checkpoint")][-1]
    assert last["event"] == "checkpoint" and last["task"] == 2, last  # killed inside task 2
    assert json.loads((run_dir / RESULTS).read_text())["status"] == "running"
    again = cli(tmp_path, *path, *EVERY)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 2 and "--resume" in err  # the name is not reused silently

    out = finish(cli(tmp_path, *path, *EVERY, "--resume"))
    resume = [e for e in events(run_dir) if e["event"] == "resume"]
    assert len(resume) == 1 and resume[0]["next_task"] == 2 and resume[0]["phase"] == "train"
    assert resume[0]["epochs_done"] >= EVERY_N and f"{resume[0]['epochs_done']} train epoch(s) done" in out
    log = events(run_dir)
    after = [e for e in log[log.index(resume[0]):] if e["event"] == "epoch"]
    assert (after[0]["task"], after[0]["phase"], after[0]["epoch"]) == (2, "train", resume[0]["epochs_done"] + 1)
    assert same_as(reference, run_dir, after=resume[0])


@pytest.mark.parametrize("ray_first", [True, False], ids=["ray-then-in-process", "in-process-then-ray"])
def test_either_path_continues_the_other(tmp_path, reference, ray_head, ray_first):
    """A run started on one path and resumed on the other takes up at its newest checkpoint (the
    first path's), never from task 1, and ends as an uninterrupted run. Its Ray side on a cluster."""
    on_ray, in_process = ["--address", ray_head.address], ["--in-process"]
    first, then = (on_ray, in_process) if ray_first else (in_process, on_ray)
    run_dir = tmp_path / RUN
    pause = Pause(tmp_path / "pause", "task:1")
    killed_at(pause, cli(tmp_path, *first, env=pause.env), run_dir)
    done_before = json.loads((run_dir / RESULTS).read_text())["tasks_done"]
    out = finish(cli(tmp_path, *then, "--resume"))
    assert f"resumed after task {done_before}" in out
    trained = [e["task"] for e in events(run_dir) if e["event"] == "epoch"]
    assert trained.count(1) == EPOCHS  # task 1 was not trained again
    assert same_as(reference, run_dir)
