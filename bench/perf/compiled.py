"""torch.compile on and off: the same step eager and compiled (as `train.compile` does), interleaved.

The first compiled call compiles; its seconds are reported apart as the cost a run pays once per
model shape (each task that adds a key or a head recompiles). Inductor keeps what it compiled in an
on-disk cache: the part compiles into an empty one, as a first run on a machine does.

Its target, the GPU's bf16 utilisation, takes the best bf16 step measured: eager (the step part) or compiled.
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Callable, Optional
from unittest import mock

import torch

from bench.perf.markdown import num, span, table
from bench.perf.step import Case, Step, count_flops
from bench.perf.timing import rates, summary, sync, time_calls
from bench.perf.verdict import figures, target


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


def run_part(s, device: torch.device, peaks: dict[str, float], log: Callable[[str], None]) -> dict:
    """The quickstart step; in the full modes also the CIFAR 10-key step. `peaks`: matmul GFLOP/s by dtype."""
    plan = [(Case("daformer_m", s.compile_keys, batch=16, preset="quickstart"), s.compile_repeats, s.compile_inner)]
    if s.compile_cifar:
        plan.append((Case("daformer_m", 10, dtype=s.compile_dtype, batch=s.large_batch or s.batch), s.repeats, s.inner))
    return run_plan(plan, device, s.warmup, peaks, log)


def run_plan(plan: list[tuple[Case, int, int]], device: torch.device, warmup: int, peaks: dict[str, float],
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


def section(res: dict) -> list[str]:
    part = res.get("compile")
    lines = ["### torch.compile on and off (`train.compile`)", ""]
    if not isinstance(part, dict):
        return lines + [f"Not measured: {part or 'failed (see Errors)'}", ""]
    lines += ["The same step eager and compiled (inductor, `fallback_random`), samples interleaved. "
              "'first call' = the compiled step's first call, compiling into an empty inductor cache: a "
              "run pays it once per model shape (every task that adds a key or a head recompiles).", ""]
    lines += table(["case", "eager img/s", "compiled img/s", "compiled / eager (paired)", "first call (s)",
                    "MFU eager", "MFU compiled"],
                   [[r["case"], f"{num(r['eager']['median'])} ({span(r['eager'])})",
                     f"{num(r['compiled']['median'])} ({span(r['compiled'])})",
                     f"{r['paired']['median']:.2f}× ({r['paired']['min']:.2f}–{r['paired']['max']:.2f})",
                     num(r["first_call_s"]), num(r.get("mfu_eager"), 3), num(r.get("mfu_compiled"), 3)]
                    for r in part["rows"]])
    return lines + [""]


def targets(results: dict) -> list[dict]:
    """The best bf16 utilisation measured on a GPU: any bf16 step, eager (step part) or compiled."""
    machine = results["machine"]
    step_rows = figures(results, "step").get("rows", [])
    compile_rows = figures(results, "compile").get("rows", [])
    name, goal = "GPU bf16 utilisation (of the bf16 matmul rate)", "≥ 0.4 (GPUs only)"
    if not machine["device"].startswith("cuda"):
        return [target(name, goal, None, 0.4, "not applicable: the steps ran on the CPU", applicable=False)]
    candidates = [(r["mfu"], f"{r['name']}, eager") for r in step_rows if r["dtype"] == "bf16" and r.get("mfu")]
    candidates += [(r["mfu_compiled"], f"{r['case']}, compiled") for r in compile_rows
                   if r.get("dtype") == "bf16" and r.get("mfu_compiled")]
    if not candidates:
        return [target(name, goal, None, 0.4, "no bf16 step measured")]
    value, where = max(candidates)
    others = ", ".join(f"{w}: {v:.2f}" for v, w in sorted(candidates, reverse=True)[1:4])
    return [target(name, goal, value, 0.4, f"best: {where}" + (f"; next: {others}" if others else ""))]
