"""Data set loaders on tiny files in the real formats, written here into tmp_path."""
import logging
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from suite.config import DataConfig
from suite.data.registry import count_classes, load_dataset
from suite.data.sources.imagefolder import open_image
from suite.errors import UserError
from tests.conftest import REPO
from tests.data_files import (
    CIFAR100_NAMES, cifar_batch, make_cifar, make_imagenet_subset, user_error, write_pickle, write_png,
)

ORDERS_DIR = Path(__file__).resolve().parents[1] / "configs" / "orders"


# ---------------------------------------------------------------- CIFAR-100


@pytest.fixture
def cifar_dir(tmp_path) -> Path:
    return make_cifar(tmp_path / "cifar-100-python")


def cifar_cfg(path) -> DataConfig:
    return DataConfig(name="cifar100", path=str(path))


def test_cifar_loads_nested_layout(cifar_dir):
    data = load_dataset(cifar_cfg(cifar_dir.parent))
    assert (len(data.train), len(data.test)) == (200, 100)
    assert data.train.images.shape == (200, 32, 32, 3) and data.train.images.dtype == np.uint8
    assert data.train.labels.dtype == np.int64
    assert data.class_names == CIFAR100_NAMES and data.num_classes == 100
    assert (data.image_size, data.channels) == (32, 3)
    # the releases' constants (DyTox/DAFormer continual/datasets.py)
    assert data.mean == (0.5071, 0.4867, 0.4408) and data.std == (0.2675, 0.2565, 0.2761)
    raw = pickle.loads((cifar_dir / "train").read_bytes(), encoding="latin1")
    np.testing.assert_array_equal(data.train.labels, raw["fine_labels"])
    i, y, x, c = 7, 3, 5, 2  # channel-major rows: value (c, y, x) sits at c*1024 + y*32 + x
    assert data.train.images[i, y, x, c] == raw["data"][i, c * 1024 + y * 32 + x]


def test_cifar_loads_flat_layout(cifar_dir):
    assert len(load_dataset(cifar_cfg(cifar_dir)).test) == 100
    assert count_classes(cifar_cfg(cifar_dir)) == 100


def test_cifar_missing_directory(tmp_path):
    assert "cifar-100-python" in user_error(cifar_cfg(tmp_path / "nowhere"), tmp_path / "nowhere")
    with pytest.raises(UserError, match="data.path is not set"):
        load_dataset(DataConfig(name="cifar100"))


def test_cifar_missing_file_names_expected_files(cifar_dir):
    (cifar_dir / "test").unlink()
    message = user_error(cifar_cfg(cifar_dir.parent), cifar_dir)
    assert "missing test" in message and "train" in message and "meta" in message


def test_cifar_empty_directory(tmp_path):
    assert "missing train, test, meta" in user_error(cifar_cfg(tmp_path), tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_cifar_broken_pickle(cifar_dir, damage):
    path = cifar_dir / "train"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else bytes(range(256)) * 4)
    assert "not a valid CIFAR-100 pickle" in user_error(cifar_cfg(cifar_dir), path)


class Exploit:
    """Unpickling this would create `target`: a stand-in for running arbitrary code."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_cifar_refuses_malicious_pickle(cifar_dir, tmp_path):
    marker = tmp_path / "pwned"
    write_pickle(cifar_dir / "meta", {"fine_label_names": Exploit(marker)})
    assert "refused" in user_error(cifar_cfg(cifar_dir), cifar_dir / "meta")
    assert not marker.exists()


def replace_in_train(cifar_dir: Path, **changes):
    batch = cifar_batch(2, seed=0)
    batch.update(changes)
    write_pickle(cifar_dir / "train", {k: v for k, v in batch.items() if v is not None})


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"fine_labels": None}, "missing key(s) fine_labels"),
        ({"data": np.zeros((200, 1024), np.uint8)}, "expected a uint8 array of shape (N, 3072)"),
        ({"data": np.zeros((200, 3072), np.float32)}, "float32 array"),
        ({"data": [[0] * 3072] * 200}, "'data' is a list"),
        ({"fine_labels": [0] * 199}, "one per image"),
        ({"fine_labels": [100] * 200}, "expected labels in 0..99"),
        ({"fine_labels": [-1] * 200}, "expected labels in 0..99"),
    ],
)
def test_cifar_malformed_train(cifar_dir, changes, expected):
    replace_in_train(cifar_dir, **changes)
    assert expected in user_error(cifar_cfg(cifar_dir), cifar_dir / "train")


def test_cifar_not_a_dict(cifar_dir):
    write_pickle(cifar_dir / "train", [1, 2, 3])
    assert "not a dict" in user_error(cifar_cfg(cifar_dir), cifar_dir / "train")


def test_cifar_meta_wrong_number_of_names(cifar_dir):
    write_pickle(cifar_dir / "meta", {"fine_label_names": CIFAR100_NAMES[:99]})
    assert "has 99 entries" in user_error(cifar_cfg(cifar_dir), cifar_dir / "meta")


# ---------------------------------------------------------------- image folders

CLASSES = ["cat", "dog", "emu"]
WNIDS = ["n01440764", "n01443537", "n01484850"]


def make_folder_tree(root: Path, classes=CLASSES, train_per_class=2) -> Path:
    for c, name in enumerate(classes):
        for i in range(train_per_class):
            write_png(root / "train" / name / f"{i}.png", 40 * c + i)
        write_png(root / "val" / name / "v.PNG", 40 * c)
    (root / "train" / classes[0] / "notes.txt").write_text("not an image")
    return root


def folder_cfg(root, name="imagefolder") -> DataConfig:
    return DataConfig(name=name, path=str(root))


def test_imagefolder_loads_paths(tmp_path):
    data = load_dataset(folder_cfg(make_folder_tree(tmp_path)))
    assert data.class_names == CLASSES
    assert (len(data.train), len(data.test)) == (6, 3)
    assert data.train.images.dtype != np.uint8 and not data.train.in_memory
    assert data.train.labels.dtype == np.int64
    np.testing.assert_array_equal(data.train.labels, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(data.test.labels, [0, 1, 2])
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in data.train.images)
    assert Path(data.test.images[1]) == tmp_path / "val" / "dog" / "v.PNG"
    assert (data.image_size, data.channels) == (224, 3)
    assert data.mean == (0.485, 0.456, 0.406) and data.std == (0.229, 0.224, 0.225)
    assert count_classes(folder_cfg(tmp_path)) == 3


def test_open_image(tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.new("L", (4, 4), 7).save(good)
    bad.write_bytes(b"not a png at all")
    image = open_image(good)
    assert image.mode == "RGB" and image.size == (4, 4)
    with pytest.raises(UserError, match="is not a readable image file") as info:
        open_image(bad)
    assert str(bad) in str(info.value)


def test_imagenet_reports_class_count(tmp_path, caplog):
    make_folder_tree(tmp_path)
    with caplog.at_level(logging.WARNING):
        data = load_dataset(folder_cfg(tmp_path, "imagenet"))
    assert data.name == "imagenet" and data.num_classes == 3
    assert "3 classes" in caplog.text and "1000" in caplog.text
    assert count_classes(folder_cfg(tmp_path, "imagenet")) == 3


@pytest.mark.parametrize("name", ["imagefolder", "imagenet"])
def test_folder_missing_directories(tmp_path, name):
    user_error(folder_cfg(tmp_path / "nowhere", name), tmp_path / "nowhere")
    assert "no 'train' directory" in user_error(folder_cfg(tmp_path, name), tmp_path)
    assert "no 'train' directory" in user_error(folder_cfg(tmp_path, name), tmp_path, loader=count_classes)
    (tmp_path / "train").mkdir()
    assert "no 'val' directory" in user_error(folder_cfg(tmp_path, name), tmp_path)
    (tmp_path / "val").mkdir()
    assert "holds no class folders" in user_error(folder_cfg(tmp_path, name), tmp_path / "train")


def test_folder_empty_class(tmp_path):
    make_folder_tree(tmp_path)
    (tmp_path / "val" / "emu" / "v.PNG").unlink()
    assert "holds no image files" in user_error(folder_cfg(tmp_path), tmp_path / "val" / "emu")


def test_folder_mismatched_classes(tmp_path):
    make_folder_tree(tmp_path)
    (tmp_path / "val" / "dog" / "v.PNG").rename(tmp_path / "val" / "emu" / "w.png")
    (tmp_path / "val" / "dog").rmdir()
    write_png(tmp_path / "val" / "yak" / "v.png", 3)
    message = user_error(folder_cfg(tmp_path), tmp_path / "val")
    assert "missing from val: dog" in message and "not in train: yak" in message


# ---------------------------------------------------------------- ImageNet-100 split files


def make_subset(root: Path) -> Path:
    return make_imagenet_subset(root, WNIDS)


def subset_cfg(root) -> DataConfig:
    return DataConfig(name="imagenet_subset", path=str(root))


def test_imagenet_subset_loads(tmp_path):
    data = load_dataset(subset_cfg(make_subset(tmp_path)))
    assert data.class_names == WNIDS
    assert (len(data.train), len(data.test)) == (6, 3)
    assert not data.train.in_memory and data.train.labels.dtype == np.int64
    np.testing.assert_array_equal(data.train.labels, [0, 0, 1, 1, 2, 2])
    assert Path(data.test.images[2]) == tmp_path / "val" / "ILSVRC2012_val_00000002.JPEG"
    assert open_image(data.train.images[0]).size == (8, 8)
    assert count_classes(subset_cfg(tmp_path)) == 3


@pytest.mark.parametrize("missing", ["train_100.txt", "val_100.txt"])
def test_imagenet_subset_missing_split_file(tmp_path, missing):
    (make_subset(tmp_path) / missing).unlink()
    assert f"no split file '{missing}'" in user_error(subset_cfg(tmp_path), tmp_path)


@pytest.mark.parametrize("line", ["train/a.JPEG", "train/a.JPEG one", "train/a.JPEG -1", "a.JPEG 1 2"])
def test_imagenet_subset_malformed_line(tmp_path, line):
    make_subset(tmp_path)
    split = tmp_path / "train_100.txt"
    split.write_text(split.read_text() + line + "\n")
    message = user_error(subset_cfg(tmp_path), split)
    assert "line 7" in message and line in message
    user_error(subset_cfg(tmp_path), split, loader=count_classes)


def test_imagenet_subset_absent_files(tmp_path):
    make_subset(tmp_path)
    split = tmp_path / "val_100.txt"
    split.write_text(split.read_text() + "val/gone.JPEG 1\n")
    assert "'val/gone.JPEG'" in user_error(subset_cfg(tmp_path), split)


def test_imagenet_subset_empty_and_gappy_split(tmp_path):
    make_subset(tmp_path)
    split = tmp_path / "train_100.txt"
    kept = [line for line in split.read_text().splitlines() if not line.endswith(" 1")]
    split.write_text("\n".join(kept) + "\n")
    assert "label(s) 1" in user_error(subset_cfg(tmp_path), split)
    split.write_text("\n")
    assert "lists no images" in user_error(subset_cfg(tmp_path), split)


def test_imagenet_subset_val_label_unknown_to_train(tmp_path):
    make_subset(tmp_path)
    split = tmp_path / "val_100.txt"
    split.write_text(split.read_text() + "val/ILSVRC2012_val_00000000.JPEG 3\n")
    assert "label 3" in user_error(subset_cfg(tmp_path), split)


# ---------------------------------------------------------------- built-in data and class orders


def test_digits_loads():
    data = load_dataset(DataConfig(name="digits"))
    assert len(data.train) + len(data.test) == 1797
    assert data.num_classes == 10 and data.train.images.shape[1:] == (8, 8, 1)
    assert set(np.unique(data.test.labels)) == set(range(10))


def test_digits_are_scikit_learns_images_and_stratified_split():
    """The stored split and the CSV reading reproduce load_digits + train_test_split exactly."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)[..., None]
    x_tr, x_te, y_tr, y_te = train_test_split(images, bunch.target, test_size=0.25, stratify=bunch.target,
                                              random_state=0)
    data = load_dataset(DataConfig(name="digits"))
    assert np.array_equal(data.train.images, x_tr) and np.array_equal(data.train.labels, y_tr)
    assert np.array_equal(data.test.images, x_te) and np.array_equal(data.test.labels, y_te)


def test_digits_do_not_import_scikit_learn():
    code = ("import sys; from suite.config import DataConfig; from suite.data.registry import load_dataset; "
            "load_dataset(DataConfig(name='digits')); print('sklearn' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_synthetic_loads():
    cfg = DataConfig(name="synthetic", num_classes=4, image_size=8, train_per_class=5, test_per_class=2)
    data = load_dataset(cfg)
    assert data.train.images.shape == (20, 8, 8, 3) and len(data.test) == 8
    assert data.num_classes == 4 and count_classes(cfg) == 4


@pytest.mark.parametrize("name", sorted(p.stem for p in ORDERS_DIR.glob("*.yaml")))
def test_class_orders_are_permutations(name):
    text = (ORDERS_DIR / f"{name}.yaml").read_text()
    assert text.startswith("#")  # names its source
    order = yaml.safe_load(text)["class_order"]
    classes = int(re.match(r"[a-z]+(\d+)_order", name).group(1))  # e.g. tinyimagenet50_order1: 50
    assert sorted(order) == list(range(classes))
