"""The method seam: what a method decides, and the learner asks it, inside the protocol.

The learner keeps the protocol (tasks, data, memory budget and selection, evaluation,
checkpoints and resume, distributed training); a strategy says, for its method:

- `steps(task)`: what a task runs, in order: its main phase (TRAIN), the memory's update (MEMORY,
  for methods with a memory), and any phases of its own (FINETUNE: balanced finetuning on the
  memory; BIAS: BiC's bias correction), each described by `extra_phase` and trained by the
  learner like the main one; `epochs(task, phase)` how long each trains; FINETUNE_MEMORY before a
  FINETUNE on "memory" herds the new classes at the old classes' share (PyCIL's PODNet);
- `held_out_per_class(task, num_old)`: images of each class the main phase leaves out (for BIAS);
- `teacher(model, task)`: the frozen model it distils from, if any;
- `after_growth(model, task, new_class_features)`: what it sets in the model once it has grown for
  a task (UCIR imprints the new classes' weights from their images' features);
- `loss(out, teacher_out, targets, phase)`: its training objective for a batch;
- `after_step(model)`, `after_epoch(model, task, phase, epochs_done)` and `after_phase(model,
  task, phase)`: what it changes in the model between optimizer steps, epochs and after a phase
  (weight clipping, DER's classifier reset after the warm-up, weight aligning).

How it classifies (logits, nearest class mean) is in its record (`Method.classifiers`); the
learner computes the class means from the memory at each evaluation where "nme" is one of them.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from suite.config import Config
from suite.learner.losses import classification_loss
from suite.methods import FINETUNE, METHODS, TRAIN

MEMORY = "memory"  # a task's step that updates the rehearsal memory
# a task's step that adds the new classes to the memory at as many exemplars each as the old classes
# hold (the memory's budget before the task), for a balanced finetuning on it; MEMORY follows
FINETUNE_MEMORY = "finetune_memory"


@dataclass(frozen=True)
class ExtraPhase:
    """How the learner trains a phase after the main one (the model's set_phase says what trains)."""

    images: str  # "memory" (the memory as its last update left it), "held_out" (held_out_per_class's),
    #              "balanced" (the task's training images and memory, every class cut to the smallest's count)
    #              or "main" (what the main phase trained on)
    lr: float  # its base learning rate (scaled as train.scale_lr says)
    scheduled: bool  # the main phase's schedule (warm-up, cosine or multistep) or, False, its own (below)
    mixup: bool  # the recipe's MixUp (train.mixup) on its batches
    shuffle: bool  # its batches in a new random order every epoch
    milestones: tuple[int, ...] = ()  # not scheduled: lr x train.lr_decay after these epochs (none: constant)
    cosine: bool = False  # not scheduled: a cosine over the phase's epochs, stepped per epoch, to train.min_lr
    distill: bool = False  # the teacher's outputs reach the loss, as in the main phase
    weight_decay: Optional[float] = None  # cosine: its weight decay (None: the train section's)


class Strategy:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.method = METHODS[cfg.method]

    def steps(self, task: int) -> tuple[str, ...]:
        return (TRAIN, MEMORY) if self.method.rehearsal else (TRAIN,)

    def epochs(self, task: int, phase: str) -> int:
        """The epochs `phase` trains in task `task` (0 for MEMORY)."""
        train = self.cfg.train
        if phase == TRAIN:
            return train.incremental_epochs if task > 0 and train.incremental_epochs else train.epochs
        if phase == FINETUNE:
            return self.cfg.finetune.epochs
        return 0

    def main_lr(self, task: int) -> float:
        """The main phase's base learning rate in task `task` (train.incremental_lr after the first)."""
        train = self.cfg.train
        return train.incremental_lr if task > 0 and train.incremental_lr is not None else train.lr

    def task_epochs(self, task: int, before: Optional[str] = None) -> int:
        """The epochs of all of task `task`'s steps, or of those before step `before`."""
        steps = self.steps(task)
        return sum(self.epochs(task, step) for step in steps[:steps.index(before) if before else None])

    def extra_phase(self, task: int, phase: str) -> ExtraPhase:
        raise NotImplementedError(f"{type(self).__name__} has no phase {phase!r}")

    def held_out_per_class(self, task: int, num_old: int) -> int:
        """Images of each class (`num_old` classes before this task) the main phase leaves out."""
        return 0

    def problem(self, task_sizes: list[int]) -> Optional[str]:
        """What makes this config unrunnable for the method (checked before a run), or None."""
        return None

    def hard_label_problem(self) -> Optional[str]:
        """For a method whose losses take each image's one label: MixUp and label smoothing refused."""
        train = self.cfg.train
        if train.mixup > 0 or train.label_smoothing > 0:
            return (f"{self.cfg.method}'s losses take each image's one label: expected train.mixup = 0 and "
                    f"train.label_smoothing = 0, got {train.mixup:g} and {train.label_smoothing:g}")
        return None

    def teacher(self, model: nn.Module, task: int) -> Optional[nn.Module]:
        """A frozen copy of the model as the last task left it, for methods that distil."""
        if task == 0 or not self.method.distill:
            return None
        return copy.deepcopy(model).eval().requires_grad_(False)

    def after_growth(self, model: nn.Module, task: int, new_class_features: Callable[[], list[torch.Tensor]]) -> None:
        """After the model has grown by task `task`'s classes, before its training.
        `new_class_features()`: per new class, in order, its training images' features (clean images,
        the model in eval mode), computed when called."""

    def loss(self, out, teacher_out, targets: torch.Tensor, phase) -> torch.Tensor:
        """`out` and `teacher_out`: the model's and the teacher's Output on the batch (the teacher's
        None where there is none, or the phase does not distil); `targets`: the batch's (mixed,
        smoothed) soft targets over the classes seen; `phase`: the learner's Phase (its name,
        num_old, distill)."""
        return classification_loss(out.logits.float(), targets, self.cfg.train.loss)

    def after_step(self, model: nn.Module) -> None:
        """After every optimizer step."""

    def after_epoch(self, model: nn.Module, task: int, phase: str, epochs_done: int) -> None:
        """After each epoch of a phase (`epochs_done` of it so far), before a mid-task checkpoint. A
        strategy that changes parameters here sends rank 0's to every worker (dist.broadcast_parameters):
        DDP does so only when it wraps the model."""

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
