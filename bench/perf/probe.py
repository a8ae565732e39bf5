"""Time one step case where it runs (this thread, a fresh thread, a Ray worker) and say how.

The context recorded with every probe (thread, intra-op threads, niceness, the environment
variables that steer OpenMP and glibc malloc) is what the Ray-overhead investigation compares.
"""
from __future__ import annotations

import os
import threading
from typing import Optional

import torch

from bench.perf.environ import recorded
from bench.perf.step import Case, Step
from bench.perf.timing import rates, summary, time_calls


def context() -> dict:
    return {
        "thread": threading.current_thread().name,
        "main_thread": threading.current_thread() is threading.main_thread(),
        "torch_threads": torch.get_num_threads(),
        "niceness": os.getpriority(os.PRIO_PROCESS, 0),
        "pid": os.getpid(),
        "env": recorded(),
        "python_threads": threading.active_count(),
    }


def probe(case: Case, repeats: int, warmup: int, inner: int = 1, threads: Optional[int] = None,
          device: Optional[torch.device] = None) -> dict:
    """images/s of `case` here and now; `threads` sets torch's intra-op threads first (in this thread)."""
    device = device or torch.device("cpu")
    if threads:
        torch.set_num_threads(threads)
    step = Step(case, device)
    seconds = time_calls(step, repeats, warmup=warmup, device=device, inner=inner)
    return {"case": case.name, "images_per_s": summary(rates(seconds, case.batch)),
            "step_s": summary(seconds), "context": context()}


def probe_in_thread(*args, **kwargs) -> dict:
    """`probe` run in a new (non-main) Python thread, as Ray Train V2 runs the user function."""
    box: dict = {}

    def target():
        try:
            box["result"] = probe(*args, **kwargs)
        except BaseException as e:  # re-raised in the caller
            box["error"] = e

    worker = threading.Thread(target=target, name="ProbeThread")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
