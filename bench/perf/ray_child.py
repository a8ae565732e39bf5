"""`python -m bench.perf.ray_child VARIANT CASE_JSON`: in a fresh process, Ray started as the suite
starts it and one TorchTrainer; one JSON line out.

The worker times the step with `bench.perf.probe` in Ray Train's TrainingThread (VARIANT: what the
investigation found to matter, see VARIANTS), or, with `background SECONDS`, sleeps while every
process's CPU use is sampled: Ray's own cost with nothing to train.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.perf.environ import start_local_ray

MARK = "PERF-RAY "

# What a variant changes. `env`: worker environment (runtime_env env_vars, on top of the suite's
# WORKER_ENV; for in-process probes the child's environment). `raylet_env`: set in the driver
# before ray.init, so the raylet it starts reads it. `threads`: torch.set_num_threads in the worker
# (0: the cluster's CPUs, as suite/run/ray_train.py does).
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf.ray_child")
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


if __name__ == "__main__":
    sys.exit(main())
