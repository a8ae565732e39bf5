"""Where a run persists its results.json and checkpoints: a directory (local, or mounted by every
node), or a URI pyarrow can write (s3://, gs://, hdfs://, file://) for multi-node clusters.

Ray Train writes the task checkpoints there itself (RunConfig(storage_path=...)); this module
writes and reads results.json. A local path is written atomically (suite.atomic); an object
store writes a whole object per put, so readers see the previous or the new version, never a part.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from suite.atomic import write_json


def is_uri(location: str) -> bool:
    return "://" in str(location)


def _filesystem(location: str):
    import pyarrow.fs  # only for URIs: every command would otherwise pay its import at start-up

    return pyarrow.fs.FileSystem.from_uri(location)


def join(location: str, *parts: str) -> str:
    return "/".join([str(location).rstrip("/"), *parts]) if is_uri(location) else str(Path(location, *parts))


def write_json_at(location: str, obj) -> None:
    if not is_uri(location):
        write_json(location, obj)
        return
    fs, path = _filesystem(location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(json.dumps(obj, indent=2).encode("utf-8"))


def read_text_at(location: str) -> str | None:
    """The file's text, or None when there is no such file."""
    if not is_uri(location):
        path = Path(location)
        return path.read_text(encoding="utf-8") if path.exists() else None
    fs, path = _filesystem(location)
    if not fs.get_file_info(path).is_file:
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode("utf-8")


class LineLog:
    """A log file written a line at a time. Locally each line is appended and flushed to disk (a
    crash leaves at most the last line cut short). An object store has no append: there the lines
    are kept and `flush()` writes the whole object again, so its owner calls it at task ends, not per
    line (per line, a long run would rewrite ever larger objects)."""

    def __init__(self, location: str):
        self.location = location
        self._text = (read_text_at(location) or "") if is_uri(location) else None

    def add(self, line: str) -> None:
        if self._text is not None:
            self._text += line + "\n"
            return
        path = Path(self.location)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def flush(self) -> None:
        if self._text is None:
            return
        fs, path = _filesystem(self.location)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as out:
            out.write(self._text.encode("utf-8"))
