"""Atomic file writes: a temp file in the same directory, fsync, then rename over the target.

A crash at any moment leaves either the previous complete file or the new complete file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

FILE_MODE = 0o644  # mkstemp's 0600 would hide results and reports from colleagues on shared storage


def nearest_existing(path: Path) -> Path:
    """`path`, or the nearest of its ancestors that exists: where creating its directories would start."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def write_atomic(path: str | Path, write: Callable[[object], None], binary: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, FILE_MODE)
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj) -> Path:
    return write_atomic(path, lambda f: json.dump(obj, f, indent=2))


def write_text(path: str | Path, text: str) -> Path:
    """UTF-8 whatever the locale: tables hold ±, Δ and − signs."""
    return write_atomic(path, lambda f: f.write(text))


def write_bytes(path: str | Path, write: Callable[[object], None]) -> Path:
    return write_atomic(path, write, binary=True)
