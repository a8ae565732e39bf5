"""`python -m bench.gpu_ray.probe --out FILE.json ...`: the torch side of the GPU-through-Ray report.

In one process: the machine, the largest batch whose training step fits on the GPU, the bare step
rate (bench/perf/step.py's `Step`: forward + backward of the CIFAR-preset daformer_m after k tasks,
no optimiser, no loader) for each case asked, and the input pipeline alone
(bench/perf/loader.py's `loader_rate`). FILE is rewritten after each section, so a probe stopped
at its budget keeps what it had measured.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
from pathlib import Path

import torch

from bench.perf.loader import loader_rate
from bench.perf.machine import describe
from bench.perf.step import Case, Step
from bench.perf.timing import rates, summary, time_calls

MEMORY_SHARE = 0.8  # of the GPU's memory a batch may plan for: the run also holds a teacher, ASAM's
# perturbation, AdamW's state and the evaluation batch beside the step's own peak


def _write(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def _peak_bytes(case: Case, device: torch.device) -> int:
    step = Step(case, device)
    step()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    del step
    torch.cuda.empty_cache()
    return peak


def max_batch(device: torch.device, keys: int, limit: int) -> dict:
    """The largest power-of-two batch (at most `limit`) whose fp32 step at `keys` keys fits in
    MEMORY_SHARE of the GPU: peak memory at batches 128 and 256 extrapolated linearly, then a step
    at that batch run to confirm it (halved on out-of-memory). bf16 autocast needs less."""
    peaks = {b: _peak_bytes(Case("daformer_m", keys, batch=b), device) for b in (128, 256)}
    per_image = (peaks[256] - peaks[128]) / 128
    fixed = peaks[128] - 128 * per_image
    total = torch.cuda.get_device_properties(device).total_memory
    fits = int((MEMORY_SHARE * total - fixed) / per_image)
    batch = min(2 ** int(math.log2(max(fits, 1))), limit)
    while batch >= 128:
        try:
            _peak_bytes(Case("daformer_m", keys, batch=batch), device)
            break
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            batch //= 2
    return {"keys": keys, "dtype": "fp32", "peak_bytes": peaks, "per_image_bytes": per_image, "fixed_bytes": fixed,
            "total_bytes": total, "memory_share": MEMORY_SHARE, "extrapolated_fit": fits, "limit": limit,
            "batch": batch}


def step_rate(case: Case, device: torch.device, repeats: int, warmup: int, inner: int, compiled: bool) -> dict:
    step = Step(case, device, compiled=compiled)
    seconds = time_calls(step, repeats, warmup=warmup, device=device, inner=inner)
    del step
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"keys": case.tasks, "dtype": case.dtype, "batch": case.batch, "compiled": compiled, "name": case.name,
            "repeats": repeats, "inner": inner, "warmup": warmup, "step_s": summary(seconds),
            "images_per_s": summary(rates(seconds, case.batch))}


def parse_cases(text: str) -> list[tuple[int, str, str]]:
    """`KEYS:DTYPE:BATCH,...`, e.g. 1:fp32:128,2:bf16:max; BATCH `max` is the probed largest batch."""
    return [(int(keys), dtype, batch) for keys, dtype, batch in
            (item.split(":") for item in text.split(",") if item)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_ray.probe", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    p.add_argument("--probe-limit", type=int, default=0, help="probe the largest batch up to this (cuda; 0: no)")
    p.add_argument("--large-cap", type=int, default=1024, help="the batch 'large': the probed largest, at most this")
    p.add_argument("--steps", default="", help="step cases KEYS:DTYPE:BATCH,... (BATCH may be 'large' or 'max')")
    p.add_argument("--compiled", action="store_true", help="the step cases under torch.compile")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--inner", type=int, default=5)
    p.add_argument("--loader-workers", default="", help="data.num_workers values of the loader, e.g. 0,2,4")
    p.add_argument("--loader-batch", type=int, default=128)
    p.add_argument("--loader-batches", type=int, default=10)
    p.add_argument("--loader-repeats", type=int, default=3)
    p.add_argument("--loader-per-class", type=int, default=500)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    doc = {"machine": describe(device), "steps": [], "loader": [], "errors": {}}
    _write(args.out, doc)

    def section(name, fn):
        try:
            fn()
        except Exception as e:  # recorded; the other sections still run
            doc["errors"][name] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        _write(args.out, doc)

    if args.probe_limit and device.type == "cuda":
        section("max_batch", lambda: doc.update(max_batch=max_batch(device, 2, args.probe_limit)))
    largest = (doc.get("max_batch") or {}).get("batch")
    doc["large_batch"] = min(args.large_cap, largest) if largest else args.large_cap
    _write(args.out, doc)
    named = {"large": doc["large_batch"], "max": largest}
    done = set()

    def steps(cases):
        for keys, dtype, batch in cases:
            size = named[batch] if batch in named else int(batch)
            if size is None or (keys, dtype, size) in done:
                continue  # no probe, or a case already measured (e.g. the largest batch is the large one)
            done.add((keys, dtype, size))
            case = Case("daformer_m", keys, dtype=dtype, batch=size)
            # a step of several thousand images takes seconds: fewer samples, one step each
            repeats, warmup, inner = (min(args.repeats, 2), 1, 1) if size > 4096 else \
                (args.repeats, args.warmup, args.inner)
            section(f"step {case.name}", lambda c=case, r=repeats, w=warmup, i=inner: doc["steps"].append(
                step_rate(c, device, r, w, i, args.compiled)))

    cases = parse_cases(args.steps)
    steps([c for c in cases if c[2] != "max"])
    for workers in (int(w) for w in filter(None, args.loader_workers.split(","))):
        section(f"loader {workers}", lambda w=workers: doc["loader"].append(
            loader_rate(w, args.loader_batch, args.loader_batches, args.loader_repeats, args.loader_per_class)))
    steps([c for c in cases if c[2] == "max"])  # the slowest last: a probe stopped at its budget keeps the rest
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
