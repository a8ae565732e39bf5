"""The method seam: what a method decides, and the learner asks it, inside the protocol.

The learner keeps the protocol (tasks, data, memory budget and selection, evaluation,
checkpoints and resume, distributed training); a strategy says, for its method:

- `steps(task)`: what a task runs, in order: its main phase (TRAIN), the memory's update (MEMORY,
  for methods with a memory), and any phases of its own after them (FINETUNE: balanced
  finetuning on the memory);
- `teacher(model, task)`: the frozen model it distils from, if any;
- `loss(out, teacher_out, targets, phase)`: its training objective for a batch;
- `after_step(model)` and `after_phase(model, task, phase)`: what it changes in the model between
  optimizer steps and after a phase (weight clipping, weight aligning).

How it classifies (logits, nearest class mean) is in its record (`Method.classifiers`); the
learner computes the class means after each memory update where "nme" is one of them.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from suite.config import Config
from suite.learner.losses import classification_loss
from suite.methods import METHODS
from suite.models.base import TRAIN

MEMORY = "memory"  # a task's step that updates the rehearsal memory (and the class means)


class Strategy:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.method = METHODS[cfg.method]

    def steps(self, task: int) -> tuple[str, ...]:
        return (TRAIN, MEMORY) if self.method.rehearsal else (TRAIN,)

    def teacher(self, model: nn.Module, task: int) -> Optional[nn.Module]:
        """A frozen copy of the model as the last task left it, for methods that distil."""
        if task == 0 or not self.method.distill:
            return None
        return copy.deepcopy(model).eval().requires_grad_(False)

    def loss(self, out, teacher_out, targets: torch.Tensor, phase) -> torch.Tensor:
        """`out` and `teacher_out`: the model's and the teacher's Output on the batch (the teacher's
        None where there is none, or the phase does not distil); `targets`: the batch's (mixed,
        smoothed) soft targets over the classes seen; `phase`: the learner's Phase (its name,
        num_old, distill)."""
        return classification_loss(out.logits.float(), targets, self.cfg.train.loss)

    def after_step(self, model: nn.Module) -> None:
        """After every optimizer step."""

    def after_phase(self, model: nn.Module, task: int, phase: str) -> None:
        """After a training phase's last epoch (before the memory's update, when TRAIN)."""


STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(*names: str):
    """Register a Strategy class as the strategy of the methods `names` (records in suite/methods.py)."""
    def wrap(cls: type[Strategy]) -> type[Strategy]:
        for name in names:
            STRATEGIES[name] = cls
        return cls
    return wrap
