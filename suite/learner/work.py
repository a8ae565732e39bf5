"""A run's work, counted in trained images task by task: per epoch of each phase the images it trains
on, and after a task the images herding ranks and evaluation passes forward (FORWARD_ONLY each). The
learner's ETA counts it (suite/learner/progress.py); a sweep's dry run prices it in GPU-hours
(suite/sweep/cost.py)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from suite.config import Config
from suite.data.dataset import DataSet, indices_of_classes
from suite.data.scenario import Scenario
from suite.learner.memory import per_class_budget
from suite.methods import METHODS
from suite.strategies import Strategy
from suite.strategies.base import FINETUNE_MEMORY

FORWARD_ONLY = 1 / 3  # an image evaluated or ranked for herding costs about a third of one trained


@dataclass(frozen=True)
class TaskWork:
    """One task's work in trained images: per epoch of each phase (named as PHASES), and after its
    training (herding and evaluation, forward only)."""

    train: float
    finetune: float
    bias: float
    compress: float
    after: float


@dataclass(frozen=True)
class WorkPlan:
    cfg: Config
    strategy: Strategy
    scenario: Scenario
    trained_per_class: dict[int, int]  # each class's training images (a validation split's left out)
    evaluated: tuple[int, ...]  # after each task: the test and validation images of the classes seen
    copies: int  # memory selections kept: one, or with memory.per_worker one per worker

    def class_budget(self, task: int) -> tuple[int, int]:
        """After task `task`: the exemplars a class gets in one selection, and how many selections are kept."""
        return per_class_budget(self.cfg.memory, len(self.scenario.classes_up_to(task))), self.copies

    def memory_after(self, task: int) -> int:
        """The memory's size after task `task` (0 before the first), as its budget makes it."""
        if task < 0:
            return 0
        m, copies = self.class_budget(task)
        return m * copies * len(self.scenario.classes_up_to(task))

    def task(self, task: int) -> TaskWork:
        """Per main epoch the task's images with the memory kept so far; per finetuning epoch the
        memory (PODNet's: at the old classes' share); per bias epoch the held-out images; per
        compression epoch the main phase's; after it, the images herding ranks and those evaluated."""
        new = sum(self.trained_per_class[c] for c in self.scenario.tasks[task])
        rehearsal = METHODS[self.cfg.method].rehearsal
        seen = len(self.scenario.classes_up_to(task))
        finetuned = self.memory_after(task)
        if FINETUNE_MEMORY in self.strategy.steps(task):
            m, copies = self.class_budget(task - 1)
            finetuned = m * copies * seen
        trained = new + (self.memory_after(task - 1) if rehearsal else 0)  # repeats: the same count
        old = len(self.scenario.classes_up_to(task - 1)) if task else 0
        return TaskWork(train=trained, finetune=finetuned if rehearsal and task > 0 else 0,
                        bias=self.strategy.held_out_per_class(task, old) * seen, compress=trained,
                        after=FORWARD_ONLY * ((new if rehearsal else 0) + self.evaluated[task]))

    def phases(self, task: int, steps: tuple[str, ...]) -> float:
        """The work of all the epochs of `steps` (phases of `task`)."""
        work = self.task(task)
        return sum(self.strategy.epochs(task, step) * getattr(work, step, 0.0) for step in steps)

    def planned(self, task: int) -> float:
        return self.phases(task, self.strategy.steps(task)) + self.task(task).after

    def done_in(self, task: int, phase: str, epochs_done: int) -> float:
        """The work of `task` done once `epochs_done` epochs of `phase` are (a mid-task checkpoint's)."""
        steps = self.strategy.steps(task)
        return self.phases(task, steps[:steps.index(phase)]) + epochs_done * getattr(self.task(task), phase)

    def total(self) -> float:
        return sum(map(self.planned, range(self.scenario.num_tasks)))


def work_plan(cfg: Config, strategy: Strategy, data: DataSet, scenario: Scenario, trained: np.ndarray,
              validation: np.ndarray, world_size: int) -> WorkPlan:
    """The work of a run of `cfg` on `data` with `world_size` workers, `trained` and `validation` the
    training split's indices trained on and held out."""
    copies = world_size if cfg.memory.per_worker else 1  # DyTox's per-GPU memory: one selection a worker
    counts = np.bincount(data.train.labels[trained], minlength=data.num_classes)
    evaluated = tuple(len(indices_of_classes(data.test, seen)) +
                      int(np.isin(data.train.labels[validation], list(seen)).sum())
                      for seen in map(scenario.classes_up_to, range(scenario.num_tasks)))
    return WorkPlan(cfg, strategy, scenario, {c: int(n) for c, n in enumerate(counts)}, evaluated, copies)
