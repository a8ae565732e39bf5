"""torch.compile on and off: the same step eager and compiled (as `train.compile` does), interleaved.

The first compiled call compiles; its seconds are reported apart as the cost a run pays once per
model shape (each task that adds a key or a head recompiles). Inductor keeps what it compiled in an
on-disk cache: the part compiles into an empty one, as a first run on a machine does.
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Callable
from unittest import mock

import torch

from suite.perf.step import Case, Step
from suite.perf.timing import rates, summary, sync, time_calls


def compare(case: Case, device: torch.device, repeats: int, warmup: int, inner: int) -> dict:
    eager, compiled = Step(case, device), Step(case, device, compiled=True)
    start = time.perf_counter()
    compiled()
    sync(device)
    compile_s = time.perf_counter() - start
    for step in (eager, compiled):
        time_calls(step, warmup, warmup=0, device=device)
    seconds = {"eager": [], "compiled": []}
    for _ in range(repeats):
        for name, step in (("eager", eager), ("compiled", compiled)):
            seconds[name] += time_calls(step, 1, warmup=0, device=device, inner=inner)
    ips = {name: summary(rates(s, case.batch)) for name, s in seconds.items()}
    paired = summary([c / e for c, e in zip(ips["compiled"]["samples"], ips["eager"]["samples"])])
    return {"case": case.name, "first_call_s": compile_s, "eager": ips["eager"], "compiled": ips["compiled"],
            "paired": paired}


def run_part(plan: list[tuple[Case, int, int]], device: torch.device, warmup: int,
             log: Callable[[str], None]) -> dict:
    """`plan`: (case, repeats, steps per sample) for each case."""
    rows = []
    for case, repeats, inner in plan:
        log(f"compile: {case.name} eager | compiled ({repeats} repeats, interleaved)")
        with tempfile.TemporaryDirectory(prefix="perf-inductor-") as cache, \
                mock.patch.dict(os.environ, {"TORCHINDUCTOR_CACHE_DIR": cache}):
            rows.append(compare(case, device, repeats, warmup, inner))
        r = rows[-1]
        log(f"  first compiled call {r['first_call_s']:.1f} s; compiled / eager {r['paired']['median']:.2f}x")
    return {"rows": rows}
