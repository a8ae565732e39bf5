"""Ray Train overhead: the same step in a 1-worker `TorchTrainer` (CPU, all cores) against in-process.

Every measurement runs in a fresh process: `python -m bench.perf.ray_overhead VARIANT CASE_JSON`
starts a private local Ray exactly as `suite.distributed.cluster.init_ray` does (dashboard, the
suite's worker environment), runs one `TorchTrainer` whose worker times the step with
`bench.perf.probe` in its TrainingThread, and prints the probe. Variants add what the
investigation found to matter (worker niceness, OpenMP's wait policy, intra-op threads); the
in-process side runs through `bench.perf.child` (main thread and a non-main thread).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from bench.perf.environ import MALLOC, THREAD_POLICY, WORKER_ENV, child_env, start_local_ray

REPO = Path(__file__).resolve().parents[2]
MARK = "PERF-RAY "

# What a variant changes. `env`: worker environment (runtime_env env_vars, on top of the suite's
# WORKER_ENV; for in-process probes the child's environment). `raylet_env`: set in the driver
# before ray.init, so the raylet it starts reads it. `threads`: torch.set_num_threads in the worker
# (0: the cluster's CPUs, as suite/distributed/train.py does).
VARIANTS = {
    "default": {},
    "nice0": {"raylet_env": {"RAY_worker_niceness": "0"}},
    "passive": {"env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    "nice0+passive": {"raylet_env": {"RAY_worker_niceness": "0"}, "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    "threads1": {"threads": 1},
}


def _worker(config: dict) -> None:
    """train_loop_per_worker: time the step in Ray Train's TrainingThread, write the probe."""
    import ray.train

    from bench.perf.probe import probe
    from bench.perf.step import Case

    result = probe(Case(**config["case"]), config["repeats"], config["warmup"], config["inner"], config["threads"])
    result["context"]["world_rank"] = ray.train.get_context().get_world_rank()
    Path(config["out"]).write_text(json.dumps(result))


def _one_worker_trainer(fn, config: dict, storage: str):
    """A TorchTrainer of one worker holding every CPU (gloo), checkpoints under `storage`."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    return TorchTrainer(fn, train_loop_config=config,
                        scaling_config=ScalingConfig(num_workers=1, use_gpu=False,
                                                     resources_per_worker={"CPU": float(os.cpu_count())}),
                        torch_config=TorchConfig(backend="gloo"),
                        run_config=RunConfig(name=f"perf-{uuid.uuid4().hex[:8]}", storage_path=storage))


def run_variant(variant: str, case_json: str, repeats: int, warmup: int, inner: int) -> dict:
    """In this (fresh) process: start Ray as the suite does, fit one TorchTrainer, return its probe."""
    spec = VARIANTS[variant]
    os.environ.update(spec.get("raylet_env", {}))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    start = time.perf_counter()
    start_local_ray(spec.get("env", {}), log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="perf-ray-") as tmp:
        out = Path(tmp) / "probe.json"
        _one_worker_trainer(_worker, {"case": json.loads(case_json), "repeats": repeats, "warmup": warmup,
                                      "inner": inner, "threads": spec.get("threads") or os.cpu_count(),
                                      "out": str(out)}, tmp).fit()
        result = json.loads(out.read_text())
    ray.shutdown()
    result["wall_s"] = time.perf_counter() - start
    result["variant"] = variant
    return result


def _cpu_seconds() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) used so far by every process: pid -> (name, seconds)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(pid)] = (_process_name(argv) or stat[stat.index("(") + 1:stat.rindex(")")],
                         (int(fields[11]) + int(fields[12])) / tick)
    return out


def _process_name(argv: list[str]) -> str:
    """'ray::TrainController', 'raylet', or for `python [-u] SCRIPT` the script's name."""
    name = Path(argv[0]).name
    if name.startswith("python"):
        script = next((a for a in argv[1:] if a and not a.startswith("-")), "")
        return f"python {Path(script).name}" if script else name
    return name


def _sleep(config: dict) -> None:
    Path(config["marker"]).touch()
    time.sleep(config["seconds"])


def run_background(seconds: float) -> dict:
    """In this (fresh) process: Ray as the suite starts it and a TorchTrainer whose worker sleeps;
    the CPU every process on the machine uses over `seconds` meanwhile (Ray's own cost, with
    nothing to train)."""
    import threading

    import ray

    start_local_ray(log_to_driver=False)
    settle = 3.0  # after the worker falls asleep, before sampling
    box = {}

    def sample(marker: Path):
        while not marker.exists():
            time.sleep(0.2)
        time.sleep(settle)
        before, start = _cpu_seconds(), time.perf_counter()
        time.sleep(seconds)
        after, elapsed = _cpu_seconds(), time.perf_counter() - start
        box["per_process"] = sorted(((after[p][0], (after[p][1] - before[p][1]) / elapsed) for p in after if p in before),
                                    key=lambda x: -x[1])
        box["window_s"] = elapsed

    with tempfile.TemporaryDirectory(prefix="perf-ray-") as tmp:
        marker = Path(tmp) / "asleep"
        sampler = threading.Thread(target=sample, args=(marker,))
        trainer = _one_worker_trainer(_sleep, {"seconds": seconds + settle + 2, "marker": str(marker)}, tmp)
        sampler.start()
        trainer.fit()
        sampler.join()
    ray.shutdown()
    busy = [(name, share) for name, share in box["per_process"] if share > 0]
    return {"cores_used": sum(share for _, share in busy), "processes": len(busy), "window_s": box["window_s"],
            "top": [{"process": name, "cores": share} for name, share in busy[:8]], "cpus": os.cpu_count()}


def ray_probe(variant: str, case, repeats: int, warmup: int = 1, inner: int = 1, timeout: float = 3600) -> dict:
    """`run_variant` in a fresh interpreter (a clean Ray and environment every time)."""
    return _in_fresh_process([variant, json.dumps(asdict(case)), "--repeats", str(repeats), "--warmup", str(warmup),
                              "--inner", str(inner)], f"Ray probe '{variant}'", timeout)


def background_probe(seconds: float, timeout: float = 600) -> dict:
    """`run_background` in a fresh interpreter."""
    return _in_fresh_process(["background", str(seconds)], "Ray background probe", timeout)


def _in_fresh_process(args: list[str], what: str, timeout: float) -> dict:
    # the driver's (and so the raylet's) environment without the variables under test: the
    # worker gets WORKER_ENV and the variant's through runtime_env, as the suite does
    env = child_env({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"},
                    unset=THREAD_POLICY + MALLOC)
    done = subprocess.run([sys.executable, "-m", "bench.perf.ray_overhead", *args], cwd=REPO, env=env,
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf.ray_overhead")
    p.add_argument("variant", choices=sorted(VARIANTS) + ["background"])
    p.add_argument("case", help="a step case as JSON; with 'background': the seconds the worker sleeps")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--inner", type=int, default=1)
    args = p.parse_args(argv)
    if args.variant == "background":
        result = run_background(float(args.case))
    else:
        result = run_variant(args.variant, args.case, args.repeats, args.warmup, args.inner)
    print(MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ---------------------------------------------------------------- the part as the benchmark runs it

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
