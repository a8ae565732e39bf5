"""Repeat a measurement and summarise it: median, min, max and relative spread, samples kept."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Optional

import torch
from torch.utils import benchmark


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summary(samples: list[float]) -> dict:
    """{'median', 'min', 'max', 'spread' ((max - min) / median), 'n', 'samples'}."""
    samples = [float(s) for s in samples]
    med = statistics.median(samples)
    lo, hi = min(samples), max(samples)
    return {"median": med, "min": lo, "max": hi, "spread": (hi - lo) / med if med else float("nan"),
            "n": len(samples), "samples": samples}


def op_seconds(fn: Callable[[], object], repeats: int, inner: int = 1) -> list[float]:
    """Seconds per call of `fn`, `repeats` samples (each the mean of `inner` calls), by
    torch.utils.benchmark.Timer: it runs at least two untimed calls before each sample and synchronises the
    accelerator. At torch's intra-op threads as they are (Timer's default is one thread)."""
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return [timer.timeit(inner).mean for _ in range(repeats)]


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 1, device: Optional[torch.device] = None,
               inner: int = 1) -> list[float]:
    """Seconds per call of `fn`, `repeats` samples (each the mean of `inner` calls) after `warmup` calls.

    For training steps, hand-rolled rather than `op_seconds`: Timer runs untimed calls before every
    sample, and step samples are taken one at a time, interleaved with other implementations and
    matmul bursts, at up to minutes a step on a small CPU: those calls would double or triple a
    part's time and move the interleaved samples apart."""
    device = device or torch.device("cpu")
    for _ in range(warmup):
        fn()
    sync(device)
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        sync(device)
        out.append((time.perf_counter() - start) / inner)
    return out


def rates(seconds: list[float], work: float) -> list[float]:
    """Work per second for each timed sample (e.g. images per step / step seconds)."""
    return [work / s for s in seconds]
