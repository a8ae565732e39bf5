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
from bench.perf.markdown import num, part_section, table
from bench.perf.verdict import figures

PRECISIONS = ("fp32", "bf16")
NO_REPORT = "report.at_end=false"  # the runs' accuracy, not their reports
METRICS = ("avg_incremental_accuracy", "last_accuracy")


def run_part(seeds: tuple[int, ...], sets: tuple[str, ...], log: Callable[[str], None]) -> dict:
    runs = []
    for seed in seeds:
        for precision in PRECISIONS:
            log(f"  quickstart --in-process, {precision}, seed {seed}")
            r = quickstart_wall(True, sets=(f"train.precision={precision}", f"seed={seed}", NO_REPORT, *sets))
            if r["accuracy"] is None:
                raise RuntimeError(f"quickstart ({precision}, seed {seed}) wrote no results.json")
            runs.append({"precision": precision, "seed": seed, "wall_s": r["wall_s"], **r["accuracy"]})
            log(f"    avg {runs[-1]['avg_incremental_accuracy']:.2f}, last {runs[-1]['last_accuracy']:.2f}, "
                f"{r['wall_s']:.0f} s")
    command = " ".join(["python suite/run.py configs/quickstart.yaml --in-process --set train.precision=fp32|bf16",
                        "--set seed=SEED", f"--set {NO_REPORT}", *(f"--set {kv}" for kv in sets)])
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


def section(res: dict) -> list[str]:
    return part_section("## 8. bf16 against fp32: quickstart accuracy", res.get("accuracy"), _body, key="runs")


def _body(part: dict) -> list[str]:
    lines = [f"`{part['command']}`, seeds {', '.join(map(str, part['seeds']))}, in launch order; accuracies in %.", ""]
    lines += table(["seed", "precision", "avg incremental accuracy", "last accuracy", "wall (s)"],
                   [[str(r["seed"]), r["precision"], num(r["avg_incremental_accuracy"], 2), num(r["last_accuracy"], 2),
                     num(r["wall_s"])] for r in part["runs"]])
    lines.append("")
    for metric, label in (("avg_incremental_accuracy", "Average incremental accuracy"), ("last_accuracy", "Last accuracy")):
        m = part["summary"][metric]
        lines.append(f"- {label}: fp32 mean {m['fp32']['mean']:.2f}, bf16 mean {m['bf16']['mean']:.2f}; bf16 − fp32 "
                     f"{m['difference']:+.2f} points (per seed: {', '.join(f'{d:+.2f}' for d in m['paired'])}); "
                     f"seed range (run-to-run noise) {m['noise']:.2f}")
    return lines + [""]


def targets(results: dict) -> list[dict]:
    """bf16 leaves the quickstart's accuracy within run-to-run noise: for both the average incremental
    and the last accuracy, |mean bf16 − mean fp32| ≤ the wider of the two seed ranges."""
    summary = figures(results, "accuracy").get("summary")
    name, goal = "bf16 quickstart accuracy (bf16 − fp32, avg inc.)", "within run-to-run noise (seed range)"
    if not summary:
        return [{"name": name, "goal": goal, "value": None, "threshold": None, "met": None, "note": "not measured"}]
    metrics = {"avg inc.": summary["avg_incremental_accuracy"], "last": summary["last_accuracy"]}
    note = "; ".join(f"{label}: fp32 {m['fp32']['mean']:.2f} ({m['fp32']['min']:.2f}–{m['fp32']['max']:.2f}), "
                     f"bf16 {m['bf16']['mean']:.2f} ({m['bf16']['min']:.2f}–{m['bf16']['max']:.2f}), "
                     f"bf16 − fp32 {m['difference']:+.2f} points against a seed range of {m['noise']:.2f}"
                     for label, m in metrics.items())
    seeds = metrics["avg inc."]["seeds"]
    met = None if seeds < 2 else all(abs(m["difference"]) <= m["noise"] for m in metrics.values())
    if met is None:
        note += "; one seed: no run-to-run noise to compare with"
    return [{"name": name, "goal": goal, "value": metrics["avg inc."]["difference"], "threshold": None, "met": met,
             "note": f"{seeds} seeds; {note}"}]
