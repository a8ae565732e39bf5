"""Environment variables that change the figures, and clean environments for child processes.

OpenMP's wait policy and glibc's malloc settings are read once, when a process starts (libgomp
when torch is imported): comparisons of them run in fresh processes whose environment is this
one's with the variables under test removed, then the variant's added.

The tuned malloc settings are the product's (the Ray workers' WORKER_ENV), never copied here.
"""
from __future__ import annotations

import os

# The one import of the product's cluster module in bench/: the benchmark starts Ray as the suite does.
from suite.run.cluster import WORKER_ENV, start_local_ray

THREAD_POLICY = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
TUNED_MALLOC = {k: v for k, v in WORKER_ENV.items() if k.startswith("MALLOC_")}
MALLOC = (*TUNED_MALLOC, "MALLOC_ARENA_MAX")
RECORDED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", *THREAD_POLICY, *MALLOC)
__all__ = ["WORKER_ENV", "start_local_ray", "THREAD_POLICY", "TUNED_MALLOC", "MALLOC", "RECORDED", "child_env",
           "recorded", "prefix"]


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
