"""The scaled-down recipe, identical on both sides, and the methods compared.

Only the model size and the epochs are scaled down from the CIFAR presets (plus the number of
classes and, with it, the memory, kept at 20 per class as 2000/100). One more change, on both
sides: the learning rate is constant during the main phase (no warm-up, no cosine). timm's cosine
schedule, which the releases use, steps once per epoch, one epoch behind, with a 5-epoch warm-up
that is not a prefix of it: at a few epochs per task the releases would train mostly in warm-up,
and no per-step schedule of ours could follow it. A constant lr is the one schedule
both sides can run exactly. The balanced finetuning lr is constant in the releases already.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

NUM_CLASSES = 100  # the pack always holds all 100 (see pack.py)


@dataclass(frozen=True)
class Recipe:
    classes: int = 20  # the first `classes` sorted wnids, learned in that order
    increment: int = 5  # classes per task, first task included (B0)
    embed_dim: int = 64
    encoder_depth: int = 2  # GPSA blocks; one task block (dual / class-attention) follows
    num_heads: int = 4
    patch_size: int = 4
    epochs: int = 2  # main-phase epochs, every task
    finetune_epochs: int = 2
    memory: int = 400
    batch_size: int = 128
    lr: float = 5e-4  # task 1; both presets: 5e-4, scaled by batch / 512
    incremental_lr: float = 5e-4  # tasks 2+; both presets: 5e-4, scaled by batch / 512
    finetune_lr: float = 5e-5  # argparse default of both releases, scaled by batch / 512
    num_workers: int = 2  # data-loader workers, both sides

    @property
    def tasks(self) -> int:
        return self.classes // self.increment

    @property
    def class_order(self) -> list[int]:
        """All 100 labels; the benchmark's classes first, then the rest (never reached)."""
        return list(range(NUM_CLASSES))

    @property
    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / 512

    def as_dict(self) -> dict:
        return {**asdict(self), "tasks": self.tasks}

    def check(self) -> str | None:
        if not 2 <= self.classes <= NUM_CLASSES or self.classes % self.increment:
            return f"--classes {self.classes} must lie in 2..{NUM_CLASSES} and be a multiple of --increment {self.increment}"
        if self.tasks < 2:
            return "--classes / --increment must give at least 2 tasks"
        return None


QUICK = Recipe(classes=4, increment=2, embed_dim=32, encoder_depth=1, num_heads=2, epochs=1,
               finetune_epochs=1, memory=4, batch_size=32)


@dataclass(frozen=True)
class Method:
    name: str  # as the report names it
    release: str  # which checkout: daformer | dytox
    entry: str  # the release's training script
    preset: str  # the release's model options file
    ours_config: str  # our preset (configs/...)
    ours_method: str
    ours_sets: tuple[str, ...]  # keys of ours that make it the release's recipe


_COMMON = (
    "distill.knn_weight=0",  # neither release has a KNN term
    "data.augment=true",  # RandomCrop(32, pad 4) + flip
    "data.auto_augment=rand-m9-mstd0.5-inc1",  # --aa default of both releases
    "data.repeated_augmentation=3",  # RASampler: each image 3 times per epoch
    "train.loss=bce",
    "train.asam_eta=0",
    "finetune.shuffle=false",  # ft_no_sampling: the finetuning loader has no sampler, no shuffle
    "train.warmup_epochs=0",
    "memory.herding_images=augmented",  # the releases herd on one pass of the training transform
)

METHODS = {
    "DAFormer-M": Method(
        "DAFormer-M", "daformer", "mainDual.py", "options/model/cifar_dual.yaml",
        "configs/model/cifar_dual.yaml", "daformer_m",
        _COMMON + ("model.out_proj=false", "train.mixup=0.8", "train.label_smoothing=0.1",
                   "train.asam_rho=3.0", "finetune.mixup=true"),
    ),
    "DyTox": Method(
        "DyTox", "dytox", "main.py", "options/model/cifar_dytox.yaml",
        "configs/model/cifar_dytox.yaml", "dytox",
        # mixup 0 and no smoothing: the release then trains on hard-target BCE
        # (continual/losses.py bce_with_logits), its --smoothing only feeds MixUp
        _COMMON + ("train.mixup=0", "train.label_smoothing=0", "train.asam_rho=0", "finetune.mixup=false"),
    ),
}
