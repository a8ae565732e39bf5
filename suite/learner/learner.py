"""The class-incremental protocol, one task at a time. Knows nothing of Ray.

Works in one process, or in each of several torch.distributed workers (Ray Train sets those up):
each worker trains on its own shard, the rehearsal memory is one global selection, and the
evaluation covers every test image exactly once across workers.
"""
from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from timm.data.mixup import Mixup, mixup_target
from torch.utils.data import DataLoader

from suite import metrics
from suite.config import Config
from suite.data.dataset import IndexedImages, build_transform, indices_of_classes
from suite.data.registry import DataSet, Split
from suite.data.sampler import RepeatedAugmentationSampler
from suite.data.scenario import Scenario
from suite.data.validation import validation_split
from suite.learner import dist
from suite.learner.asam import ASAM
from suite.learner.memory import Memory, select_exemplars
from suite.learner.model import run_model
from suite.models.base import test_time_parameters
from suite.learner.nme import class_means, nearest_mean_scores, second_view
from suite.learner.optim import make_optimizer
from suite.learner.precision import autocast_dtype
from suite.learner.progress import Progress, batch_line
from suite.learner.work import work_plan
from suite.methods import METHODS, PHASES, TRAIN
from suite.strategies import strategy_for
from suite.strategies.base import FINETUNE_MEMORY, MEMORY


@dataclass
class History:
    """Everything measured so far; the results file is built from it."""

    acc_matrix: list[list[float]] = field(default_factory=list)
    acc: list[float] = field(default_factory=list)
    acc_top5: list[float] = field(default_factory=list)
    num_params: list[int] = field(default_factory=list)
    memory_size: list[int] = field(default_factory=list)
    per_task_s: list[float] = field(default_factory=list)
    skipped_batches: list[int] = field(default_factory=list)  # non-finite losses skipped, per task
    # the same evaluation on the validation split (data.validation_fraction; empty when it is off)
    val_images: int = 0
    val_acc_matrix: list[list[float]] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    val_acc_top5: list[float] = field(default_factory=list)
    # every classifier's test accuracies and parameters ({"cnn": {"acc_matrix", "acc", "acc_top5",
    # "num_params"}, "nme": ...}) for a method with more than one (Method.classifiers); the fields
    # above are its headline classifier's
    by_classifier: dict[str, dict[str, list]] = field(default_factory=dict)


class NonFiniteLoss(RuntimeError):
    pass


@dataclass(frozen=True)
class MidTask:
    """Where a mid-task checkpoint (train.checkpoint_every) stands in the task `next_task`."""

    phase: str  # one of PHASES
    epochs_done: int  # of that phase
    state: dict  # teacher, optimizer, scheduler, random state, seconds spent on the task so far


def task_epochs(cfg: Config, task: int) -> int:
    """The epochs task `task` (from 0) trains, over all its phases (the method's strategy says which)."""
    return strategy_for(cfg).task_epochs(task)


def random_state() -> dict:
    """The global generators a task draws from (dropout, MixUp, augmentation, loader seeds), in
    types torch.load(weights_only=True) reads back."""
    numpy = np.random.get_state(legacy=False)
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {**numpy, "state": {"key": numpy["state"]["key"].tolist(), "pos": numpy["state"]["pos"]}}}
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state({**numpy, "state": {"key": np.array(numpy["state"]["key"], dtype=np.uint32),
                                            "pos": numpy["state"]["pos"]}})
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int, task: int) -> None:
    """Every task starts from a seed of its own, so a run resumed at task t replays exactly."""
    s = seed * 100_003 + task
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def compiled_forward(module: torch.nn.Module) -> torch.nn.Module:
    """`module` under torch.compile (train.compile; the benchmark's compiled step too).

    A wrapper, so that the module itself (checkpoints, the teacher's deepcopy, evaluation) stays
    eager. fallback_random: dropout and drop-path draw what eager mode draws, so that a compiled
    run trains like an eager one (tests/test_learner.py)."""
    return torch.compile(module, options={"fallback_random": True})


@dataclass(frozen=True)
class Phase:
    """One training phase of a task: the main phase, or one of the method's own (balanced finetuning,
    bias correction)."""

    name: str  # one of PHASES, as the epoch lines and the history say
    epochs: int
    loader: DataLoader
    mixup: Optional[Mixup]
    asam: Optional[ASAM]
    module: torch.nn.Module  # the model as trained: DDP-wrapped, compiled where asked
    num_old: int  # classes of the earlier tasks
    distill: bool  # distillation and the divergence loss apply; else classification only
    images_per_class: tuple[int, ...] = ()  # of each class seen, in label order, the images the phase trains on


class Learner:
    """`log` takes the console lines (rank 0's); `on_epoch_end` every worker's epoch record (task,
    phase, epoch counted from 1; loss, lr, img/s, seconds), for the run's history; `on_checkpoint`
    is called on every worker every train.checkpoint_every epochs of a task (not at its last: the
    task's end is checkpointed by run()'s `on_task_end`), with `mid_task` set while it runs."""

    def __init__(self, cfg: Config, data: DataSet, scenario: Scenario, device: torch.device | None = None,
                 log: Optional[Callable[[str], None]] = None, on_epoch_end: Optional[Callable[[dict], None]] = None,
                 on_checkpoint: Optional[Callable[["Learner"], None]] = None):
        self.cfg = cfg
        self.data = data
        self.scenario = scenario
        self.method = METHODS[cfg.method]
        self.strategy = strategy_for(cfg)
        self.device = device or torch.device("cpu")
        self.log = log if log is not None else (lambda msg: print(msg, flush=True))
        if not dist.is_main():
            self.log = lambda msg: None
        self.on_epoch_end = on_epoch_end or (lambda record: None)
        self.on_checkpoint = on_checkpoint or (lambda learner: None)
        torch.manual_seed(cfg.seed)
        # channels-last (train.channels_last): the layout convolutions run fastest in on CPUs and GPUs
        self.layout = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        self.model = run_model(cfg, data, scenario.num_tasks).to(self.device, memory_format=self.layout)
        self.teacher: Optional[torch.nn.Module] = None
        self.memory = Memory()
        self.history = History()
        self.next_task = 0
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.scheduler = None
        self.amp_dtype = autocast_dtype(cfg.train.precision, self.device)
        self.train_transform = build_transform(data, cfg.data, train=True)
        self.test_transform = build_transform(data, cfg.data, train=False)
        self.label_of_class = scenario.label_of_class
        self.trained, self.validation = validation_split(data.train.labels, cfg.data.validation_fraction, cfg.seed)
        self.work = work_plan(cfg, self.strategy, data, scenario, self.trained, self.validation, dist.world_size())
        self.history.val_images = len(self.validation)
        self.progress: Optional[Progress] = None
        self.mid_task: Optional[MidTask] = None  # set by a mid-task checkpoint, while saved or resumed
        self._task_start = 0.0

    # ------------------------------------------------------------------ the protocol

    def run(self, on_task_end: Optional[Callable[[int, "Learner"], None]] = None) -> History:
        """The tasks from `next_task` on, each: a fresh seed, the teacher and the model's growth
        (begin_task), the method's steps (its main phase, the memory's update, its own phases), the
        evaluation. A run restored from a mid-task checkpoint first finishes that task (resume_task)."""
        self.progress = Progress(self._work_left())
        if self.mid_task is not None:
            self.resume_task(on_task_end)
        for task in range(self.next_task, self.scenario.num_tasks):
            seed_everything(self.cfg.seed, task)
            self._task_start = time.perf_counter()
            self.history.skipped_batches.append(0)
            self.begin_task(task)
            for step in self.strategy.steps(task):
                self._run_step(task, step)
            self._end_task(task, on_task_end)
        return self.history

    def resume_task(self, on_task_end: Optional[Callable[[int, "Learner"], None]] = None) -> None:
        """The task a mid-task checkpoint stopped in, from the phase it stopped in: that phase from the
        epoch after the checkpoint's, with its optimizer, schedule and random state (_run_phase), then
        the task's later steps."""
        task, steps = self.next_task, self.strategy.steps(self.next_task)
        self._task_start = time.perf_counter() - self.mid_task.state["task_seconds"]
        for step in steps[steps.index(self.mid_task.phase):]:
            self._run_step(task, step)
        self._end_task(task, on_task_end)

    def _end_task(self, task: int, on_task_end: Optional[Callable[[int, "Learner"], None]]) -> None:
        if MEMORY not in self.strategy.steps(task):
            self.history.memory_size.append(0)
        self.evaluate(task)
        self.progress.add(self.work.task(task).after)
        self.history.per_task_s.append(time.perf_counter() - self._task_start)
        self.next_task = task + 1
        if on_task_end is not None:
            on_task_end(task, self)

    def _work_left(self) -> float:
        """The work of the tasks from `next_task` on, less what a mid-task checkpoint has done of it."""
        planned = sum(map(self.work.planned, range(self.next_task, self.scenario.num_tasks)))
        mid = self.mid_task
        return planned - (self.work.done_in(self.next_task, mid.phase, mid.epochs_done) if mid else 0.0)

    def _run_step(self, task: int, step: str) -> None:
        if step == TRAIN:
            self.train_main(task)
        elif step == MEMORY:
            self.update_memory(task)
        elif step == FINETUNE_MEMORY:
            self.update_memory(task, for_finetuning=True)
        else:
            self.train_extra(task, step)

    def begin_task(self, task: int) -> None:
        """The method's teacher (for most, a frozen copy of the model so far); then expand the model
        for the new task."""
        self.teacher = self.strategy.teacher(self.model, task)
        self.model.add_task(len(self.scenario.tasks[task]))
        self.model.to(self.device, memory_format=self.layout)
        self.strategy.after_growth(self.model, task, lambda: [
            self._features(self._training_images([c]), self.test_transform) for c in self.scenario.tasks[task]])

    def train_main(self, task: int) -> None:
        cfg = self.cfg.train
        self.model.set_phase(TRAIN)
        indices = self._main_images(task)
        loader = self._loader(indices, shuffle=True, seed_offset=task, repeats=self.cfg.data.repeated_augmentation)
        epochs = self.strategy.epochs(task, TRAIN)
        base_lr = self.strategy.main_lr(task)
        self._scheduled_optimizer(task, base_lr, epochs, len(loader))
        asam = ASAM(self.optimizer, cfg.asam_rho, cfg.asam_eta) if cfg.asam_rho > 0 and task > 0 else None
        self._run_phase(task, Phase(TRAIN, epochs, loader, mixup=self._mixup(), asam=asam,
                                    module=self._trained_module(), num_old=self._num_old(task), distill=True,
                                    images_per_class=self._per_class(indices, task)))
        self.strategy.after_phase(self.model, task, TRAIN)

    def _main_images(self, task: int) -> np.ndarray:
        """What the main phase of task `task` trains on: its classes' training images and the memory,
        less the images held out for a later phase."""
        indices = self._training_images(self.scenario.tasks[task])
        if self.method.rehearsal and len(self.memory):
            indices = np.concatenate([indices, self.memory.indices()])
        held_out = self._held_out(task)
        return indices[~np.isin(indices, held_out)] if held_out.size else indices

    def _per_class(self, indices: np.ndarray, task: int) -> tuple[int, ...]:
        labels = [self.label_of_class[c] for c in self.data.train.labels[indices]]
        return tuple(int(n) for n in np.bincount(labels, minlength=len(self.scenario.classes_up_to(task))))

    def train_extra(self, task: int, name: str) -> None:
        """A phase of the method's after the main one (balanced finetuning, bias correction), on the
        images and at the learning rate its strategy's `extra_phase` gives."""
        spec = self.strategy.extra_phase(task, name)
        self.model.set_phase(name)
        images = {"memory": self.memory.indices, "held_out": lambda: self._held_out(task),
                  "balanced": lambda: self._balanced(task), "main": lambda: self._main_images(task)}
        indices = images[spec.images]()
        loader = self._loader(indices, shuffle=spec.shuffle, seed_offset=1000 * PHASES.index(name) + task, repeats=1)
        epochs = self.strategy.epochs(task, name)
        if spec.scheduled:
            self._scheduled_optimizer(task, spec.lr, epochs, len(loader))
        elif spec.cosine:
            self.optimizer, self.scheduler = self._optimizer(self._scaled(spec.lr), epochs * len(loader), warmup=0,
                                                             schedule="cosine_epoch", batches=len(loader),
                                                             weight_decay=spec.weight_decay)
        elif spec.milestones:
            self.optimizer, self.scheduler = self._optimizer(
                self._scaled(spec.lr), epochs * len(loader), warmup=0,
                milestones=[e * len(loader) for e in spec.milestones], schedule="multistep")
        else:
            self.optimizer, self.scheduler = self._optimizer(self._scaled(spec.lr), None, warmup=0)
        self._run_phase(task, Phase(name, epochs, loader, mixup=self._mixup() if spec.mixup else None,
                                    asam=None, module=self._trained_module(), num_old=self._num_old(task),
                                    distill=spec.distill, images_per_class=self._per_class(indices, task)))
        self.strategy.after_phase(self.model, task, name)

    def _scheduled_optimizer(self, task: int, base_lr: float, epochs: int, batches: int) -> None:
        """The optimizer of a phase of `epochs` epochs of `batches` batches under the train section's
        schedule: its warm-up, cosine or multistep, and the task's milestones and weight decay."""
        cfg = self.cfg.train
        later = task > 0
        milestones = cfg.incremental_milestones if later and cfg.incremental_milestones is not None else cfg.milestones
        decay = cfg.incremental_weight_decay if later and cfg.incremental_weight_decay is not None else cfg.weight_decay
        self.optimizer, self.scheduler = self._optimizer(self._scaled(base_lr), epochs * batches,
                                                         warmup=cfg.warmup_epochs * batches,
                                                         milestones=[e * batches for e in milestones],
                                                         weight_decay=decay, batches=batches)

    def _held_out(self, task: int) -> np.ndarray:
        """The images the method's main phase leaves out in task `task` for a later phase (BiC's
        validation images): `held_out_per_class` of each new class's images and of each old class's
        exemplars, drawn by the seed (as PyCIL draws them); the same whenever asked in the task."""
        per_class = self.strategy.held_out_per_class(task, self._num_old(task))
        if per_class == 0:
            return np.zeros(0, dtype=np.int64)
        return self._per_class_draw(task, per_class, stream=7)

    def _balanced(self, task: int) -> np.ndarray:
        """Task `task`'s training images and the memory it trained with, every class cut to the
        smallest class's count, drawn by the seed (the DER release's class-balanced subset)."""
        return self._per_class_draw(task, None, stream=11)

    def _per_class_draw(self, task: int, per_class: Optional[int], stream: int) -> np.ndarray:
        """`per_class` images (None: as many as the smallest class has) of each of task `task`'s new
        classes and of each class in the memory, drawn by the seed and `stream`, sorted."""
        rng = np.random.default_rng([self.cfg.seed, task, stream])
        pools = [self._training_images([c]) for c in self.scenario.tasks[task]]
        pools += [np.array(idx, dtype=np.int64) for idx in self.memory.ranked.values()]
        size = min(len(pool) for pool in pools) if per_class is None else per_class
        return np.sort(np.concatenate([rng.choice(pool, min(size, len(pool)), replace=False) for pool in pools]))

    @torch.no_grad()
    def update_memory(self, task: int, for_finetuning: bool = False) -> None:
        """Herding (or random) on features in eval mode: one global selection for the whole job.

        `for_finetuning` (FINETUNE_MEMORY): the new classes get as many exemplars as the old classes
        hold, the budget before this task, and the memory's size is not recorded (MEMORY follows).

        Herding ranks un-augmented images (memory.herding_images=clean, iCaRL's way) or one
        augmented view of each (augmented: what the releases do, their herding loader using the
        training transform).

        With memory.per_worker (the DyTox paper's per-GPU memory, which its erratum corrects), each
        worker selects the full budget from its own shard and the union is kept, so the effective
        memory is the budget times the workers.
        """
        cfg = self.cfg.memory
        m, copies = self.work.class_budget(task - 1 if for_finetuning else task)
        self.memory.trim(m * copies)
        new_classes = self.scenario.tasks[task]
        local = dist.shard(self._training_images(new_classes))
        rng = np.random.default_rng([self.cfg.seed, task])
        transform = self.train_transform if cfg.herding_images == "augmented" else self.test_transform
        if cfg.per_worker:
            mine = select_exemplars(self._features(local, transform), self.data.train.labels[local], local,
                                    new_classes, m, cfg.selection, rng)
            parts = dist.all_gather_objects(mine)
            chosen = {c: [i for part in parts for i in part[c]] for c in mine}
        else:
            gathered = dist.all_gather_objects((local, self._features(local, transform)))
            chosen = None
            if dist.is_main():
                order = np.concatenate([g[0] for g in gathered])
                feats = torch.cat([g[1] for g in gathered])
                sort = np.argsort(order, kind="stable")  # the same order whatever the world size
                order, feats = order[sort], feats[torch.from_numpy(sort)]
                chosen = select_exemplars(feats, self.data.train.labels[order], order, new_classes,
                                          m, cfg.selection, rng)
            chosen = dist.broadcast_object(chosen)
        for cls, idx in chosen.items():
            self.memory.add(cls, idx)
        if not for_finetuning:
            self.history.memory_size.append(len(self.memory))
        what = "finetuning memory" if for_finetuning else "memory"
        self.log(f"task {task + 1}/{self.scenario.num_tasks} {what}: {len(self.memory)} exemplars "
                 f"({m * copies} per class, {cfg.selection})")

    @torch.no_grad()
    def evaluate(self, task: int) -> None:
        """Top-1 / top-5 on the test data of every class seen, and on their validation images where
        data.validation_fraction holds some out; one row of each accuracy matrix. A method with more
        than one classifier has each measured on the test data (history.by_classifier), its
        headline one (the first) in the main fields."""
        h = self.history
        seen = self.scenario.classes_up_to(task)
        classifiers = self.method.classifiers
        means = self._class_means(task) if "nme" in classifiers else None
        results = self._accuracy(self.data.test, indices_of_classes(self.data.test, seen), task, means)
        row, overall, top5 = results[classifiers[0]]
        h.acc_matrix.append(row)
        h.acc.append(overall)
        h.acc_top5.append(top5)
        h.num_params.append(self.num_params())
        line = (f"task {task + 1}/{self.scenario.num_tasks} accuracy: top-1 {overall:.2f}  top-5 {top5:.2f}  "
                f"per task [{' '.join(f'{a:.1f}' for a in row)}]")
        if len(classifiers) > 1:
            line = line.replace("accuracy:", f"accuracy ({classifiers[0]}):")
            for name, (row, overall, top5) in results.items():
                numbers = h.by_classifier.setdefault(name, {})
                # a checkpoint from before the counts were kept: none for its tasks, so the next lands on its task
                numbers.setdefault("num_params", [None] * len(numbers.get("acc", [])))
                for key, value in (("acc_matrix", row), ("acc", overall), ("acc_top5", top5),
                                   ("num_params", test_time_parameters(self.model, name))):
                    numbers.setdefault(key, []).append(value)
            line += "".join(f"  {name} top-1 {results[name][1]:.2f}" for name in classifiers[1:])
        if len(self.validation):
            row, overall, top5 = self._accuracy(self.data.train, self._of_classes(self.validation, seen), task,
                                                means)[classifiers[0]]
            h.val_acc_matrix.append(row)
            h.val_acc.append(overall)
            h.val_acc_top5.append(top5)
            line += f"  validation top-1 {overall:.2f}"
        self.log(line)

    def _class_means(self, task: int) -> torch.Tensor:
        """The classes' means of their exemplars' features (clean images, the model as it is now),
        in label order; every worker computes all of them, so they are the same on each."""
        indices = self.memory.indices()
        labels = torch.as_tensor([self.label_of_class[c] for c in self.data.train.labels[indices]])
        features = self._features(indices, self.test_transform)
        view = self.cfg.memory.means_second_view
        if view != "none":  # each exemplar and its second view, averaged alike
            features = torch.cat([features, self._features(indices, self.test_transform, view)])
            labels = torch.cat([labels, labels])
        return class_means(features, labels, len(self.scenario.classes_up_to(task)))

    def _accuracy(self, split: Split, indices: np.ndarray, task: int,
                  means: Optional[torch.Tensor]) -> dict[str, tuple[list[float], float, float]]:
        """Per classifier of the method: (accuracy row, top-1, top-5) after `task` on `split[indices]`
        under the test transform, each image evaluated by one worker."""
        self.model.eval()
        loader = self._eval_loader(split, dist.shard(indices), self.test_transform)
        k = min(5, len(self.scenario.classes_up_to(task)))
        classifiers = self.method.classifiers
        preds, top5 = {name: [] for name in classifiers}, {name: [] for name in classifiers}
        targets = []
        for images, labels, _ in loader:
            with self._autocast():
                out = self.model(self._on_device(images))
            for name in classifiers:
                if name == "cnn":
                    scores = out.logits.float()
                elif name == "nme":
                    scores = nearest_mean_scores(out.features.float(), means)
                else:
                    scores = out.other_logits[name].float()
                best = scores.topk(k, dim=1).indices.cpu()
                preds[name].append(best[:, 0])
                top5[name].append((best == labels[:, None]).any(dim=1))
            targets.append(labels)
        mine = {"targets": torch.cat(targets).numpy() if targets else np.zeros(0)}
        for name in classifiers:
            mine[name] = tuple(torch.cat(x).numpy() if x else np.zeros(0) for x in (preds[name], top5[name]))
        parts = dist.all_gather_objects(mine)
        targets = np.concatenate([p["targets"] for p in parts])
        bounds = np.cumsum([len(t) for t in self.scenario.tasks[: task + 1]])
        task_of_target = np.searchsorted(bounds, targets, side="right")
        results = {}
        for name in classifiers:
            pred = np.concatenate([p[name][0] for p in parts])
            hit5 = np.concatenate([p[name][1] for p in parts])
            row, overall = metrics.accuracy_row(pred, targets, task_of_target, task + 1)
            results[name] = ([float(a) for a in row], float(overall), float(100.0 * hit5.mean()))
        return results

    # ------------------------------------------------------------------ one phase

    def _run_phase(self, task: int, phase: Phase) -> None:
        first = 0
        if self.mid_task is not None:  # resumed inside this phase
            self.optimizer.load_state_dict(self.mid_task.state["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(self.mid_task.state["scheduler"])
            set_random_state(self.mid_task.state["random"])
            first, self.mid_task = self.mid_task.epochs_done, None
        work = getattr(self.work.task(task), phase.name)  # per epoch, for the ETA
        for epoch in range(first, phase.epochs):
            start = time.perf_counter()
            what = f"task {task + 1}/{self.scenario.num_tasks} {phase.name:8s} epoch {epoch + 1}/{phase.epochs}"
            loss, seen = self._epoch(task, phase, epoch, what)
            self.strategy.after_epoch(self.model, task, phase.name, epoch + 1)
            seconds = time.perf_counter() - start
            self.log(self.progress.epoch_done(what, loss, seen * dist.world_size(), seconds, work))
            self.on_epoch_end({"event": "epoch", "task": task + 1, "phase": phase.name, "epoch": epoch + 1,
                               "epochs": phase.epochs, "loss": loss, "lr": self.optimizer.param_groups[0]["lr"],
                               "img_per_s": seen * dist.world_size() / max(seconds, 1e-9), "seconds": seconds})
            if self._checkpoint_due(task, phase, epoch + 1):
                self.mid_task = MidTask(phase.name, epoch + 1, self._mid_task_state())
                self.on_checkpoint(self)
                self.mid_task = None
        dist.broadcast_buffers(self.model)

    def _checkpoint_due(self, task: int, phase: Phase, epochs_done: int) -> bool:
        """Every train.checkpoint_every epochs of the task (its main and finetuning epochs counted
        together), except after its last epoch."""
        every = self.cfg.train.checkpoint_every
        done = epochs_done + self.strategy.task_epochs(task, before=phase.name)
        return every > 0 and done % every == 0 and done < self.strategy.task_epochs(task)

    def _mid_task_state(self) -> dict:
        return {"teacher": self.teacher.state_dict() if self.teacher is not None else None,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "random": random_state(), "task_seconds": time.perf_counter() - self._task_start}

    def _epoch(self, task: int, phase: Phase, epoch: int, what: str) -> tuple[float, int]:
        """Mean loss and number of images of this worker's batches (skipped ones left out); a progress
        line every train.progress_every seconds while the epoch runs."""
        phase.module.train()
        phase.loader.sampler.set_epoch(epoch)
        seen, loss_sum = 0, 0.0
        every, batches = self.cfg.train.progress_every, len(phase.loader)
        start = last = time.perf_counter()
        for batch, (images, labels, _) in enumerate(phase.loader, start=1):
            images, labels = self._on_device(images), labels.to(self.device, non_blocking=True)
            loss = self._step(phase, images, labels)
            if loss is None:
                continue
            if not math.isfinite(loss):
                raise NonFiniteLoss(f"loss became {loss} in task {task + 1}, {phase.name} epoch {epoch + 1}; "
                                    "set train.skip_nonfinite=true to skip such batches instead")
            loss_sum += loss * len(labels)
            seen += len(labels)
            now = time.perf_counter()
            if every and now - last >= every and batch < batches:
                self.log(batch_line(what, batch, batches, loss_sum / max(seen, 1), seen * dist.world_size(), now - start))
                last = now
        return loss_sum / max(seen, 1), seen

    def _step(self, phase: Phase, images: torch.Tensor, labels: torch.Tensor) -> Optional[float]:
        """One optimizer step; None where the loss was not finite and the batch skipped."""
        num_classes = self.model.num_classes
        if phase.mixup is not None and len(labels) % 2 == 0:
            phase.mixup.num_classes = num_classes
            images, soft = phase.mixup(images, labels)
        else:
            soft = mixup_target(labels, num_classes, smoothing=self.cfg.train.label_smoothing)
        teacher_out = None
        if self.teacher is not None and phase.distill:
            with torch.no_grad(), self._autocast():
                teacher_out = self.teacher(images)

        def loss_fn():
            with self._autocast():
                out = phase.module(images)
            return self.strategy.loss(out, teacher_out, soft, phase)

        self.optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        if self.cfg.train.skip_nonfinite and not self._all_finite(loss):
            self.history.skipped_batches[-1] += 1
            return None
        loss.backward()
        if phase.asam is not None:
            phase.asam.ascend()
            self.optimizer.zero_grad(set_to_none=True)
            loss_fn().backward()
            self._clip()
            phase.asam.descend()
        else:
            self._clip()
            self.optimizer.step()
        self.strategy.after_step(self.model)
        if self.scheduler is not None:
            self.scheduler.step()
        return float(loss.detach())

    @staticmethod
    def _all_finite(loss: torch.Tensor) -> bool:
        """Agreed by every worker, so that all of them skip the same batch (DDP needs that)."""
        return dist.all_reduce_sum([float(not torch.isfinite(loss))])[0] == 0

    # ------------------------------------------------------------------ plumbing

    def _scaled(self, lr: float) -> float:
        """A base learning rate scaled by the global batch / 512, as the releases scale theirs
        (train.scale_lr)."""
        if not self.cfg.train.scale_lr:
            return lr
        return lr * self.cfg.train.batch_size * dist.world_size() / 512

    def _loader(self, indices: np.ndarray, shuffle: bool, seed_offset: int, repeats: int) -> DataLoader:
        dataset = IndexedImages(self.data.train, indices, self.label_of_class, self.train_transform)
        sampler = RepeatedAugmentationSampler(len(dataset), dist.world_size(), dist.rank(), repeats, shuffle,
                                              seed=self.cfg.seed * 7919 + seed_offset)
        workers = self.cfg.data.num_workers
        batch_size = self.cfg.train.batch_size
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                          drop_last=self.cfg.train.drop_last and len(sampler) > batch_size,
                          num_workers=workers, persistent_workers=workers > 0,
                          pin_memory=self.device.type == "cuda")

    def _optimizer(self, lr: float, steps: Optional[int], warmup: int, milestones: list[int] = (),
                   weight_decay: Optional[float] = None, schedule: Optional[str] = None, batches: int = 1):
        """The optimizer and its per-step schedule (none where `steps` is None: a constant lr;
        `schedule`: train.schedule unless given)."""
        decay = self.cfg.train.weight_decay if weight_decay is None else weight_decay
        return make_optimizer(self.model, self.cfg.train, lr, decay, steps, warmup, milestones, schedule, batches)

    def _mixup(self) -> Optional[Mixup]:
        cfg = self.cfg.train
        if cfg.mixup <= 0:
            return None
        return Mixup(mixup_alpha=cfg.mixup, label_smoothing=cfg.label_smoothing, num_classes=self.model.num_classes)

    def _clip(self) -> None:
        if self.cfg.train.clip_grad:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad],
                                           self.cfg.train.clip_grad)

    def _trained_module(self) -> torch.nn.Module:
        """The model for a phase's training forward: DDP-wrapped, compiled when train.compile is set."""
        module = dist.wrap_ddp(self.model, self.device)
        return compiled_forward(module) if self.cfg.train.compile else module

    def _training_images(self, classes) -> np.ndarray:
        """Indices of the training images of `classes` that are trained on (and may become exemplars):
        all of them but the validation split's."""
        return self._of_classes(self.trained, classes)

    def _of_classes(self, indices: np.ndarray, classes) -> np.ndarray:
        """Those of `indices` (into the training split) whose class is one of `classes`, in order."""
        return indices[np.isin(self.data.train.labels[indices], list(classes))]

    def _num_old(self, task: int) -> int:
        return sum(len(t) for t in self.scenario.tasks[:task])

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    @torch.no_grad()
    def _features(self, indices: np.ndarray, transform, view: str = "none") -> torch.Tensor:
        """Features of train images under `transform` (seen as `view`: suite/learner/nme.py
        second_view), in eval mode, in large batches."""
        self.model.eval()
        feats = []
        for images, _, _ in self._eval_loader(self.data.train, indices, transform):
            images = second_view(images, view, self.data.mean, self.data.std)
            with self._autocast():
                feats.append(self.model(self._on_device(images)).features.float().cpu())
        return torch.cat(feats) if feats else torch.zeros(0)

    def _on_device(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device, non_blocking=True, memory_format=self.layout)

    def _eval_loader(self, split: Split, indices: np.ndarray, transform) -> DataLoader:
        """`split[indices]` in order, in large batches: evaluation, and the features herding ranks."""
        return DataLoader(IndexedImages(split, indices, self.label_of_class, transform),
                          batch_size=self.cfg.train.eval_batch_size, num_workers=self.cfg.data.num_workers)

    def num_params(self) -> int:
        return test_time_parameters(self.model)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """Enough to resume with identical results (loads with weights_only=True): at the next task,
        or, from a mid-task checkpoint, inside it.

        A task-end checkpoint holds no random state: a resumed run replays its next task from that
        task's seed, as every task starts (seed_everything). A mid-task one holds the task's model
        (its new classes added), teacher, optimizer, scheduler and the random state."""
        mid = self.mid_task
        trained = self.next_task + (mid is not None)
        return {
            "next_task": self.next_task,
            "task_sizes": [len(t) for t in self.scenario.tasks[:trained]],
            "model": self.model.state_dict(),
            "memory": self.memory.state(),
            "history": asdict(self.history),
            "mid_task": None if mid is None else {"phase": mid.phase, "epochs_done": mid.epochs_done, **mid.state},
        }

    def load_state_dict(self, state: dict) -> None:
        mid = state.get("mid_task")
        sizes = state["task_sizes"]
        for size in sizes[:-1] if mid else sizes:
            self.model.add_task(size)
        if mid:  # the task in progress as begin_task left it: its teacher, then its new classes
            if mid["teacher"] is not None:
                self.teacher = copy.deepcopy(self.model).eval().requires_grad_(False)
                self.teacher.load_state_dict(mid["teacher"])
                self.teacher.to(self.device)
            self.model.add_task(sizes[-1])
            self.mid_task = MidTask(mid["phase"], mid["epochs_done"],
                                    {k: v for k, v in mid.items() if k not in ("phase", "epochs_done")})
        self.model.to(self.device, memory_format=self.layout)
        self.model.load_state_dict(state["model"])
        self.memory = Memory.from_state(state["memory"])
        self.history = History(**state["history"])
        self.next_task = state["next_task"]
