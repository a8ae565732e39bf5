"""Small data files in real formats, written by tests (CIFAR-100's python pickles)."""
import io
import pickle
import struct
from pathlib import Path

import numpy as np

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
