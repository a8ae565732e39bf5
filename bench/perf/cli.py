"""`python -m bench [--quick] [--out DIR] [--device cpu|cuda] [--skip PART,...]`.

Runs the parts in order (matmul ceiling, training steps, torch.compile, Ray Train overhead, OpenMP
contention, data pipeline, sweep packing, end to end, allocator, bf16 accuracy) and writes
DIR/perf.json and DIR/perf.md. A part that fails is recorded under "errors" and the others still
run; the exit code is then 1. Where Ray is not installed (a GPU machine with torch alone), the
parts that start it are skipped and say so.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys
import time
import traceback
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def parse(argv):
    from bench.perf.settings import PARTS

    p = argparse.ArgumentParser(prog="python -m bench", description="Speed benchmarks of the suite.")
    p.add_argument("--quick", action="store_true", help="small batch, few repeats, fewer cases (minutes)")
    p.add_argument("--out", default="reports/perf", help="output directory (default: reports/perf)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the steps run")
    p.add_argument("--skip", default="", help=f"comma-separated parts to skip: {', '.join(PARTS)}")
    p.add_argument("--note", default="", help="a line for perf.md (e.g. 'machine shared with a test run')")
    p.add_argument("--keys", default="", help="daformer_m key counts to measure, e.g. 10,50 (default: the mode's)")
    args = p.parse_args(argv)
    try:
        args.keys = tuple(int(k) for k in args.keys.split(",") if k.strip())
    except ValueError:
        p.error(f"--keys: expected comma-separated integers, got {args.keys!r}")
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(PARTS)
    if unknown:
        p.error(f"--skip: unknown part(s) {', '.join(sorted(unknown))}; expected {', '.join(PARTS)}")
    return args


def log(msg: str) -> None:
    print(f"[perf {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from bench.perf import machine, report, targets
    from bench.perf.settings import settings_for

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device here", file=sys.stderr)
        return 2
    s = settings_for(args.quick, device.type == "cuda")
    if args.keys:
        s = replace(s, keys=args.keys)
    skip = {name: f"skipped (--skip {name})" for name in args.skip}
    if device.type == "cuda":  # the Ray, loader, end-to-end and allocator parts are about the CPU host
        # (contention stays: on an idle many-core host it is the controlled version of the Ray finding)
        skip.update({name: "skipped on this device" for name in ("ray", "loader", "e2e", "allocator") if name not in skip})
    if importlib.util.find_spec("ray") is None:  # e.g. a GPU machine with torch but not the suite's requirements
        skip.update({name: "skipped: Ray is not installed here" for name in ("ray", "sweep", "e2e") if name not in skip})
    if importlib.util.find_spec("sklearn") is None:  # it ships the quickstart's digits
        skip.setdefault("accuracy", "skipped: scikit-learn (the quickstart's digits) is not installed here")
    start = time.perf_counter()
    from bench.perf.environ import prefix

    res = {"command": prefix() + "python -m bench " + " ".join(shlex.quote(a) for a in argv),
           "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "quick": args.quick, "note": args.note, "machine": machine.describe(device),
           "settings": {**s.__dict__, "skipped": sorted(skip)}, "errors": {}}

    def part(name, fn):
        if name in skip:
            res[name] = skip[name]
            return
        log(f"part {name}")
        try:
            res[name] = fn()
        except Exception as e:  # recorded; the other parts still run
            res[name] = None
            res["errors"][name] = f"{type(e).__name__}: {e}"
            log(f"part {name} failed:\n{traceback.format_exc()}")

    from bench.perf import (accuracy, allocator, compiled, contention, e2e, loader, matmul, packing, ray_overhead,
                            steps)

    part("matmul", lambda: matmul.run_part(s, device, skip, log))
    peaks = {k: v["gflops"]["median"] for k, v in (res.get("matmul") or {}).items()} \
        if isinstance(res.get("matmul"), dict) else {}
    part("step", lambda: steps.run_part(s, device, peaks, res, skip, log))
    part("compile", lambda: compiled.run_part(s, device, peaks, log))
    part("ray", lambda: ray_overhead.run_part(s, log))
    part("contention", lambda: contention.run_part(s, log))
    part("loader", lambda: loader.run_part(s, res, log))
    part("sweep", lambda: packing.run_part(s.sweep_trials, s.sweep_epochs, 4 if device.type == "cuda" else 2,
                                           device.type == "cuda", log))
    part("e2e", lambda: e2e.run_part(s, log))
    part("allocator", lambda: allocator.run_part(s))
    part("accuracy", lambda: accuracy.run_part(s.accuracy_seeds, s.accuracy_sets, log))

    res["elapsed_s"] = time.perf_counter() - start
    res["load_average_at_end"] = machine.load_average()
    res["targets"] = targets.judge(res)
    json_path, md_path = report.write(REPO / args.out if not Path(args.out).is_absolute() else Path(args.out), res)
    log(f"wrote {json_path} and {md_path}")
    return 1 if res["errors"] else 0

