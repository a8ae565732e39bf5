"""Small data files in real formats, written by tests (CIFAR-100's python pickles, Tiny-ImageNet's
tree), and the one-line error that loading a broken one raises."""
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from suite.config import DataConfig
from suite.data.registry import load_dataset
from suite.errors import UserError

CIFAR100_NAMES = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile
cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter
palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket
rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper
table tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf
woman worm""".split()


def cifar_batch(per_class: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(100), per_class)
    return {
        "batch_label": "tiny batch",
        "filenames": [f"img_{i}.png" for i in range(len(labels))],
        "fine_labels": labels.tolist(),
        "coarse_labels": (labels // 5).tolist(),
        "data": rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8),
    }


class Py2Pickler(pickle._Pickler):
    """Writes strings as Python 2 did (byte strings), as in the genuine release."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string


def write_py2_pickle(path: Path, obj):
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    path.write_bytes(buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))


def write_pickle(path: Path, obj, protocol: int = 2):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def make_cifar(directory: Path, train_per_class: int = 2) -> Path:
    """A tiny CIFAR-100 release: a few train and 1 test image per class, the real 100-name meta.

    train and meta are written as Python 2 wrote the release; test as a Python 3 re-save.
    """
    directory.mkdir(parents=True)
    write_py2_pickle(directory / "train", cifar_batch(train_per_class, seed=0))
    write_pickle(directory / "test", cifar_batch(1, seed=1), protocol=pickle.HIGHEST_PROTOCOL)
    write_py2_pickle(directory / "meta", {"fine_label_names": CIFAR100_NAMES, "coarse_label_names": ["c"] * 20})
    return directory


def tiny_imagenet_colour(label: int, i: int) -> tuple[int, int, int]:
    """The flat colour of training image i of class `label` (val images use i = -1)."""
    return (20 * label % 256, 10 + 30 * (i + 1) % 200, 255 - 20 * label % 256)


def make_tiny_imagenet(root: Path, wnids: list[str], train_per_class: int = 3, val_per_class: int = 2,
                       grey_wnid: str | None = None, other_val_wnids: tuple[str, ...] = ()) -> Path:
    """A small tree in Stanford's Tiny-ImageNet layout: 64x64 JPEGs of flat colours.

    words.txt names every wnid (and one unrelated), like the release's 82k-line file; val
    annotations are shuffled across classes, and `other_val_wnids` adds val images of classes
    wnids.txt does not list (as a 100-class subset of the 200-class val folder would hold)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (root / "words.txt").write_text("n00000000\tentity\n" + "".join(
        f"{w}\tthing {k}, other name {k}\n" for k, w in enumerate(list(wnids) + list(other_val_wnids))))
    for label, wnid in enumerate(wnids):
        images = root / "train" / wnid / "images"
        images.mkdir(parents=True)
        for i in range(train_per_class):
            img = Image.new("RGB", (64, 64), tiny_imagenet_colour(label, i))
            (img.convert("L") if wnid == grey_wnid else img).save(images / f"{wnid}_{i}.JPEG", quality=95)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n"
                                                                         for i in range(train_per_class)))
    (root / "val" / "images").mkdir(parents=True)
    lines = []
    everyone = list(wnids) + list(other_val_wnids)
    shuffled = np.random.default_rng(0).permutation(np.repeat(np.arange(len(everyone)), val_per_class))
    for k, label in enumerate(shuffled.tolist()):
        wnid = everyone[label]
        name = f"val_{k}.JPEG"
        Image.new("RGB", (64, 64), tiny_imagenet_colour(label, -1)).save(root / "val" / "images" / name, quality=95)
        lines.append(f"{name}\t{wnid}\t0\t0\t63\t63\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    (root / "test" / "images").mkdir(parents=True)
    (root / "test" / "images" / "test_0.JPEG").write_text("unlabelled; never read")
    return root


def user_error(cfg: DataConfig, path, loader=load_dataset) -> str:
    """The message of the UserError that loading raises; it is one line naming `path`."""
    with pytest.raises(UserError) as info:
        loader(cfg)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def write_png(path: Path, value: int):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value % 256, 0, 255 - value % 256)).save(path)


def make_imagenet_subset(root: Path, wnids: list[str], train_per_class: int = 2) -> Path:
    """ImageNet-style folders named by WordNet id, and DER/DyTox split files listing them (train_100.txt,
    val_100.txt): `train_per_class` training images and one validation image a class."""
    train_lines, val_lines = [], []
    for label, wnid in enumerate(wnids):
        for i in range(train_per_class):
            rel = f"train/{wnid}/{wnid}_{i}.JPEG"
            write_png(root / rel, label)
            train_lines.append(f"{rel} {label}")
        rel = f"val/ILSVRC2012_val_{label:08d}.JPEG"
        write_png(root / rel, label)
        val_lines.append(f"{rel} {label}")
    (root / "train_100.txt").write_text("\n".join(train_lines) + "\n")
    (root / "val_100.txt").write_text("\n".join(val_lines) + "\n\n")
    return root
