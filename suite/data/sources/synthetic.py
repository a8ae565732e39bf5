"""Generated images with learnable class structure, for tests and speed benchmarks.

Each class is a smooth random colour pattern; its images are that pattern, randomly shifted,
plus pixel noise. Any number of classes and any image size; the same images every time.
"""
import numpy as np

from suite.data.registry import DataSet, Split, register

DATA_SEED = 1234


def _prototypes(rng, num_classes: int, size: int) -> np.ndarray:
    coarse = rng.uniform(0, 255, size=(num_classes, 4, 4, 3))
    reps = -(-size // 4)
    return np.repeat(np.repeat(coarse, reps, axis=1), reps, axis=2)[:, :size, :size]


def _sample(rng, protos: np.ndarray, per_class: int) -> Split:
    num_classes = protos.shape[0]
    labels = np.repeat(np.arange(num_classes), per_class)
    shifts = rng.integers(-1, 2, size=(len(labels), 2))
    images = np.stack([np.roll(protos[c], tuple(s), axis=(0, 1)) for c, s in zip(labels, shifts)])
    images = images + rng.normal(0, 40, size=images.shape)
    return Split(np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64))


@register("synthetic", num_classes=lambda cfg: cfg.num_classes)
def load(cfg) -> DataSet:
    rng = np.random.default_rng(DATA_SEED)
    protos = _prototypes(rng, cfg.num_classes, cfg.image_size)
    return DataSet(
        name="synthetic",
        train=_sample(rng, protos, cfg.train_per_class),
        test=_sample(rng, protos, cfg.test_per_class),
        class_names=[f"class{c}" for c in range(cfg.num_classes)],
        image_size=cfg.image_size,
        channels=3,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
