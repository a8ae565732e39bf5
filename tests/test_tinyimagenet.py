"""Tiny-ImageNet in Stanford's layout: loading, resizing once, class subsets, names, and bad trees."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from suite.config import DataConfig
from suite.data.registry import count_classes, load_dataset
from suite.data.dataset import build_transform
from suite import cli
from tests.conftest import REPO
from tests.data_files import make_tiny_imagenet, tiny_imagenet_colour, user_error

WNIDS = ["n01443537", "n01629819", "n01641577", "n01644900"]  # not sorted in wnids.txt's order below
ORDER = [WNIDS[2], WNIDS[0], WNIDS[3], WNIDS[1]]


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tiny_imagenet(tmp_path / "tiny", ORDER, grey_wnid=ORDER[1], other_val_wnids=("n09999999",))


def cfg(root, **kw) -> DataConfig:
    return DataConfig(name="tinyimagenet", path=str(root), **kw)


def test_loads_the_release_layout(tree):
    data = load_dataset(cfg(tree))
    assert data.name == "tinyimagenet" and data.num_classes == 4
    assert data.class_names == ["thing 0", "thing 1", "thing 2", "thing 3"]  # first name, wnids.txt order
    assert (data.image_size, data.channels) == (64, 3)
    assert data.train.images.shape == (12, 64, 64, 3) and data.train.images.dtype == np.uint8
    assert data.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert len(data.test) == 8 and sorted(data.test.labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    for label in (0, 2, 3):  # colours survive JPEG within a few levels
        first = data.train.images[data.train.labels == label][0]
        assert np.abs(first.reshape(-1, 3).mean(0) - tiny_imagenet_colour(label, 0)).max() < 4
    val = data.test.images[data.test.labels == 2][0]
    assert np.abs(val.reshape(-1, 3).mean(0) - tiny_imagenet_colour(2, -1)).max() < 4


def test_greyscale_images_become_rgb(tree):
    data = load_dataset(cfg(tree))
    grey = data.train.images[data.train.labels == 1]
    assert grey.shape[-1] == 3 and (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_val_images_follow_the_annotations(tree):
    data = load_dataset(cfg(tree))
    lines = (tree / "val" / "val_annotations.txt").read_text().splitlines()
    expected = [ORDER.index(line.split("\t")[1]) for line in lines if line.split("\t")[1] in ORDER]
    assert data.test.labels.tolist() == expected  # n09999999's images are left out


def test_input_size_resizes_once_at_load(tree):
    data = load_dataset(cfg(tree, input_size=32))
    assert data.image_size == 32 and data.train.images.shape[1:] == (32, 32, 3)
    steps = [type(t).__name__ for t in build_transform(data, cfg(tree, input_size=32), train=True).transforms]
    assert "Resize" not in steps and "RandomCrop" in steps


def test_max_classes_keeps_the_first_classes(tree):
    data = load_dataset(cfg(tree, max_classes=2))
    assert data.class_names == ["thing 0", "thing 1"] and count_classes(cfg(tree, max_classes=2)) == 2
    assert set(data.train.labels.tolist()) == {0, 1} and set(data.test.labels.tolist()) == {0, 1}
    assert count_classes(cfg(tree)) == 4


def test_max_classes_applies_to_every_data_set():
    synthetic = DataConfig(name="synthetic", num_classes=6, image_size=8, train_per_class=3, test_per_class=2,
                           max_classes=4)
    data = load_dataset(synthetic)
    assert data.num_classes == 4 == count_classes(synthetic)
    assert data.train.labels.max() == 3 and len(data.train) == 12 and len(data.test) == 8


def damage(tree: Path, what: str) -> Path:
    if what == "wnids":
        (tree / "wnids.txt").unlink()
        return tree
    if what == "words":
        (tree / "words.txt").write_text("n00000000\tentity\n")
        return tree / "words.txt"
    if what == "train":
        for f in (tree / "train" / ORDER[2] / "images").iterdir():
            f.unlink()
        (tree / "train" / ORDER[2] / "images").rmdir()
        return tree
    if what == "annotations":
        path = tree / "val" / "val_annotations.txt"
        path.write_text(path.read_text() + "val_x.JPEG\n")
        return path
    if what == "absent_val":
        (tree / "val" / "images" / "val_0.JPEG").unlink()
        return tree / "val" / "val_annotations.txt"  # and the missing file's name
    if what == "no_val_of_a_class":
        path = tree / "val" / "val_annotations.txt"
        path.write_text("".join(l + "\n" for l in path.read_text().splitlines() if ORDER[3] not in l))
        return path
    if what == "corrupt_jpeg":
        path = tree / "train" / ORDER[0] / "images" / f"{ORDER[0]}_1.JPEG"
        path.write_bytes(b"not a jpeg")
        return path
    raise AssertionError(what)


@pytest.mark.parametrize("what, expected", [
    ("wnids", "no 'wnids.txt'"),
    ("words", "no names for"),
    ("train", f"no 'train/{ORDER[2]}/images' folder"),
    ("annotations", "line 11: got 'val_x.JPEG'"),
    ("absent_val", "absent from"),
    ("no_val_of_a_class", f"labels no validation image with {ORDER[3]}"),
    ("corrupt_jpeg", "is not a readable image file"),
])
def test_a_broken_tree_is_one_line(tree, what, expected):
    where = damage(tree, what)
    assert expected in user_error(cfg(tree), where)


def test_missing_directory_names_the_layout(tmp_path):
    message = user_error(cfg(tmp_path / "nowhere"), tmp_path / "nowhere")
    assert "wnids.txt" in message and "val_annotations.txt" in message


PRESETS = [(f"tinyimagenet{n}_{suffix}", tasks, per_task) for n, tasks, per_task, first in
           ((100, 10, 10, "10-10"), (25, 5, 5, "5-5")) for suffix in (first, "order1", "order2", "order3")]


@pytest.mark.parametrize("preset,tasks,per_task", PRESETS)
def test_presets_name_their_tasks_with_class_names(tmp_path, capsys, preset, tasks, per_task):
    wnids = [f"n{10_000_000 + k:08d}" for k in range(100)]
    root = make_tiny_imagenet(tmp_path / "tiny100", wnids, train_per_class=1, val_per_class=1)
    code = cli.main(["configs/quickstart.yaml", f"configs/data/{preset}.yaml", "--data-path", str(root),
                     "--dry-run", "--set", f"memory.size={tasks * per_task}", "--output-basedir", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.strip().startswith("task ")]
    assert len(lines) == tasks and all(f" {per_task} classes " in line for line in lines)
    assert "thing " in out
    if per_task > 5:
        assert "(+4 more)" in out  # the dry run names 6 classes a task, then counts the rest
    if "order" in preset:
        listed = yaml.safe_load((REPO / "configs" / "orders" / f"{preset}.yaml").read_text())["class_order"]
        assert f"{per_task} classes {listed[:per_task]}" in lines[0]
        assert sorted(c for line in lines for c in json.loads(line[line.index("["):line.index("]") + 1])) == \
            list(range(tasks * per_task))
