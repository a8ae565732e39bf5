"""Sweep packing: trials per hour of a small digits sweep run one trial at a time against several
at once, each the real command (`python suite/run.py --sweep FILE`) in a fresh process, Ray start,
the report and shutdown included.

On the CPU, the concurrent sweep gives each 1-worker trial `cores / concurrency` CPUs; on a GPU
host each trial gets `1 / concurrency` of the GPU. The sweep is quickstart's model and data with
`seed` as its axis, with fewer epochs so that Ray's per-trial start is part of what is measured.
Its target (GPUs only): 4 trials sharing a GPU at least 2.5 times the trials per hour of one.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.perf.e2e import BASE_ENV, REPO
from bench.perf.environ import child_env
from bench.perf.markdown import num, part_section, table
from bench.perf.verdict import figures, target


def sweep_spec(trials: int, concurrency: int, epochs: int, gpu: bool) -> dict:
    cores = os.cpu_count() or 1
    resources = {"ray.cpus_per_worker": max(cores // concurrency, 1) if not gpu else 1}
    if gpu:
        resources.update({"ray.use_gpu": True, "ray.gpus_per_worker": 1 / concurrency})
    return {
        "name": f"packing-{concurrency}",
        "base": ["configs/quickstart.yaml"],
        "set": {"train.epochs": epochs, "finetune.epochs": 1, **resources,
                "report.at_end": False},  # the trials' throughput, not the report's build
        "axes": {"seed": list(range(trials))},
        "max_concurrent_trials": concurrency,
    }


def sweep_wall(trials: int, concurrency: int, epochs: int, gpu: bool, timeout: float = 3600) -> dict:
    """Wall time of one whole sweep command; trials per hour from it."""
    spec = sweep_spec(trials, concurrency, epochs, gpu)
    with tempfile.TemporaryDirectory(prefix="perf-packing-") as tmp:
        path = Path(tmp) / "sweep.yaml"
        path.write_text(yaml.safe_dump(spec))
        cmd = [sys.executable, "suite/run.py", "--sweep", str(path), "--output-basedir", str(Path(tmp) / "runs")]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, env=child_env(BASE_ENV), capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"sweep of {concurrency} concurrent trial(s) failed (exit {done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-800:]}")
    return {"concurrency": concurrency, "trials": trials, "epochs": epochs, "set": spec["set"], "wall_s": wall,
            "trials_per_hour": trials * 3600 / wall}


def run_part(trials: int, epochs: int, concurrency: int, gpu: bool, log) -> dict:
    runs = []
    for c in (1, concurrency):
        log(f"  sweep of {trials} trials, {c} at a time")
        runs.append(sweep_wall(trials, c, epochs, gpu))
        log(f"    {runs[-1]['wall_s']:.0f} s, {runs[-1]['trials_per_hour']:.0f} trials/hour")
    return {"runs": runs, "device": "cuda" if gpu else "cpu",
            "ratio": runs[1]["trials_per_hour"] / runs[0]["trials_per_hour"]}


def section(res: dict) -> list[str]:
    return part_section("## 5. Sweep packing", res.get("sweep"), _body)


def _body(sweep: dict) -> list[str]:
    first = sweep["runs"][0]
    lines = [f"The real sweep command (`python suite/run.py --sweep FILE`, Ray start included) on quickstart's "
             f"model and data, axis `seed` ({first['trials']} trials), {first['epochs']} epochs per task and 1 "
             "finetuning epoch; one trial at a time against several at once (bench/perf/packing.py).", ""]
    lines += table(["trials at once", "resources per trial", "wall (s)", "trials/hour"],
                   [[str(r["concurrency"]), ", ".join(f"{k.split('.')[-1]} {v:g}" for k, v in r["set"].items()
                                                     if k.startswith("ray.") and not isinstance(v, bool)),
                     num(r["wall_s"]), num(r["trials_per_hour"])] for r in sweep["runs"]])
    return lines + ["", f"Trials per hour, {sweep['runs'][-1]['concurrency']} at once ÷ 1 at a time: "
                        f"{sweep['ratio']:.2f}×", ""]


def targets(results: dict) -> list[dict]:
    sweep = figures(results, "sweep")
    if not sweep:
        return []
    c = sweep["runs"][-1]["concurrency"]
    gpu = sweep["device"] == "cuda"
    return [target(f"sweep packing, {c} concurrent trials / 1", "≥ 2.5× (4 trials sharing a GPU)" if gpu else
                   "measured (no target on CPUs)", sweep["ratio"], 2.5,
                   f"{sweep['runs'][0]['trials']} trials; walls " +
                   " / ".join(f"{r['wall_s']:.0f} s" for r in sweep["runs"]), applicable=gpu)]
