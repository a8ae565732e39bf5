"""What every incremental model gives the learner: grow by a task, forward, freeze per phase.

A new method subclasses `IncrementalModel`, implements `embed` (tokens -> per-slot embeddings)
and, if it has task-specific parameters, `_grow` and `_old_task_parameters`; then registers its
builder in its own file under `suite/models/` (`register_builder`), under the name of its record
in `suite/methods.py`. Models take plain arguments (the `model.*` keys by name), never a config.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from suite.models.encoder import Encoder
from suite.methods import FINETUNE, TRAIN

ENCODER_ARGS = ("embed_dim", "depth", "num_heads", "patch_size", "mlp_ratio", "drop_path", "locality_strength")


@dataclass
class Output:
    logits: torch.Tensor  # (B, classes seen so far), task heads concatenated in task order
    embeddings: torch.Tensor  # (B, slots, C): one embedding per key / task token / pooled feature
    div_logits: Optional[torch.Tensor] = None  # (B, new classes + 1), training only
    maps: tuple[torch.Tensor, ...] = ()  # a CNN backbone's stage outputs (B, C, H, W), where a method distils them
    scale: Optional[torch.Tensor] = None  # what a cosine classifier multiplied its cosines by (its sigma)
    # the logits a model distils from that it computes itself (FOSTER: its frozen old classifier on its
    # frozen old backbone while boosting, its boosted network while compressing), training only
    teacher_logits: Optional[torch.Tensor] = None
    # at test time, the logits of a method's other classifiers, by the names its record gives them
    # (FOSTER's "student": its compressed single-backbone network)
    other_logits: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def features(self) -> torch.Tensor:
        return self.embeddings.flatten(1)


class TaskHead(nn.Sequential):
    """LayerNorm + Linear(C, classes of one task)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__(nn.LayerNorm(dim), nn.Linear(dim, num_classes))


class IncrementalModel(nn.Module):
    """divergence: a divergence head on the current task's embedding while training;
    freezes_old_heads: old tasks' heads frozen in the main phase (both from the method's record);
    `encoder`: the shared encoder's arguments (ENCODER_ARGS)."""

    def __init__(self, image_size: int, channels: int, divergence: bool = True, freezes_old_heads: bool = True,
                 **encoder):
        super().__init__()
        self.uses_divergence = divergence
        self.freezes_old_heads = freezes_old_heads
        self.encoder = Encoder(image_size, channels, **encoder)
        self.embed_dim = self.encoder.pos_embed.shape[-1]
        self.heads = nn.ModuleList()
        self.div_head: Optional[TaskHead] = None

    @property
    def num_tasks(self) -> int:
        return len(self.heads)

    @property
    def task_sizes(self) -> list[int]:
        return [head[-1].out_features if isinstance(head, nn.Sequential) else head.out_features for head in self.heads]

    @property
    def num_classes(self) -> int:
        return sum(self.task_sizes)

    def make_head(self, num_classes: int) -> nn.Module:
        return TaskHead(self.embed_dim, num_classes)

    def add_task(self, num_classes: int) -> None:
        """Expand for the next task: its head, its divergence head, and its key / token."""
        self._grow(self.num_tasks)
        self.heads.append(self.make_head(num_classes))
        has_old = self.num_tasks > 1
        # LayerNorm + Linear, the releases' ContinualClassifier; all old classes in one bucket
        self.div_head = TaskHead(self.embed_dim, num_classes + 1) if self.uses_divergence and has_old else None

    def slot_of_task(self, task: int) -> int:
        """Which embedding slot feeds task `task`'s head."""
        return task

    def forward(self, images: torch.Tensor) -> Output:
        emb = self.embed(self.encoder(images))
        logits = torch.cat([head(emb[:, self.slot_of_task(t)]) for t, head in enumerate(self.heads)], dim=1)
        div = None
        if self.training and self.div_head is not None:
            div = self.div_head(emb[:, self.slot_of_task(self.num_tasks - 1)])
        return Output(logits, emb, div)

    def set_phase(self, phase: str) -> None:
        """TRAIN (a task's main phase): old heads and old task parameters frozen. FINETUNE (balanced
        finetuning): encoder (and div head) frozen."""
        for p in self.parameters():
            p.requires_grad_(True)
        if phase == TRAIN:
            frozen = list(self._old_task_parameters())
            if self.freezes_old_heads:
                frozen += [p for head in self.heads[:-1] for p in head.parameters()]
        elif phase == FINETUNE:
            frozen = list(self.encoder.parameters())
            if self.div_head is not None:
                frozen += list(self.div_head.parameters())
        else:
            raise ValueError(f"unknown phase {phase!r}")
        for p in frozen:
            p.requires_grad_(False)

    # -- hooks for subclasses
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _grow(self, task: int) -> None:
        """Create the task-specific parameters task `task` needs (called before its head is added)."""

    def _old_task_parameters(self):
        """Task-specific parameters of finished tasks, frozen in the main phase."""
        return iter(())


def test_time_parameters(model: nn.Module, classifier: str | None = None) -> int:
    """Parameters used at test time: all but the parts a model names `training_only` (by default the
    divergence / auxiliary head, left out as the DER paper counts). A classifier with a network of its
    own (a model's `classifier_networks`: FOSTER's compressed "student") counts that network, once
    it exists."""
    own = getattr(model, getattr(model, "classifier_networks", {}).get(classifier, ""), None)
    if isinstance(own, nn.Module):
        return sum(p.numel() for p in own.parameters())
    unused = getattr(model, "training_only", ("div_head",))
    return sum(p.numel() for name, p in model.named_parameters() if name.split(".")[0] not in unused)


Builder = Callable[..., IncrementalModel]  # (Method, image_size, channels, num_tasks, **model options) -> model
BUILDERS: dict[str, Builder] = {}


def register_builder(name: str, build: Builder) -> Builder:
    """The model of method `name` (its record is `suite.methods.METHODS[name]`)."""
    BUILDERS[name] = build
    return build


def encoder_args(options: dict) -> dict:
    """The shared encoder's arguments among a run's model options."""
    return {name: options[name] for name in ENCODER_ARGS if name in options}
