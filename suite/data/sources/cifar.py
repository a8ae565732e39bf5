"""CIFAR-100 from the standard python-pickle release (`cifar-100-python/{train,test,meta}`).

Never downloads. The pickles are read with a restricted unpickler: a pickle can run arbitrary
code when loaded, and a genuine CIFAR file needs only a numpy array inside plain dicts and lists.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from suite.data.registry import DataSet, Split, register, require_path
from suite.errors import UserError

NUM_CLASSES = 100
SIDE = 32
FILES = ("train", "test", "meta")
RELEASE_DIR = "cifar-100-python"
EXPECTED = f"CIFAR-100's python release: {RELEASE_DIR}/{{{','.join(FILES)}}} or those files directly"
MEAN = (0.5071, 0.4867, 0.4408)  # the DyTox and DAFormer releases' constants
STD = (0.2675, 0.2565, 0.2761)

# Everything a CIFAR pickle may name: numpy's array reconstruction (under numpy 1 and numpy 2
# module names, in-band protocol 5 buffers) and `_codecs.encode`, which Python 3 uses for
# bytes at protocol 2. Nothing here can run code.
ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _RefusedGlobal(Exception):
    pass


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise _RefusedGlobal(f"{module}.{name}")
        return super().find_class(module, name)


def _release_dir(root: Path) -> Path:
    """The directory holding train/test/meta: `root/cifar-100-python` or `root` itself."""
    nested = root / RELEASE_DIR
    base = nested if nested.is_dir() else root
    missing = [name for name in FILES if not (base / name).is_file()]
    if missing:
        raise UserError(
            f"data.path '{root}': missing {', '.join(missing)} in '{base}'; expected {EXPECTED}"
        )
    return base


def _unpickle(path: Path) -> dict:
    def bad(reason: str):
        return UserError(f"'{path}' is not a valid CIFAR-100 pickle ({reason}); expected the '{path.name}' file of CIFAR-100's python release")

    try:
        obj = _CifarUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except _RefusedGlobal as err:
        raise bad(f"it refers to {err}, which a CIFAR pickle never needs; refused to load it") from None
    except Exception as err:  # truncated or garbled files fail in many ways
        raise bad(f"unreadable: {type(err).__name__}") from None
    if not isinstance(obj, dict):
        raise bad(f"it holds a {type(obj).__name__}, not a dict")
    return obj


def _require_keys(path: Path, obj: dict, keys: tuple[str, ...]):
    missing = [k for k in keys if k not in obj]
    if missing:
        found = ", ".join(sorted(map(str, obj))) or "none"
        raise UserError(f"'{path}': missing key(s) {', '.join(missing)} (found: {found}); expected keys {', '.join(keys)}")


def _load_split(path: Path) -> Split:
    obj = _unpickle(path)
    _require_keys(path, obj, ("data", "fine_labels"))
    data, labels = obj["data"], obj["fine_labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
        found = f"a {data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else f"a {type(data).__name__}"
        raise UserError(f"'{path}': 'data' is {found}; expected a uint8 array of shape (N, {3 * SIDE * SIDE})")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        labels = None
    if labels is None or labels.shape != (len(data),):
        raise UserError(f"'{path}': 'fine_labels' is not a list of {len(data)} integers, one per image")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise UserError(f"'{path}': 'fine_labels' holds {labels.min()}..{labels.max()}; expected labels in 0..{NUM_CLASSES - 1}")
    images = data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)  # channel-major rows -> NHWC
    return Split(np.ascontiguousarray(images), labels)


def _class_names(path: Path) -> list[str]:
    obj = _unpickle(path)
    _require_keys(path, obj, ("fine_label_names",))
    names = obj["fine_label_names"]
    if not isinstance(names, list) or len(names) != NUM_CLASSES or not all(isinstance(n, str) for n in names):
        count = len(names) if isinstance(names, list) else type(names).__name__
        raise UserError(f"'{path}': 'fine_label_names' has {count} entries; expected a list of {NUM_CLASSES} class names")
    return names


@register("cifar100", num_classes=lambda cfg: NUM_CLASSES)
def load(cfg) -> DataSet:
    base = _release_dir(require_path(cfg, EXPECTED))
    return DataSet(
        name="cifar100",
        train=_load_split(base / "train"),
        test=_load_split(base / "test"),
        class_names=_class_names(base / "meta"),
        image_size=SIDE,
        channels=3,
        mean=MEAN,
        std=STD,
    )
