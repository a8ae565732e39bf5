"""Tiny-ImageNet-100 resized to 32x32 once and written in CIFAR-100's python-pickle layout.

Both implementations then read the very same pixels: the releases through continuum's
`CIFAR100` (torchvision's reader: `entry["data"]`, `entry["fine_labels"]`, meta
`fine_label_names`, pickles loaded with encoding latin1), ours through `data.name: cifar100`
(suite/data/sources/cifar.py: the same keys, exactly 100 classes, uint8 rows of 3072).

All 100 classes are packed, because both readers check for CIFAR-100's 100 classes; a benchmark
of C classes learns the first C labels (release `--max-task`, ours `data.max_classes`).
Labels are the positions of the wnids in sorted order. Strings are written as Python 2 `str`
(pickle's BINSTRING opcodes), as in CIFAR's own files: they load as `str` with
encoding='latin1' and as `bytes` (b'data', ...) with encoding='bytes'.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 32
RELEASE_DIR = "cifar-100-python"
FORMAT_VERSION = 1


class _Py2StrPickler(pickle._Pickler):
    """Protocol 2 with `bytes` and ASCII `str` written as Python 2 strings, as CIFAR's files hold them.

    numpy's array data then travels as one raw string (not protocol 2's latin1 re-encoding, which
    doubles the file), and loads under encoding='latin1' exactly like a real CIFAR pickle.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2(self, obj):
        if isinstance(obj, str):
            try:
                raw = obj.encode("ascii")
            except UnicodeEncodeError:
                return pickle._Pickler.save_str(self, obj)
        else:
            raw = bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2
    dispatch[bytes] = _save_py2


def _dump(obj, path: Path) -> None:
    buf = io.BytesIO()
    _Py2StrPickler(buf, protocol=2).dump(obj)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def wnids(root: Path) -> list[str]:
    """The data set's classes in label order (sorted wnids)."""
    return sorted(line.strip() for line in (root / "wnids.txt").read_text().split() if line.strip())


def _image_row(path: Path) -> np.ndarray:
    """One image as a CIFAR row: RGB, 32x32 (PIL bicubic, antialiased when shrinking), channel-major."""
    with Image.open(path) as im:
        im = im.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BICUBIC)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).reshape(-1)


def _train_files(root: Path, classes: list[str]) -> list[tuple[Path, int]]:
    items = []
    for label, wnid in enumerate(classes):
        files = sorted((root / "train" / wnid / "images").glob("*.JPEG"),
                       key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        items += [(p, label) for p in files]
    return items


def _test_files(root: Path, classes: list[str]) -> list[tuple[Path, int]]:
    label_of = {w: i for i, w in enumerate(classes)}
    rows = [line.split("\t")[:2] for line in (root / "val" / "val_annotations.txt").read_text().splitlines() if line]
    rows.sort(key=lambda r: int(r[0].split("_")[1].split(".")[0]))
    return [(root / "val" / "images" / name, label_of[wnid]) for name, wnid in rows if wnid in label_of]


def _split(items: list[tuple[Path, int]], batch_label: str) -> dict:
    return {
        "batch_label": batch_label,
        "filenames": [p.name for p, _ in items],
        "fine_labels": [label for _, label in items],
        "data": np.stack([_image_row(p) for p, _ in items]),
    }


def check_source(root: Path) -> str | None:
    """None when `root` has the Stanford layout, else what is missing."""
    for rel in ("wnids.txt", "train", "val/images", "val/val_annotations.txt"):
        if not (root / rel).exists():
            return f"{root}: missing {rel} (expected Tiny-ImageNet's layout: wnids.txt, train/<wnid>/images, val/)"
    return None


def _fingerprint(root: Path) -> str:
    h = hashlib.sha256()
    h.update((root / "wnids.txt").read_bytes())
    h.update((root / "val" / "val_annotations.txt").read_bytes())
    h.update(str(sum(1 for _ in (root / "train").glob("*/images/*.JPEG"))).encode())
    return h.hexdigest()


def pack(root: Path, out: Path) -> dict:
    """Write `out/cifar-100-python/{train,test,meta}` (skipped when an identical pack exists)."""
    root, out = Path(root).resolve(), Path(out).resolve()
    base = out / RELEASE_DIR
    manifest_path = out / "manifest.json"
    fingerprint = _fingerprint(root)
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("fingerprint") == fingerprint and manifest.get("format") == FORMAT_VERSION \
                and all((base / f).is_file() for f in ("train", "test", "meta")):
            return manifest
    classes = wnids(root)
    base.mkdir(parents=True, exist_ok=True)
    train = _split(_train_files(root, classes), "training batch 1 of 1")
    test = _split(_test_files(root, classes), "testing batch 1 of 1")
    _dump(train, base / "train")
    _dump(test, base / "test")
    _dump({"fine_label_names": classes}, base / "meta")
    manifest = {
        "format": FORMAT_VERSION,
        "source": str(root),
        "fingerprint": fingerprint,
        "classes": classes,
        "resize": f"PIL bicubic (antialiased) {SIDE}x{SIDE}, convert('RGB')",
        "train_per_class": np.bincount(train["fine_labels"], minlength=len(classes)).tolist(),
        "test_per_class": np.bincount(test["fine_labels"], minlength=len(classes)).tolist(),
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest
