"""One JSON record per run in OUT/runs/: a rerun skips what is finished with the same recipe."""
from __future__ import annotations

import concurrent.futures
import json
import os
from pathlib import Path
from typing import Callable


def key(method: str, impl: str, seed: int) -> str:
    return f"{method.lower()}-{impl}-seed{seed}"


def path(out: Path, run_key: str) -> Path:
    return out / "runs" / f"{run_key}.json"


def load(out: Path, run_key: str) -> dict | None:
    p = path(out, run_key)
    return json.loads(p.read_text()) if p.is_file() else None


def finished(record: dict | None, recipe: dict) -> bool:
    return bool(record) and record.get("status") == "finished" and record.get("recipe") == recipe


def save(out: Path, record: dict) -> None:
    p = path(out, record["key"])
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, p)


def all_records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]


def run_pending(out: Path, jobs: int, pending: list[Callable[[], dict]]) -> None:
    """Run each pending job (a function returning a record), `jobs` at a time, saving each record as it lands."""
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        for run in concurrent.futures.as_completed([pool.submit(job) for job in pending]):
            save(out, run.result())
