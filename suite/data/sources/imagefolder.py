"""Image-file data sets that stay on disk: ImageFolder trees, ImageNet, and ImageNet-100.

`Split.images` holds absolute file paths; the training code opens them lazily with
`open_image`, so loading a data set lists files but never decodes them.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from suite.data.registry import DataSet, Split, register, require_path
from suite.errors import UserError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CLASSES = 1000
FOLDER_LAYOUT = "train/<class>/<image> and val/<class>/<image> (ImageFolder layout)"
SUBSET_FILES = ("train_100.txt", "val_100.txt")
SUBSET_LAYOUT = "the DER/DyTox split files train_100.txt and val_100.txt, lines '<relative/path.JPEG> <label>'"


UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def not_an_image(path, err: Exception) -> UserError:
    return UserError(f"'{path}' is not a readable image file ({type(err).__name__}); expected a JPEG, PNG, BMP or WebP image")


def open_image(path) -> Image.Image:
    """Decode one image file as RGB, or a UserError naming the file."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except UNREADABLE as err:
        raise not_an_image(path, err) from None


def stored_side(paths, sample: int = 32) -> int:
    """The median longer side, in pixels, of `sample` of the image files spread over `paths`
    (headers only, nothing decoded)."""
    picked = [paths[i] for i in np.linspace(0, len(paths) - 1, min(sample, len(paths))).astype(int)]
    sides = []
    for path in picked:
        try:
            with Image.open(path) as img:
                sides.append(max(img.size))
        except UNREADABLE as err:
            raise not_an_image(path, err) from None
    return int(np.median(sides))


def check_headers(paths, threads: int = 16) -> None:
    """Every file opens as an image (header only, nothing decoded), or a UserError naming the first
    that does not: run in the driver, so a stray file is refused before any worker starts."""
    def problem(path):
        try:
            with Image.open(path):
                return None
        except UNREADABLE as err:
            return path, err

    with ThreadPoolExecutor(threads) as pool:  # file opens wait on the disk, not the CPU
        for found in pool.map(problem, paths, chunksize=256):
            if found:
                raise not_an_image(*found)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _split_dir(root: Path, split: str) -> Path:
    path = root / split
    if not path.is_dir():
        raise UserError(f"data.path '{root}': no '{split}' directory; expected {FOLDER_LAYOUT}")
    return path


def _class_folders(split_dir: Path) -> list[str]:
    names = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise UserError(f"'{split_dir}' holds no class folders; expected {FOLDER_LAYOUT}")
    return names


def _images_in(class_dir: Path) -> list[str]:
    """Image files under one class folder (recursively, as torchvision's ImageFolder), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames.sort()
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f)]
    if not found:
        raise UserError(f"'{class_dir}' holds no image files; expected files ending in {', '.join(IMAGE_EXTENSIONS)}")
    return found


def _scan(split_dir: Path, classes: list[str]) -> Split:
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = _images_in(split_dir / name)
        paths += files
        labels += [label] * len(files)
    return Split(np.array(paths, dtype=str), np.array(labels, dtype=np.int64))


def _same_classes(train_dir: Path, val_dir: Path, train: list[str], val: list[str]):
    if train == val:
        return
    missing, extra = sorted(set(train) - set(val)), sorted(set(val) - set(train))
    parts = [f"{label} {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
             for label, names in (("missing from val:", missing), ("not in train:", extra)) if names]
    raise UserError(f"'{val_dir}' has other class folders than '{train_dir}' ({'; '.join(parts)}); expected the same classes")


def _load_folders(cfg, name: str) -> DataSet:
    root = require_path(cfg, FOLDER_LAYOUT).absolute()
    train_dir, val_dir = _split_dir(root, "train"), _split_dir(root, "val")
    classes = _class_folders(train_dir)
    _same_classes(train_dir, val_dir, classes, _class_folders(val_dir))
    return _image_dataset(name, _scan(train_dir, classes), _scan(val_dir, classes), classes)


def _image_dataset(name: str, train: Split, test: Split, classes: list[str]) -> DataSet:
    return DataSet(
        name=name,
        train=train,
        test=test,
        class_names=classes,
        image_size=IMAGE_SIZE,
        channels=3,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


def _count_folders(cfg) -> int:
    root = require_path(cfg, FOLDER_LAYOUT)
    return len(_class_folders(_split_dir(root, "train")))


@register("imagefolder", num_classes=_count_folders)
def load_imagefolder(cfg) -> DataSet:
    return _load_folders(cfg, "imagefolder")


@register("imagenet", num_classes=_count_folders)
def load_imagenet(cfg) -> DataSet:
    dataset = _load_folders(cfg, "imagenet")
    if dataset.num_classes != IMAGENET_CLASSES:
        log.warning("imagenet: %d classes under '%s'; ImageNet-1k has %d", dataset.num_classes, cfg.path, IMAGENET_CLASSES)
    return dataset


def _split_file(root: Path, name: str) -> Path:
    path = root / name
    if not path.is_file():
        raise UserError(f"data.path '{root}': no split file '{name}'; expected {SUBSET_LAYOUT}")
    return path


def _label(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 0 else None


def _parse_split_file(path: Path) -> tuple[list[str], list[int]]:
    """The (relative path, label) entries of a DER/DyTox split file; blank lines are skipped."""
    files, labels = [], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            label = _label(fields[1]) if len(fields) == 2 else None
            if label is None:
                shown = line.strip()[:80]
                raise UserError(f"'{path}' line {number}: got '{shown}'; expected '<relative/path.JPEG> <label>' with a label >= 0")
            files.append(fields[0])
            labels.append(label)
    if not files:
        raise UserError(f"'{path}' lists no images; expected lines '<relative/path.JPEG> <label>'")
    return files, labels


def _check_labels(path: Path, labels: np.ndarray, num_classes: int):
    gaps = sorted(set(range(num_classes)) - set(labels.tolist()))
    if gaps:
        raise UserError(f"'{path}': no image has label(s) {', '.join(map(str, gaps[:10]))}; expected labels 0..{num_classes - 1}, each used")


def _subset_split(root: Path, name: str) -> Split:
    path = _split_file(root, name)
    files, labels = _parse_split_file(path)
    absolute = [str(root / f) for f in files]
    absent = [f for f, a in zip(files, absolute) if not os.path.isfile(a)]
    if absent:
        raise UserError(f"'{path}' names {len(absent)} file(s) absent under '{root}', e.g. '{absent[0]}'; expected every listed image to exist")
    return Split(np.array(absolute, dtype=str), np.array(labels, dtype=np.int64))


def _subset_class_names(split: Split, num_classes: int) -> list[str]:
    """Each label's name: the folder of its first image (the WordNet id in ImageNet)."""
    names = [""] * num_classes
    for path, label in zip(split.images, split.labels):
        names[label] = names[label] or Path(path).parent.name
    return names


def _count_subset(cfg) -> int:
    root = require_path(cfg, SUBSET_LAYOUT)
    _, labels = _parse_split_file(_split_file(root, SUBSET_FILES[0]))
    return len(set(labels))


@register("imagenet_subset", num_classes=_count_subset)
def load_imagenet_subset(cfg) -> DataSet:
    root = require_path(cfg, SUBSET_LAYOUT).absolute()
    train_path, test_path = (root / name for name in SUBSET_FILES)
    train, test = (_subset_split(root, name) for name in SUBSET_FILES)
    num_classes = int(train.labels.max()) + 1
    _check_labels(train_path, train.labels, num_classes)
    if test.labels.max() >= num_classes:
        raise UserError(f"'{test_path}': label {test.labels.max()} is not in '{train_path}'; expected labels 0..{num_classes - 1}")
    classes = _subset_class_names(train, num_classes)
    return _image_dataset("imagenet_subset", train, test, classes)
