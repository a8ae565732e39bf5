"""scikit-learn's bundled handwritten digits: real data, 10 classes, no download.

The pixels are read from the file scikit-learn ships (`sklearn/datasets/data/digits.csv.gz`, as its
`load_digits` does) and split by the row indices in `digits_split.json`: scikit-learn's stratified
`train_test_split` (25% test, random_state 0), stored once; tests/test_data_sources.py checks both
against scikit-learn. Importing scikit-learn itself would cost every process about 2.5 s.
"""
import importlib.util
import json
from pathlib import Path

import numpy as np

from suite.data.registry import DataSet, Split, register
from suite.errors import UserError

SPLIT_FILE = Path(__file__).with_name("digits_split.json")


def csv_path() -> Path:
    """digits.csv.gz inside the installed scikit-learn, found without importing it."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("data.name 'digits' needs scikit-learn, which ships the digits; "
                        "install it with `pip install -r requirements.txt`")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


@register("digits", num_classes=lambda cfg: 10)
def load(cfg) -> DataSet:
    rows = np.loadtxt(csv_path(), delimiter=",")
    images = np.clip(rows[:, :-1].reshape(-1, 8, 8) * 16, 0, 255).astype(np.uint8)[..., None]  # 0..16 -> 0..255, NHWC
    labels = rows[:, -1].astype(np.int64)
    split = json.loads(SPLIT_FILE.read_text())
    train, test = np.asarray(split["train"]), np.asarray(split["test"])
    pixels = images[train].astype(np.float64) / 255
    return DataSet(
        name="digits",
        train=Split(images[train], labels[train]),
        test=Split(images[test], labels[test]),
        class_names=[str(c) for c in range(10)],
        image_size=8,
        channels=1,
        mean=(float(pixels.mean()),),
        std=(float(pixels.std()),),
        flip=False,
    )
