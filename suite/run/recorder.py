"""Writes a run's results.json after every task and at the end (rank 0 only), with its provenance."""
from __future__ import annotations

import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from suite.config import Config
from suite import schema
from suite.run.storage import join, write_json_at

REPO = Path(__file__).resolve().parents[2]


def _version(package: str):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def provenance(cfg: Config, world_size: int, device: str) -> dict:
    return {
        "python": platform.python_version(),
        **{pkg: _version(pkg) for pkg in ("torch", "ray", "timm", "continuum")},
        "host": socket.gethostname(),
        "world_size": world_size,
        "device": device,
        "seed": cfg.seed,
        "git_commit": _git_commit(),
    }


class RunRecorder:
    """The learner knows nothing of files; the recorder knows nothing of Ray."""

    def __init__(self, cfg: Config, scenario, location: str, world_size: int, device: str):
        self.cfg, self.scenario, self.path = cfg, scenario, join(location, schema.RESULTS)
        self.prov = provenance(cfg, world_size, device)

    def write(self, learner, status: str, error: str | None = None) -> None:
        write_json_at(self.path, schema.document(self.cfg, self.scenario, learner.history, status, self.prov, error))
