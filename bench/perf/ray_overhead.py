"""Part 3, Ray Train overhead: the same step in a 1-worker `TorchTrainer` (CPU, all cores) against in-process.

Every measurement runs in a fresh process: `bench.perf.ray_child` starts a private local Ray
exactly as `suite.run.cluster.init_ray` does (dashboard, the suite's worker environment),
runs one `TorchTrainer` whose worker times the step in its TrainingThread, and prints the probe.
Variants add what the investigation found to matter (worker niceness, OpenMP's wait policy,
intra-op threads); the in-process side runs through `bench.perf.child` (main thread and a non-main
thread). Its targets: TorchTrainer ÷ in-process, on the CIFAR and on the quickstart-size step.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from bench.perf.environ import MALLOC, THREAD_POLICY, WORKER_ENV, child_env
from bench.perf.markdown import num, part_section, span, table
from bench.perf.ray_child import MARK, VARIANTS
from bench.perf.verdict import figures, target

REPO = Path(__file__).resolve().parents[2]


def ray_probe(variant: str, case, repeats: int, warmup: int = 1, inner: int = 1, timeout: float = 3600) -> dict:
    """`ray_child.run_variant` in a fresh interpreter (a clean Ray and environment every time)."""
    return _in_fresh_process([variant, json.dumps(asdict(case)), "--repeats", str(repeats), "--warmup", str(warmup),
                              "--inner", str(inner)], f"Ray probe '{variant}'", timeout)


def background_probe(seconds: float, timeout: float = 600) -> dict:
    """`ray_child.run_background` in a fresh interpreter."""
    return _in_fresh_process(["background", str(seconds)], "Ray background probe", timeout)


def _in_fresh_process(args: list[str], what: str, timeout: float) -> dict:
    # the driver's (and so the raylet's) environment without the variables under test: the
    # worker gets WORKER_ENV and the variant's through runtime_env, as the suite does
    env = child_env({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"},
                    unset=THREAD_POLICY + MALLOC)
    done = subprocess.run([sys.executable, "-m", "bench.perf.ray_child", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise RuntimeError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-1200:]}")


def in_process_probe(variant: str, case, repeats: int, warmup: int = 1, inner: int = 1, in_thread: bool = False,
                     nice: int = 0) -> dict:
    """The same variant's environment, without Ray: a fresh process (main or non-main thread)."""
    from bench.perf.child import run_child

    spec = VARIANTS[variant]
    threads = spec.get("threads") or os.cpu_count()
    env = {**WORKER_ENV, **spec.get("env", {})}
    result = run_child(case, repeats, warmup, inner, threads=threads, in_thread=in_thread, nice=nice, env=env,
                       unset=THREAD_POLICY + MALLOC)
    result["variant"] = variant
    return result


SMALL_CASE = dict(method="daformer_m", tasks=5, batch=16, preset="quickstart")  # the quickstart's last task
CIFAR_CASE = dict(method="daformer_m", tasks=1, batch=128)  # the 1-key row of the step table
IN_PROCESS = (  # (variant, in a non-main thread, niceness)
    ("default", False, 0), ("default", True, 0), ("default", True, 15),
    ("passive", False, 0), ("passive", True, 0), ("passive", True, 15), ("threads1", False, 0),
)
FIX = "nice0+passive"


def _label(variant: str, in_thread: bool, nice: int) -> str:
    return f"in-process {variant}, {'non-main thread' if in_thread else 'main thread'}" + (f", nice {nice}" if nice else "")


def run_part(s, log) -> dict:
    from bench.perf.step import Case

    out = {"cpus": os.cpu_count(), "small": {}, "cifar": {}}
    small = Case(**SMALL_CASE)
    rows = []
    baseline_key = _label("default", False, 0)
    for variant, in_thread, nice in IN_PROCESS:
        if variant != "default" and variant not in s.ray_variants:
            continue
        log(f"ray part: {_label(variant, in_thread, nice)}")
        r = in_process_probe(variant, small, s.ray_small_repeats, 1, s.ray_small_inner, in_thread, nice)
        rows.append({"where": _label(variant, in_thread, nice), "variant": variant, **_slim(r)})
    for variant in s.ray_variants:
        log(f"ray part: TorchTrainer {variant}")
        r = ray_probe(variant, small, s.ray_small_repeats, 1, s.ray_small_inner)
        rows.append({"where": f"TorchTrainer {variant}", "variant": variant, "ray_wall_s": r["wall_s"], **_slim(r)})
    log(f"ray part: {baseline_key} (again, for drift)")
    again = in_process_probe("default", small, s.ray_small_repeats, 1, s.ray_small_inner)
    base = next(r for r in rows if r["where"] == baseline_key)
    base["images_per_s"] = _merge(base["images_per_s"], again["images_per_s"])
    _ratios(rows, base)
    out["small"] = {"case": small.name, "rows": rows}
    log("ray part: Ray's own CPU use, the worker asleep")
    out["background"] = background_probe(s.ray_background_s)

    if s.ray_cifar:
        cifar = Case(**CIFAR_CASE)
        rows = []
        for label, fn in ((_label("default", False, 0), lambda: in_process_probe("default", cifar, s.ray_cifar_repeats)),
                          ("TorchTrainer default", lambda: ray_probe("default", cifar, s.ray_cifar_repeats)),
                          (f"TorchTrainer {FIX}", lambda: ray_probe(FIX, cifar, s.ray_cifar_repeats)),
                          (_label("passive", False, 0), lambda: in_process_probe("passive", cifar, s.ray_cifar_repeats))):
            log(f"ray part (CIFAR step): {label}")
            r = fn()
            rows.append({"where": label, "variant": r["variant"], **_slim(r)})
        _ratios(rows, rows[0])
        out["cifar"] = {"case": cifar.name, "rows": rows}
    return out


def _slim(r: dict) -> dict:
    return {"images_per_s": r["images_per_s"], "context": r["context"]}


def _merge(a: dict, b: dict) -> dict:
    from bench.perf.timing import summary

    return summary(a["samples"] + b["samples"])


def _ratios(rows: list[dict], base: dict) -> None:
    for r in rows:
        r["vs_in_process_default"] = r["images_per_s"]["median"] / base["images_per_s"]["median"]


def section(res: dict) -> list[str]:
    return part_section("## 3. Ray Train overhead", res.get("ray"), _body, key="small")


def _body(ray: dict) -> list[str]:
    lines = ["Each row is a fresh process. `TorchTrainer` rows: a private local Ray started as "
             "`suite.run.cluster.init_ray` does (dashboard on, the suite's WORKER_ENV), 1 worker with "
             f"all {ray['cpus']} CPUs, the step timed inside Ray Train's TrainingThread after "
             "`torch.set_num_threads(cpus)` as suite/run/ray_train.py does. In-process rows: the same "
             "environment (WORKER_ENV + the variant's), no Ray. Variants: `nice0` = `RAY_worker_niceness=0` "
             "for the raylet (Ray starts workers at nice 15 otherwise); `passive` = `OMP_WAIT_POLICY=PASSIVE` "
             "in the worker; `threads1` = `torch.set_num_threads(1)`.", ""]
    for part in ("small", "cifar"):
        block = ray.get(part)
        if not block:
            continue
        lines += [f"Step: {block['case']}", ""]
        lines += table(["where", "images/s", "range", "÷ in-process default", "thread", "nice", "threads", "OMP env"],
                       [[r["where"], num(r["images_per_s"]["median"]), span(r["images_per_s"]),
                         f"{r['vs_in_process_default']:.2f}", r["context"]["thread"].split("(")[0],
                         str(r["context"]["niceness"]), str(r["context"]["torch_threads"]),
                         " ".join(f"{k}={v}" for k, v in r["context"]["env"].items() if k.startswith(("OMP", "GOMP")))]
                        for r in block["rows"]])
        lines.append("")
    return lines + findings(ray) + _background(ray.get("background"))


def findings(ray: dict) -> list[str]:
    """Ratios the investigation rests on, computed from the small-step rows."""
    rows = {r["where"]: r["images_per_s"]["median"] for r in ray["small"]["rows"]}

    def ratio(a, b):
        return f"{rows[a] / rows[b]:.2f}" if a in rows and b in rows else "—"

    d, p = "in-process default", "in-process passive"
    out = ["Ratios on the quickstart-size step (medians):", "",
           f"- non-main thread ÷ main thread, default OpenMP: {ratio(d + ', non-main thread', d + ', main thread')}; "
           f"with OMP_WAIT_POLICY=PASSIVE: {ratio(p + ', non-main thread', p + ', main thread')}",
           f"- nice 15 ÷ nice 0 (non-main thread), default: {ratio(d + ', non-main thread, nice 15', d + ', non-main thread')}; "
           f"passive: {ratio(p + ', non-main thread, nice 15', p + ', non-main thread')}",
           f"- OMP_WAIT_POLICY=PASSIVE ÷ default, main thread: {ratio(p + ', main thread', d + ', main thread')}",
           f"- 1 intra-op thread ÷ {ray['cpus']} threads, main thread: {ratio('in-process threads1, main thread', d + ', main thread')}",
           f"- TorchTrainer: nice0 ÷ default {ratio('TorchTrainer nice0', 'TorchTrainer default')}, passive ÷ default "
           f"{ratio('TorchTrainer passive', 'TorchTrainer default')}, nice0+passive ÷ default "
           f"{ratio('TorchTrainer nice0+passive', 'TorchTrainer default')}", ""]
    return out


def _background(bg) -> list[str]:
    if not bg:
        return []
    top = ", ".join(f"{t['process']} {t['cores'] * 100:.1f}%" for t in bg["top"])
    return [f"Ray's own CPU use with nothing to train (a 1-worker TorchTrainer whose worker sleeps, every "
            f"process on the machine sampled for {bg['window_s']:.0f} s): **{bg['cores_used'] * 100:.0f}% of one core** "
            f"({bg['cores_used'] / bg['cpus']:.0%} of the machine's {bg['cpus']} CPUs), spread over {bg['processes']} "
            f"processes; the busiest: {top}. On a machine this small that share is taken from training whatever "
            "the worker does.", ""]


def targets(results: dict) -> list[dict]:
    out = []
    ray = figures(results, "ray")
    for part, label in (("cifar", "CIFAR step"), ("small", "quickstart-size step")):
        rws = (ray.get(part) or {}).get("rows") or []
        default = next((r for r in rws if r["where"] == "TorchTrainer default"), None)
        fixed = [r for r in rws if r["where"].startswith("TorchTrainer") and r["where"] != "TorchTrainer default"]
        best = max(fixed, key=lambda r: r["vs_in_process_default"]) if fixed else None
        note = f"best fix: {best['where']} {best['vs_in_process_default']:.2f}" if best else ""
        background = ray.get("background")
        if background and default:
            share = background["cores_used"] / background["cpus"]
            note += (f"; Ray's own processes use {share:.0%} of the machine with nothing to train, "
                     f"which bounds the ratio near {1 - share:.2f}")
        out.append(target(f"Ray Train overhead ({label}, as the suite runs it)", "≥ 0.95",
                          default and default["vs_in_process_default"], 0.95, note or "not measured"))
    return out
