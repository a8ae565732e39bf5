"""Environment variables that change the figures, and clean environments for child processes.

OpenMP's wait policy and glibc's malloc settings are read once, when a process starts (libgomp
when torch is imported): comparisons of them run in fresh processes whose environment is this
one's with the variables under test removed, then the variant's added.
"""
from __future__ import annotations

import os

THREAD_POLICY = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
MALLOC = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX")
RECORDED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", *THREAD_POLICY, *MALLOC)


def child_env(extra: dict | None = None, unset: tuple[str, ...] = ()) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(extra or {})
    return env


def recorded() -> dict:
    """The variables of interest set in this process."""
    return {k: os.environ[k] for k in RECORDED if k in os.environ}


def prefix() -> str:
    """`K=V ...` to put before a command line so that it reproduces this environment's settings."""
    return "".join(f"{k}={v} " for k, v in recorded().items())
