"""Lockstep: our learner and a release's training code on the same weights and batches, step by step.

Both sides start from our initial weights (every parameter a task creates, mapped into the
release's names), read the same pre-augmented batches in the same order with the same MixUp λ,
and run with drop-path off. Per optimizer step both record the loss, the gradient norm and every
parameter; after each task the rehearsal memory (herding on each side's own features, trimmed as
classes arrive) and the predicted classes of a fixed test batch. The release side is
bench/parity/lockstep_release.py, run in the release's venv on its checkout.

The same comparison replays without a release: `golden` stores the release's trajectory
(tests/golden/, written by `python -m bench.parity lockstep`) and tests/test_golden_trajectories.py
runs our learner against it.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from timm.data.mixup import Mixup

from bench.parity.lockstep_release import batch_order, batches_of, grad_norm
from bench.parity.recipe import METHODS
from suite.config import Config, load
from suite.data.registry import DataSet, Split
from suite.data.scenario import Scenario
from suite.learner.learner import Learner

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Setup:
    """The lockstep's scale: small enough for seconds on a CPU, every phase of the protocol present."""

    method: str  # a key of recipe.METHODS
    seed: int = 0
    tasks: int = 3
    classes_per_task: int = 2
    per_class: int = 12  # pool images per class (trained on, and herded from)
    image_size: int = 32  # the release sizes its keys for 64 tokens (dual.py: Conv2d(head_dim, 64, 1))
    patch_size: int = 4
    embed_dim: int = 24
    encoder_depth: int = 1
    num_heads: int = 2
    batch_size: int = 8
    epochs: int = 2
    finetune_epochs: int = 2
    memory: int = 12  # in total: 6 per class after task 1, 3 after task 3
    lr: float = 0.2  # scaled by batch / 512 on both sides: 3.1e-3
    incremental_lr: float = 0.2
    finetune_lr: float = 0.1
    test_images: int = 16

    @property
    def num_classes(self) -> int:
        return self.tasks * self.classes_per_task

    def release_options(self) -> dict:
        """The release's option values (its argparse names) that make its run this one."""
        return {
            "embed_dim": self.embed_dim, "depth": self.encoder_depth + 1, "local_up_to_layer": self.encoder_depth,
            "num_heads": self.num_heads, "patch_size": self.patch_size, "input_size": self.image_size,
            "drop_path": 0.0, "batch_size": self.batch_size, "incremental_batch_size": self.batch_size,
            "lr": self.lr, "incremental_lr": self.incremental_lr, "finetuning_lr": self.finetune_lr,
            "epochs": self.epochs, "base_epochs": self.epochs, "finetuning_epochs": self.finetune_epochs,
            "memory_size": self.memory, "initial_increment": self.classes_per_task,
            "increment": self.classes_per_task, "seed": self.seed, "device": "cpu", "num_workers": 0,
        }

    def our_config(self, sets: tuple[str, ...] = ()) -> Config:
        """Our preset for the method with the release's recipe keys (recipe.METHODS), scaled down;
        `sets` last (a test breaks a recipe detail on purpose with them)."""
        method = METHODS[self.method]
        return load([REPO / method.ours_config], sets=[
            f"method={method.ours_method}", f"model.embed_dim={self.embed_dim}", f"model.depth={self.encoder_depth}",
            f"model.num_heads={self.num_heads}", f"model.patch_size={self.patch_size}", "model.drop_path=0",
            f"scenario.increment={self.classes_per_task}", f"memory.size={self.memory}",
            "memory.selection=herding", "memory.per_worker=false", f"train.epochs={self.epochs}",
            f"train.batch_size={self.batch_size}", f"train.lr={self.lr}", f"train.incremental_lr={self.incremental_lr}",
            "train.min_lr=1.0", "train.precision=fp32", "train.compile=false", f"finetune.epochs={self.finetune_epochs}",
            f"finetune.lr={self.finetune_lr}", "data.num_workers=0", f"seed={self.seed}", *method.ours_sets, *sets,
        ])


def make_inputs(setup: Setup) -> dict:
    """The pool of pre-augmented images (each class its own pattern plus noise), a test batch, and
    one MixUp λ per possible step, all from the setup's seed."""
    g = torch.Generator().manual_seed(setup.seed)
    shape = (3, setup.image_size, setup.image_size)
    patterns = torch.randn(setup.num_classes, *shape, generator=g)
    labels = torch.arange(setup.num_classes).repeat_interleave(setup.per_class)
    images = patterns[labels] + 1.5 * torch.randn(len(labels), *shape, generator=g)
    test_labels = torch.arange(setup.test_images) % setup.num_classes
    test = patterns[test_labels] + 1.5 * torch.randn(setup.test_images, *shape, generator=g)
    lambdas = np.random.default_rng(setup.seed).beta(0.8, 0.8, size=1000).tolist()
    return {"pool_images": images, "pool_labels": labels, "test_images": test, "test_labels": test_labels,
            "lambdas": lambdas}


def task_positions(setup: Setup) -> list[list[int]]:
    """Per task, the pool positions of its classes (classes learnt in the order 0, 1, ...)."""
    c, n = setup.classes_per_task, setup.per_class
    return [list(range(t * c * n, (t + 1) * c * n)) for t in range(setup.tasks)]


# Parameters whose gradient is zero in exact arithmetic: GPSA's positional-score bias adds one
# constant per head to every score of a softmax row, which the softmax ignores. Rounding leaves a
# gradient of about 1e-9 on each side, and Adam scales any gradient to a step of about lr, so their
# values wander by ±lr a step, differently on each side, with no effect on any output. They are
# compared for shape and left out of the deviations.
SHIFT_INVARIANT = ("attn.pos_proj.bias",)


def compared(name: str) -> bool:
    return not name.endswith(SHIFT_INVARIANT)


# ---------------------------------------------------------------- names: ours -> the release's

def release_view(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our parameters under the release's names and shapes (DualVit/Dual, ConVit/DyTox)."""
    out = {}
    for name, t in state.items():
        for ours, theirs in _PREFIXES:
            if name.startswith(ours):
                out[theirs + name[len(ours):]] = t
                break
        else:
            out.update(_special(name, t))
    return out


_PREFIXES = (
    ("encoder.blocks.", "sabs."), ("encoder.", ""),
    ("div_head.0.", "head_div.norm."), ("div_head.1.", "head_div.head."),
    ("dual.norm1.", "duals.0.norm1."), ("dual.norm2.", "duals.0.norm2."), ("dual.mlp.", "duals.0.mlp."),
    ("tab.norm1.", "tabs.0.norm1."), ("tab.norm2.", "tabs.0.norm2."), ("tab.mlp.", "tabs.0.mlp."),
    ("tab.", "tabs.0.attn."),
)


def _special(name: str, t: torch.Tensor) -> dict[str, torch.Tensor]:
    parts = name.split(".")
    if parts[0] == "heads":  # heads.i.0 = LayerNorm, heads.i.1 = Linear
        return {f"head.{parts[1]}.{'norm' if parts[2] == '0' else 'head'}.{parts[3]}": t}
    if name == "dual.qkv.weight":
        q, k, v = t.chunk(3)
        return {"duals.0.attn.to_q.weight": q, "duals.0.attn.to_k.weight": k, "duals.0.attn.to_v.weight": v}
    if parts[:2] == ["dual", "keys"]:  # (P, d) -> the release's 1x1 conv weight (P, d, 1, 1)
        return {f"keys.{parts[2]}.weight": t[:, :, None, None]}
    if parts[:2] == ["dual", "key_biases"]:
        return {f"keys.{parts[2]}.bias": t}
    if parts[0] == "task_tokens":  # (1, C) -> (1, 1, C)
        return {name: t[None]}
    raise KeyError(f"no release name for our parameter {name}")


# ---------------------------------------------------------------- our side

class FixedBatches:
    """A phase's loader over pool positions: batch_order's order per epoch, pre-augmented images."""

    def __init__(self, inputs: dict, positions: np.ndarray, seed: int, offset: int, shuffle: bool, batch_size: int):
        self.inputs, self.positions = inputs, [int(p) for p in positions]
        self.seed, self.offset, self.shuffle, self.batch_size = seed, offset, shuffle, batch_size
        self.sampler = self  # the learner calls loader.sampler.set_epoch(epoch)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        order = batch_order(len(self.positions), self.seed, self.offset, self.epoch, self.shuffle)
        return batches_of([self.positions[i] for i in order], self.batch_size)

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self):
        for batch in self._batches():
            yield self.inputs["pool_images"][batch], self.inputs["pool_labels"][batch], torch.zeros(len(batch))


class FixedLambdaMixup(Mixup):
    """timm's Mixup (batch mode: each image mixed with the batch reversed) with given λs."""

    def __init__(self, lambdas, **kwargs):
        super().__init__(**kwargs)
        self.lambdas = lambdas

    def _params_per_batch(self):
        return next(self.lambdas), False


class LockstepLearner(Learner):
    """Our learner, unchanged but for its data: the pool's pre-augmented batches (FixedBatches), the
    pool's images for herding's features, the given MixUp λs; it records what the release's side
    records. `init` holds, per task, the values of the parameters that task creates: given, they
    are loaded (a replay); missing, ours are kept and recorded (a new lockstep)."""

    def __init__(self, setup: Setup, inputs: dict, init: dict[int, dict[str, torch.Tensor]], sets: tuple[str, ...] = ()):
        labels = inputs["pool_labels"].numpy()
        blank = np.zeros((len(labels), setup.image_size, setup.image_size, 3), dtype=np.uint8)
        data = DataSet("lockstep", Split(blank, labels), Split(blank[:0], labels[:0]),
                       [str(c) for c in range(setup.num_classes)], setup.image_size, 3, (0.5,) * 3, (0.5,) * 3)
        c = setup.classes_per_task
        scenario = Scenario(tuple(range(setup.num_classes)),
                            tuple(tuple(range(t * c, (t + 1) * c)) for t in range(setup.tasks)), f"B0-{setup.tasks}steps")
        super().__init__(setup.our_config(sets), data, scenario, log=lambda msg: None)
        self.setup, self.inputs, self.init = setup, inputs, init
        self.lambdas = iter(inputs["lambdas"])
        self.steps: list[dict] = []
        self.memories: list[list[int]] = []
        self.predictions: list[torch.Tensor] = []
        self.where: dict = {}

    def begin_task(self, task: int) -> None:
        before = {name: id(p) for name, p in self.model.named_parameters()} if task > 0 else {}
        super().begin_task(task)
        new = {name: p for name, p in self.model.named_parameters() if before.get(name) != id(p)}
        if task in self.init:
            with torch.no_grad():
                for name, p in new.items():
                    p.copy_(self.init[task][name])
        else:
            self.init[task] = {name: p.detach().clone() for name, p in new.items()}

    def train_main(self, task: int) -> None:
        self.where = {"task": task, "phase": "train"}
        super().train_main(task)

    def train_extra(self, task: int, name: str) -> None:
        self.where = {"task": task, "phase": name}
        super().train_extra(task, name)

    def update_memory(self, task: int) -> None:
        super().update_memory(task)
        self.memories.append([int(i) for i in self.memory.indices()])

    def evaluate(self, task: int) -> None:
        self.model.eval()
        with torch.no_grad():
            self.predictions.append(self.model(self.inputs["test_images"]).logits.argmax(1))

    def _loader(self, indices, shuffle, seed_offset, repeats):
        return FixedBatches(self.inputs, indices, self.setup.seed, seed_offset, shuffle, self.setup.batch_size)

    def _features(self, indices, transform):
        self.model.eval()
        return self.model(self.inputs["pool_images"][torch.as_tensor(indices)]).features.float()

    def _mixup(self):
        cfg = self.cfg.train
        if cfg.mixup <= 0:
            return None
        return FixedLambdaMixup(self.lambdas, mixup_alpha=cfg.mixup, label_smoothing=cfg.label_smoothing,
                                num_classes=self.model.num_classes)

    def _optimizer(self, lr, steps, warmup, **options):
        optimizer, scheduler = super()._optimizer(lr, steps, warmup, **options)
        optimizer.register_step_pre_hook(self._before_step)
        optimizer.register_step_post_hook(self._after_step)
        return optimizer, scheduler

    def _epoch(self, task, phase, epoch, what):
        self.where = {**self.where, "epoch": epoch}
        return super()._epoch(task, phase, epoch, what)

    def _step(self, phase, images, labels):
        loss = super()._step(phase, images, labels)
        self.steps[-1]["loss"] = loss
        return loss

    def _before_step(self, optimizer, args, kwargs):
        self._grad_norm = grad_norm(optimizer)

    def _after_step(self, optimizer, args, kwargs):
        params = {k: v.detach().clone() for k, v in self.model.named_parameters()}
        self.steps.append({**self.where, "grad_norm": self._grad_norm, "params": release_view(params)})


def run_ours(setup: Setup, inputs: dict, init: dict | None = None, sets: tuple[str, ...] = ()) -> dict:
    """Our trajectory on the lockstep's data: steps, memories (pool positions, memory order),
    predictions, and the initial values of every parameter each task created."""
    learner = LockstepLearner(setup, inputs, {} if init is None else init, sets)
    learner.run()
    return {"steps": learner.steps, "memories": learner.memories, "predictions": learner.predictions,
            "init": learner.init}


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm((a - b).double()) / max(float(torch.linalg.vector_norm(b.double())), 1e-12))


def _step_key(step: dict) -> tuple:
    return step["task"], step["phase"], step["epoch"]


def compare(ours: dict, release: dict) -> dict:
    """Every compared quantity, per step and per task, and the largest deviation per phase."""
    problems, rows = [], []
    if len(ours["steps"]) != len(release["steps"]):
        problems.append(f"{len(ours['steps'])} optimizer steps here, {len(release['steps'])} in the release")
    for i, (a, b) in enumerate(zip(ours["steps"], release["steps"])):
        if _step_key(a) != _step_key(b):
            problems.append(f"step {i}: {_step_key(a)} here, {_step_key(b)} in the release")
            break
        names = sorted(set(a["params"]) & set(b["params"]))
        unmatched = sorted(set(a["params"]) ^ set(b["params"]) - set(release.get("unused", ())))
        if unmatched:
            problems.append(f"step {i}: parameters on one side only: {unmatched}")
        param = max((_relative(a["params"][n], b["params"][n]), n) for n in names if compared(n))
        rows.append({"step": i, "task": a["task"], "phase": a["phase"], "epoch": a["epoch"],
                     "loss": a["loss"], "release_loss": b["losses"][0],
                     "loss_rel": abs(a["loss"] - b["losses"][0]) / max(abs(b["losses"][0]), 1e-12),
                     "grad_norm": a["grad_norm"], "release_grad_norm": b["grad_norm"],
                     "grad_rel": abs(a["grad_norm"] - b["grad_norm"]) / max(b["grad_norm"], 1e-12),
                     "param_rel": param[0], "param_worst": param[1], "parameters": len(names)})
    tasks = []
    for t, (ma, mb, pa, pb) in enumerate(zip(ours["memories"], release["memories"], ours["predictions"],
                                               release["predictions"])):
        tasks.append({"task": t, "memory_equal": ma == mb, "memory": ma, "release_memory": mb,
                      "predictions_equal": bool(torch.equal(pa, pb)),
                      "predictions_differing": int((pa != pb).sum()), "test_images": len(pa)})
    worst = {}
    for phase, group in itertools.groupby(sorted(rows, key=lambda r: r["phase"]), key=lambda r: r["phase"]):
        group = list(group)
        worst[phase] = {k: max(r[k] for r in group) for k in ("loss_rel", "grad_rel", "param_rel")} | {"steps": len(group)}
    return {"steps": rows, "tasks": tasks, "worst": worst, "problems": problems}


def float_floor(setup: Setup, inputs: dict, ours: dict) -> dict:
    """How far float32 rounding alone carries a trajectory: ours against ours with every initial
    weight moved by one rounding (relative 2^-24, random sign), compared as the release is."""
    g = torch.Generator().manual_seed(setup.seed)
    nudged = {t: {k: v * (1 + 2.0 ** -24 * torch.randn(v.shape, generator=g).sign()) for k, v in values.items()}
              for t, values in ours["init"].items()}
    again = run_ours(setup, inputs, nudged)
    as_release = {**again, "steps": [{**s, "losses": [s["loss"]]} for s in again["steps"]]}
    return compare(ours, as_release)["worst"]
