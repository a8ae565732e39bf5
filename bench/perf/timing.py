"""Repeat a measurement and summarise it: median, min, max and relative spread, samples kept."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Optional

import torch


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


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 1, device: Optional[torch.device] = None,
               inner: int = 1) -> list[float]:
    """Seconds per call of `fn`, `repeats` samples (each the mean of `inner` calls) after `warmup` calls."""
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
