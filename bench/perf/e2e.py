"""End to end: wall time of the quickstart (`python suite/run.py configs/quickstart.yaml`), Ray start
included, and the same with `--in-process`; each also with extra environment variables (the fix
the Ray investigation points to) so the gain is measured on the real command. The default runs
get this environment without the OpenMP wait-policy and malloc variables: as a user runs it.

The run's own log lines are timed as they arrive, to split the wall time: launch to the first
epoch line (imports, data, Ray and the trainer starting, the first epoch), the epochs' img/s as
the learner reports them, and the last accuracy line to exit (report, summary, Ray shutting down).
Its target: the quickstart through Ray in at most 90 s.
"""
from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.perf.environ import MALLOC, THREAD_POLICY, child_env
from bench.perf.markdown import num, part_section, table
from bench.perf.verdict import figures, target

REPO = Path(__file__).resolve().parents[2]
BASE_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1"}
# (in-process, extra environment of the command). OMP_WAIT_POLICY=PASSIVE gave nothing
# (bench/experiments/README.md#e2e) and RAY_worker_niceness=0 lost (196 s against 145 s through Ray on
# 2026-11-26, no report kept): add such variants here to measure them again.
VARIANTS = ((False, {}), (True, {}))
EPOCH = re.compile(r"task \d+/\d+ (train|finetune)\s+epoch \d+/\d+ .*?([\d,]+) img/s")
ACCURACY = re.compile(r"task (\d+)/(\d+) accuracy")


def quickstart_command(output_basedir: str, in_process: bool, sets: tuple[str, ...] = ()) -> list[str]:
    cmd = [sys.executable, "suite/run.py", "configs/quickstart.yaml", "--output-basedir", output_basedir]
    return cmd + (["--in-process"] if in_process else []) + [a for kv in sets for a in ("--set", kv)]


def quickstart_wall(in_process: bool, env: dict | None = None, timeout: float = 1800, sets: tuple[str, ...] = ()) -> dict:
    """Seconds from launch to exit of one quickstart run (config overrides `sets`) in a fresh
    temporary output directory, and the accuracy the run wrote."""
    with tempfile.TemporaryDirectory(prefix="perf-e2e-") as tmp:
        cmd = quickstart_command(tmp, in_process, sets)
        lines: list[tuple[float, str]] = []
        # timed by hand: one child process from launch to exit, and when each of its lines arrives
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=child_env({**BASE_ENV, **(env or {})}, unset=THREAD_POLICY + MALLOC),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for line in proc.stdout:
                lines.append((time.perf_counter() - start, line.rstrip()))
                if time.perf_counter() - start > timeout:
                    raise TimeoutError(f"quickstart ran past {timeout} s")
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        wall = time.perf_counter() - start
        results = [json.loads(f.read_text()) for f in Path(tmp).glob("*/results.json")]
    if proc.returncode != 0:
        tail = "\n".join(text for _, text in lines[-15:])
        raise RuntimeError(f"quickstart failed (exit {proc.returncode}): {tail[-1500:]}")
    shown = " ".join(["python", *cmd[1:3], "--output-basedir", "<tmp>", *cmd[5:]])
    accuracy = {k: results[0][k] for k in ("avg_incremental_accuracy", "last_accuracy")} if len(results) == 1 else None
    return {"command": shown, "in_process": in_process, "env": env or {}, "wall_s": wall, "accuracy": accuracy,
            **timeline(lines)}


def timeline(lines: list[tuple[float, str]]) -> dict:
    epochs = [(t, m.group(1), float(m.group(2).replace(",", ""))) for t, text in lines if (m := EPOCH.search(text))]
    accuracy = [t for t, text in lines if ACCURACY.search(text)]
    out = {"first_epoch_line_s": epochs[0][0] if epochs else None,
           "last_accuracy_line_s": accuracy[-1] if accuracy else None}
    for phase in ("train", "finetune"):
        rates = [r for _, p, r in epochs if p == phase]
        out[f"{phase}_images_per_s_median"] = statistics.median(rates) if rates else None
    return out


def run_part(s, log) -> dict:
    runs = []
    for _ in range(s.e2e_repeats):
        for in_process, env in VARIANTS:
            log(f"  quickstart {'--in-process' if in_process else 'on Ray'} {env or ''}")
            runs.append(quickstart_wall(in_process, env))
            log(f"    {runs[-1]['wall_s']:.1f} s")
    return {"runs": runs}


def section(res: dict) -> list[str]:
    return part_section("## 6. End to end: quickstart", res.get("e2e"), _body, key="runs")


def _body(e2e: dict) -> list[str]:
    lines = ["Each row one run, in launch order. 'first epoch line': seconds from launch until the learner's "
             "first epoch line arrives (imports, data, Ray and the trainer starting, one epoch); 'after last "
             "accuracy': seconds from the last task's accuracy line to exit (report, summary, shutdown); "
             "img/s: medians of the learner's own per-epoch figures.", ""]
    lines += table(["command", "extra environment", "wall (s)", "first epoch line (s)", "train img/s",
                    "finetune img/s", "after last accuracy (s)"],
                   [[f"`{r['command']}`", " ".join(f"{k}={v}" for k, v in r["env"].items()) or "—", num(r["wall_s"]),
                     num(r.get("first_epoch_line_s")), num(r.get("train_images_per_s_median"), 0),
                     num(r.get("finetune_images_per_s_median"), 0),
                     num(r["wall_s"] - r["last_accuracy_line_s"]) if r.get("last_accuracy_line_s") else "—"]
                    for r in e2e["runs"]])
    by = {}
    for r in e2e["runs"]:
        by.setdefault((r["in_process"], tuple(sorted(r["env"].items()))), []).append(r["wall_s"])
    lines += ["", "Medians: " + "; ".join(
        f"{'--in-process' if k[0] else 'Ray'}{' ' + ' '.join(f'{a}={b}' for a, b in k[1]) if k[1] else ''}: "
        f"{statistics.median(v):.1f} s (n={len(v)})" for k, v in by.items())]
    return lines + [""]


def targets(results: dict) -> list[dict]:
    e2e = figures(results, "e2e")
    ray_runs = [r["wall_s"] for r in e2e.get("runs", []) if not r["in_process"] and not r["env"]]
    if not ray_runs:
        return [{"name": "quickstart wall time (Ray)", "goal": "≤ 90 s", "value": None, "threshold": 90,
                 "met": None, "note": "not measured in this mode"}]
    median = statistics.median(ray_runs)
    t = target("quickstart wall time (Ray)", "≤ 90 s", median, 0.0, "")
    t["met"] = bool(median <= 90)
    return [t]
