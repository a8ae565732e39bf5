"""torch.compile on and off: the same step eager and compiled (as `train.compile` does), interleaved.

The first compiled call compiles; its seconds are reported apart as the cost a run pays once per
model shape (each task that adds a key or a head recompiles). Inductor keeps what it compiled in an
on-disk cache: the part compiles into an empty one, as a first run on a machine does.
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Callable, Optional
from unittest import mock

import torch

from bench.perf.step import Case, Step, count_flops
from bench.perf.timing import rates, summary, sync, time_calls


def compare(case: Case, device: torch.device, repeats: int, warmup: int, inner: int,
            peak_gflops: Optional[float] = None) -> dict:
    """`peak_gflops`: the matmul rate of the case's dtype, for the compiled step's MFU."""
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
    eager = compiled = None  # frees both models before the FLOP count builds another
    flops_per_image = count_flops(case, device) / case.batch
    mfu = {name: flops_per_image * ips[name]["median"] / 1e9 / peak_gflops if peak_gflops else None for name in ips}
    return {"case": case.name, "dtype": case.dtype, "batch": case.batch, "first_call_s": compile_s,
            "eager": ips["eager"], "compiled": ips["compiled"], "paired": paired,
            "flops_per_image": flops_per_image, "mfu_eager": mfu["eager"], "mfu_compiled": mfu["compiled"],
            "mfu_peak_gflops": peak_gflops}


def run_part(plan: list[tuple[Case, int, int]], device: torch.device, warmup: int, peaks: dict[str, float],
             log: Callable[[str], None]) -> dict:
    """`plan`: (case, repeats, steps per sample) for each case; `peaks`: matmul GFLOP/s by dtype."""
    rows = []
    for case, repeats, inner in plan:
        log(f"compile: {case.name} eager | compiled ({repeats} repeats, interleaved)")
        with tempfile.TemporaryDirectory(prefix="perf-inductor-") as cache, \
                mock.patch.dict(os.environ, {"TORCHINDUCTOR_CACHE_DIR": cache}):
            rows.append(compare(case, device, repeats, warmup, inner, peaks.get(case.dtype)))
        r = rows[-1]
        log(f"  first compiled call {r['first_call_s']:.1f} s; compiled / eager {r['paired']['median']:.2f}x; "
            f"MFU eager {r['mfu_eager'] and round(r['mfu_eager'], 3)}, compiled {r['mfu_compiled'] and round(r['mfu_compiled'], 3)}")
    return {"rows": rows}
