"""The issue's targets, each judged by the part that measures it: met, not met, or not applicable (why)."""
from __future__ import annotations

from bench.perf import accuracy, compiled, e2e, loader, packing, ray_overhead, steps

# in the order of perf.md's targets table
JUDGES = (steps, accuracy, compiled, ray_overhead, loader, packing, e2e)


def judge(results: dict) -> list[dict]:
    return [t for part in JUDGES for t in part.targets(results)]
