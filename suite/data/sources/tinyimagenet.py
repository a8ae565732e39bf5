"""Tiny-ImageNet in Stanford's release layout (CS231n), decoded once into memory.

    ROOT/wnids.txt                        the classes, one WordNet id a line (their order = labels)
    ROOT/words.txt                        wnid <TAB> names (the first name is the class name)
    ROOT/train/<wnid>/images/*.JPEG       training images
    ROOT/val/images/*.JPEG                labelled by ROOT/val/val_annotations.txt
                                          (file <TAB> wnid <TAB> box): the test split

The unlabelled `test/` folder is ignored. Every class of wnids.txt is used (200 in the release,
100 in a subset); `data.max_classes` keeps the first N. Images are converted to RGB (a few are
greyscale) and resized once, at load, to `data.input_size` (default: the native 64; 32 gives
CIFAR-100's shape). Normalised with ImageNet's mean and std, the photos being ImageNet's.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from suite.data.registry import DataSet, Split, register, require_path
from suite.data.sources.imagefolder import UNREADABLE, not_an_image
from suite.errors import UserError

NATIVE_SIZE = 64
LAYOUT = ("Tiny-ImageNet's layout: wnids.txt, words.txt, train/<wnid>/images/*.JPEG, "
          "val/images/*.JPEG and val/val_annotations.txt")
VAL_ANNOTATIONS = Path("val") / "val_annotations.txt"


def _file(root: Path, relative: Path | str) -> Path:
    path = root / relative
    if not path.is_file():
        raise UserError(f"data.path '{root}': no '{relative}'; expected {LAYOUT}")
    return path


def read_wnids(root: Path) -> list[str]:
    path = _file(root, "wnids.txt")
    wnids = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    if not wnids:
        raise UserError(f"'{path}' lists no classes; expected one WordNet id (e.g. n01443537) a line")
    repeated = sorted({w for w in wnids if wnids.count(w) > 1})
    if repeated:
        raise UserError(f"'{path}' lists {repeated[0]} more than once; expected each class once")
    return wnids


def read_names(root: Path, wnids: list[str]) -> list[str]:
    """The first name words.txt gives each wnid ('tailed frog' for 'tailed frog, bell toad, ...')."""
    path = _file(root, "words.txt")
    names = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        wnid, sep, words = line.partition("\t")
        if not sep:
            raise UserError(f"'{path}' line {number}: got '{line[:80]}'; expected '<wnid><TAB><names>'")
        names[wnid.strip()] = words.split(",")[0].strip()
    missing = [w for w in wnids if w not in names]
    if missing:
        raise UserError(f"'{path}' has no names for {len(missing)} class(es) of wnids.txt, e.g. {missing[0]}")
    return [names[w] for w in wnids]


def train_files(root: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for label, wnid in enumerate(wnids):
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise UserError(f"data.path '{root}': no 'train/{wnid}/images' folder; expected {LAYOUT}")
        found = sorted(e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(".jpeg"))
        if not found:
            raise UserError(f"'{folder}' holds no .JPEG images; expected the class's training images")
        files += [folder / name for name in found]
        labels += [label] * len(found)
    return files, labels


def val_files(root: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    """The validation images of the classes in wnids.txt, in val_annotations.txt's order."""
    path = _file(root, VAL_ANNOTATIONS)
    label_of = {w: i for i, w in enumerate(wnids)}
    files, labels = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            raise UserError(f"'{path}' line {number}: got '{line[:80]}'; expected '<file><TAB><wnid><TAB><box>'")
        name, wnid = fields[0].strip(), fields[1].strip()
        if wnid in label_of:
            files.append(root / "val" / "images" / name)
            labels.append(label_of[wnid])
    absent = [f for f in files if not f.is_file()]
    if absent:
        raise UserError(f"'{path}' names {len(absent)} image(s) absent from '{root / 'val' / 'images'}', "
                        f"e.g. '{absent[0].name}'; expected every listed image to exist")
    empty = sorted(set(range(len(wnids))) - set(labels))
    if empty:
        raise UserError(f"'{path}' labels no validation image with {wnids[empty[0]]} (and {len(empty) - 1} more class(es)); "
                        "expected images of every class in wnids.txt")
    return files, labels


def decode(path: Path, size: int) -> np.ndarray:
    """One image as RGB uint8 (size, size, 3), resized with PIL's antialiased bicubic filter."""
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except UNREADABLE as err:
        raise not_an_image(path, err) from None
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)


def decode_all(files: list[Path], size: int, threads: int = 8) -> np.ndarray:
    with ThreadPoolExecutor(threads) as pool:  # PIL decodes with the GIL released
        images = list(pool.map(lambda f: decode(f, size), files, chunksize=256))
    return np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)


def _classes(cfg) -> list[str]:
    wnids = read_wnids(require_path(cfg, LAYOUT))
    return wnids[: cfg.max_classes] if cfg.max_classes else wnids


@register("tinyimagenet", num_classes=lambda cfg: len(_classes(cfg)))
def load(cfg) -> DataSet:
    root = require_path(cfg, LAYOUT).absolute()
    wnids = _classes(cfg)
    names = read_names(root, wnids)
    size = cfg.input_size or NATIVE_SIZE
    splits = []
    for files, labels in (train_files(root, wnids), val_files(root, wnids)):
        splits.append(Split(decode_all(files, size), np.asarray(labels, dtype=np.int64)))
    return DataSet(
        name="tinyimagenet",
        train=splits[0],
        test=splits[1],
        class_names=names,
        image_size=size,
        channels=3,
        mean=tuple(IMAGENET_DEFAULT_MEAN),
        std=tuple(IMAGENET_DEFAULT_STD),
    )
