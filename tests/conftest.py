"""Shared test setup: run the CLI as users do, in a subprocess."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# A run small enough for a unit test: 6 synthetic classes, 3 tasks, a one-block model.
TINY = ["data.name=synthetic", "data.num_classes=6", "data.image_size=8", "data.train_per_class=20",
        "data.test_per_class=5", "scenario.increment=2", "model.embed_dim=16", "model.depth=1",
        "model.num_heads=2", "model.patch_size=4", "train.epochs=1", "train.batch_size=16",
        "finetune.epochs=1", "memory.size=12", "train.precision=fp32"]


def run_cli(*args, cwd=REPO, timeout=600, env=None):
    """`python suite/run.py ARGS` -> CompletedProcess (text)."""
    full_env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    return subprocess.run([sys.executable, str(REPO / "suite" / "run.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one intra-op thread is as fast and far steadier on a shared, busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
