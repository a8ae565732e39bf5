"""bf16 autocast against fp32 on accuracy: the quickstart in-process under `train.precision=fp32`
and `=bf16`, over a few seeds, so that the precision's effect on accuracy can be told from the
seed-to-seed spread (the bf16 target asks for accuracy unchanged within run-to-run noise).

The runs use whatever device the quickstart picks. On a CPU without native bf16 the bf16 runs are
slower (emulated); autocast still casts the matmul inputs to bf16 there (CPU and CUDA autocast
differ in which other ops they cast).
"""
from __future__ import annotations

import statistics
from typing import Callable

from bench.perf.e2e import quickstart_wall

PRECISIONS = ("fp32", "bf16")
METRICS = ("avg_incremental_accuracy", "last_accuracy")


def run_part(seeds: tuple[int, ...], sets: tuple[str, ...], log: Callable[[str], None]) -> dict:
    runs = []
    for seed in seeds:
        for precision in PRECISIONS:
            log(f"  quickstart --in-process, {precision}, seed {seed}")
            r = quickstart_wall(True, sets=(f"train.precision={precision}", f"seed={seed}", *sets))
            if r["accuracy"] is None:
                raise RuntimeError(f"quickstart ({precision}, seed {seed}) wrote no results.json")
            runs.append({"precision": precision, "seed": seed, "wall_s": r["wall_s"], **r["accuracy"]})
            log(f"    avg {runs[-1]['avg_incremental_accuracy']:.2f}, last {runs[-1]['last_accuracy']:.2f}, "
                f"{r['wall_s']:.0f} s")
    command = " ".join(["python suite/run.py configs/quickstart.yaml --in-process --set train.precision=fp32|bf16",
                        "--set seed=SEED", *(f"--set {kv}" for kv in sets)])
    return {"command": command, "seeds": list(seeds), "runs": runs, "summary": summarise(runs)}


def summarise(runs: list[dict]) -> dict:
    """Per metric: each precision's mean and seed range, bf16 − fp32 (difference of means and per
    seed), and the run-to-run noise: the wider of the two seed ranges."""
    out = {}
    for metric in METRICS:
        by = {p: {r["seed"]: r[metric] for r in runs if r["precision"] == p} for p in PRECISIONS}
        stats = {p: {"mean": statistics.fmean(v.values()), "min": min(v.values()), "max": max(v.values())}
                 for p, v in by.items()}
        out[metric] = {**stats,
                       "difference": stats["bf16"]["mean"] - stats["fp32"]["mean"],
                       "paired": [by["bf16"][s] - by["fp32"][s] for s in sorted(by["fp32"]) if s in by["bf16"]],
                       "noise": max(s["max"] - s["min"] for s in stats.values()),
                       "seeds": len(by["fp32"])}
    return out
