"""scikit-learn's bundled handwritten digits: real data, 10 classes, no download."""
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from suite.data.registry import DataSet, Split, register

TEST_FRACTION = 0.25
SPLIT_SEED = 0  # the split is part of the data set, not of a run: it never changes


@register("digits", num_classes=lambda cfg: 10)
def load(cfg) -> DataSet:
    bunch = load_digits()
    images = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)[..., None]  # 0..16 -> 0..255, NHWC
    labels = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    pixels = x_tr.astype(np.float64) / 255
    return DataSet(
        name="digits",
        train=Split(x_tr, y_tr),
        test=Split(x_te, y_te),
        class_names=[str(c) for c in range(10)],
        image_size=8,
        channels=1,
        mean=(float(pixels.mean()),),
        std=(float(pixels.std()),),
        flip=False,
    )
