"""Helpers for tests that interrupt or watch runs: a rendezvous that halts a run at a named point
(suite/run/rendezvous.py, seen from the test), a run's log, a loss that turns NaN, a mid-task
resume, and the model's state after each phase of a task."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from suite.strategies.transformers import ReleaseRecipe
from suite.run import rendezvous


class Pause:
    """Halt a run at `point` ("task:N", "checkpoint:N"): pass `env` to the run, `wait` until it is
    there, then kill or signal it, or `release` it."""

    def __init__(self, directory: Path, point: str):
        self.dir, self.point = directory, point
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict:
        return {rendezvous.POINT: self.point, rendezvous.DIR: str(self.dir)}

    def wait(self, proc: subprocess.Popen, timeout: float = 300) -> int:
        """The pid of the process halted at the point (in a run through Ray, rank 0's worker), once
        one is; the test fails if `proc` ends first."""
        reached = self.dir / rendezvous.REACHED
        wait_for(reached.exists, f"the run to reach {self.point}", proc, timeout)
        return int(reached.read_text())

    def release(self) -> None:
        (self.dir / rendezvous.GO).touch()


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, timeout: float = 300, poll: float = 0.05):
    """`condition()`'s first true value; an exception counts as not yet (Ray's state API answers
    only once the dashboard is up). The test fails if `proc` ends first, with its output."""
    deadline, error = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as e:  # noqa: BLE001
            value, error = None, e
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}:\n{output_of(proc)[-5000:]}")
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last error: {error!r})")


def output_of(proc: subprocess.Popen) -> str:
    """What an ended process printed: its pipes, or the file its output went to (`proc.output`)."""
    if getattr(proc, "output", None) is not None:
        return Path(proc.output).read_text()
    return "".join(pipe.read() for pipe in (proc.stdout, proc.stderr) if pipe is not None)


def registered_checkpoints(run_dir: Path) -> list[str]:
    """The checkpoints Ray Train's controller has registered for the run in `run_dir` (what a
    restart, or a resume through Ray, starts from)."""
    for snapshot in run_dir.glob("ray/**/checkpoint_manager_snapshot.json"):
        try:
            doc = json.loads(snapshot.read_text())
        except (OSError, ValueError):  # being rewritten
            return []
        return [c["checkpoint_dir_name"] for c in doc.get("checkpoint_results", [])]
    return []


def events(run_dir: Path) -> list[dict]:
    """log.jsonl's records (a line being written is left out)."""
    path = run_dir / "log.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


def nan_from_task_2(monkeypatch) -> None:
    """Make the loss NaN in the main phase of task 2 on."""
    real_loss = ReleaseRecipe.loss

    def nan_loss(self, out, teacher_out, soft, phase):
        loss = real_loss(self, out, teacher_out, soft, phase)
        return loss * float("nan") if phase.distill and phase.num_old else loss

    monkeypatch.setattr(ReleaseRecipe, "loss", nan_loss)


def resumed_inside_a_task(config, due) -> tuple:
    """Run `config` (a Config) uninterrupted, run it again keeping its first mid-task checkpoint for which
    `due(learner)` holds (as saved: not the live tensors), and resume a fresh learner from it.

    Returns (reference learner, its epoch records, resumed learner, its epoch records)."""
    import copy

    from suite.learner.learner import Learner
    from suite.run.checkpoints import payload, restore
    from tests.conftest import data_of

    reference_epochs, resumed_epochs, saved = [], [], []
    reference = Learner(config, *data_of(config), log=lambda line: None, on_epoch_end=reference_epochs.append)
    reference.run()

    def keep(learner):
        if due(learner) and not saved:
            saved.append(copy.deepcopy(payload(learner, learner.cfg)))

    Learner(config, *data_of(config), log=lambda line: None, on_checkpoint=keep).run()
    assert saved, "no mid-task checkpoint was due"
    resumed = Learner(config, *data_of(config), log=lambda line: None, on_epoch_end=resumed_epochs.append)
    restore(resumed, config, saved[0], "memory")
    resumed.run()
    return reference, reference_epochs, resumed, resumed_epochs


def states_after_phases(learner, task: int, also=lambda: None) -> dict:
    """The model's state after each phase of task `task` (from 0), by phase name, kept as
    `learner.run()` goes (`also()` is called there too)."""
    import copy

    states, after_phase = {}, learner.strategy.after_phase

    def spy(model, at_task, phase):
        after_phase(model, at_task, phase)
        if at_task == task:
            states[phase] = copy.deepcopy(model.state_dict())
            also()

    learner.strategy.after_phase = spy
    return states
