"""`python -m bench.gpu_ray.run --out DIR [--cpu-smoke] [--parts ID,...]`: the suite through Ray on a GPU.

Runs the suite's own entry point (`python suite/run.py ...`, and `--sweep`) as subprocesses on
synthetic CIFAR-shaped data with the DAFormer-M CIFAR preset (configs/model/cifar_dual.yaml), reads
back each run's results.json and epoch lines, and measures:

1. Ray Train on one GPU worker (NCCL), fp32 and bf16, eager and train.compile, at batch 128 and at
   the largest batch that fits (capped): the epoch images/s of the whole pipeline against the
   bare step rate of bench/perf/step.py on the same model (probe.py);
2. Ray Train ÷ in-process (`--in-process`, the learner on the same GPU);
3. Tune packing: the same trials 4 at a time at ray.gpus_per_worker 0.25 against 1 at a time;
4. the loader alone at several data.num_workers against the step rate;
5. the projected wall time of the CIFAR-100 B0-10 paper run, from the measured per-task times.

DIR gets report.json and report.md, rewritten after every measurement, and runs.log with every
subprocess's output. Each measurement has a budget; one that overruns is stopped (its whole
process session) and recorded, and the next one runs; past the global deadline the rest is
skipped and says so. `--cpu-smoke` runs the same code with tiny sizes on the CPU (minutes).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from bench.gpu_ray import analysis, report
from bench.gpu_ray.wheels import EXCLUDED_PACKAGES, applies

REPO = Path(__file__).resolve().parents[2]
PRESET = "configs/model/cifar_dual.yaml"
CHILD_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
MIN_START_S = 30  # no measurement starts with less than this left before the deadline
VERSIONS = ("torch", "ray", "timm", "numpy", "pandas", "pyarrow", "aiohttp", "grpcio", "protobuf", "pydantic",
            "opentelemetry-sdk", "opencensus", "pillow", "pyyaml")


@dataclass(frozen=True)
class Sizes:
    """What every measurement trains on, and how long each may take (budget_s, by part)."""

    use_gpu: bool
    train_per_class: int  # synthetic images, 32x32
    test_per_class: int
    classes_per_task: int
    tasks: int
    memory: int
    epochs: int
    finetune_epochs: int
    small_batch: int
    large_batch_cap: int  # the large batch: the largest that fits, at most this
    loader_workers: int  # data.num_workers of the runs
    variants: tuple[str, ...]  # the Train runs this mode measures (of VARIANTS)
    step_keys: tuple[int, ...]  # bare step at these key counts (fp32, small batch): the projection's scaling
    step_repeats: int
    step_warmup: int
    step_inner: int
    loader_counts: tuple[int, ...]
    loader_batches: int
    loader_repeats: int
    pack_trials: int
    pack_train_per_class: int
    pack_epochs: int
    pack_cpus: int  # ray.cpus_per_worker of a trial: the machine's cores / pack_trials
    pack_loader_workers: int
    deadline_s: float
    budget_s: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)  # overrides of PRESET's model in the runs and sweeps

    def protocol(self, batch: int) -> analysis.Protocol:
        return analysis.Protocol(self.tasks, self.classes_per_task, self.train_per_class, self.test_per_class,
                                 self.memory, self.epochs, self.finetune_epochs, batch)


@dataclass(frozen=True)
class Variant:
    precision: str  # train.precision
    batch: str  # small | large
    in_process: bool = False
    compile: bool = False
    one_task: bool = False  # a compiled run recompiles at every task: one task measures it once


VARIANTS = {
    "ray-fp32-small": Variant("fp32", "small"),  # the paper recipe: fp32, batch 128
    "inproc-fp32-small": Variant("fp32", "small", in_process=True),
    "ray-bf16-large": Variant("bf16", "large"),
    "inproc-bf16-large": Variant("bf16", "large", in_process=True),
    "ray-fp32-large": Variant("fp32", "large"),
    "ray-bf16-small": Variant("bf16", "small"),
    "ray-bf16-large-compile": Variant("bf16", "large", compile=True, one_task=True),
}

# On the H200 (16 cores). Estimates from the step rates in reports/perf/gpu-h200-fused/ and the
# CPU runs' start-up (reports/perf/): unmeasured through Ray there, hence the budgets' headroom. A
# Train run: ~20 s of start-up, 4 + 4 epochs of 5,000 and 7,000 images, 2 finetuning epochs, the
# report. Packing: 8 trial runs of 2 + 2 epochs of 2,500 / 4,500 images.
GPU = Sizes(
    use_gpu=True, train_per_class=500, test_per_class=100, classes_per_task=10, tasks=2, memory=2000, epochs=4,
    finetune_epochs=2, small_batch=128, large_batch_cap=1024, loader_workers=4, variants=tuple(VARIANTS),
    step_keys=(1, 2, 5, 10), step_repeats=5, step_warmup=3, step_inner=5, loader_counts=(0, 2, 4, 8),
    loader_batches=10, loader_repeats=3, pack_trials=4, pack_train_per_class=250, pack_epochs=2, pack_cpus=4,
    pack_loader_workers=2, deadline_s=450,
    budget_s={"probe": 150, "ray-fp32-small": 110, "inproc-fp32-small": 75, "ray-bf16-large": 80,
              "inproc-bf16-large": 60, "pack-concurrent": 100, "pack-sequential": 170, "ray-fp32-large": 90,
              "ray-bf16-small": 90, "ray-bf16-large-compile": 180, "step-compiled": 120})

# The same code on 2 CPU cores: 2 tasks of 2 classes of 8 images, batch 8, one epoch, fp32 eager, and
# the runs and sweeps on a one-block model (the probe keeps the preset); each packing sweep is one
# trial (the code path: a trial's Ray Train start-up is most of its cost here).
SMOKE = replace(
    GPU, use_gpu=False, train_per_class=8, test_per_class=4, classes_per_task=2, memory=8, epochs=1,
    finetune_epochs=1, small_batch=8, large_batch_cap=8, loader_workers=0,
    variants=("ray-fp32-small", "inproc-fp32-small"), step_keys=(1, 2), step_repeats=2, step_warmup=1, step_inner=1,
    loader_counts=(0, 1), loader_batches=2, loader_repeats=1, pack_trials=1, pack_train_per_class=8, pack_epochs=1,
    pack_cpus=1, pack_loader_workers=0, deadline_s=900, budget_s={k: 300 for k in GPU.budget_s},
    model={"model.embed_dim": 32, "model.depth": 1, "model.num_heads": 2})  # the code path, not the figures

# In order of need: the paper recipe and the Ray ratio first, the compiled run last (the deadline
# skips from the end).
PARTS = ("probe", "ray-fp32-small", "inproc-fp32-small", "ray-bf16-large", "inproc-bf16-large", "packing",
         "ray-fp32-large", "ray-bf16-small", "ray-bf16-large-compile", "step-compiled")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _log(msg: str) -> None:
    print(f"[gpu-ray {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _session_members(sid: int) -> list[int]:
    """Processes of session `sid` still alive (a run's Ray daemons and workers among them)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # a zombie is dead already
            pids.append(int(entry.name))
    return pids


def _end_session(sid: int) -> None:
    """SIGTERM to every process of the session, SIGKILL to those left after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 0)):
        for pid in _session_members(sid):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        end = time.monotonic() + wait
        while wait and _session_members(sid) and time.monotonic() < end:
            time.sleep(0.5)


class Bench:
    def __init__(self, sizes: Sizes, out: Path, work: Path, parts: tuple[str, ...], argv: list[str]):
        self.sizes, self.out, self.work, self.parts = sizes, out, work, parts
        self.start = time.monotonic()
        self.runs_log = out / "runs.log"
        self.large_batch = sizes.large_batch_cap
        self.doc = {"command": "python -m bench.gpu_ray.run " + " ".join(shlex.quote(a) for a in argv),
                    "started": _now(), "mode": "cpu-smoke" if not sizes.use_gpu else "gpu", "sizes": asdict(sizes),
                    "preset": PRESET, "environment": environment(), "measurements": {}}

    def left_s(self) -> float:
        return self.sizes.deadline_s - (time.monotonic() - self.start)

    def save(self) -> None:
        self.doc["elapsed_s"] = time.monotonic() - self.start
        try:
            self.doc["summary"] = report.summarize(self.doc)
            md = report.markdown(self.doc)
        except Exception as e:  # a figure's bug must not lose the measurements: report.json keeps them all
            self.doc["summary"] = {"error": traceback.format_exc()}
            md = f"# Ray on the GPU\n\nThe summary failed ({type(e).__name__}: {e}); report.json has every sample.\n"
        for name, text in (("report.json", json.dumps(self.doc, indent=1)), ("report.md", md)):
            tmp = self.out / (name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, self.out / name)

    def record(self, part: str, rec: dict) -> None:
        self.doc["measurements"][part] = rec
        self.save()

    def budget(self, part: str) -> float | None:
        """This part's budget, cut to the time left; None (recorded as skipped) when less than half of
        it is left (a budget is about twice the estimate), or less than MIN_START_S."""
        if self.left_s() < max(MIN_START_S, self.sizes.budget_s[part] / 2):
            self.record(part, {"status": "skipped", "note": f"global deadline ({self.sizes.deadline_s:.0f} s): "
                                                           f"{max(self.left_s(), 0):.0f} s left"})
            return None
        return min(self.sizes.budget_s[part], self.left_s())

    def launch(self, part: str, cmd: list[str], budget: float) -> dict:
        """Run `cmd` in its own session for at most `budget` s; its output lines, timed from launch."""
        _log(f"{part}: {' '.join(cmd[1:])} (budget {budget:.0f} s)")
        lines: list[tuple[float, str]] = []
        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **CHILD_ENV}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

        def read():
            for line in proc.stdout:
                lines.append((time.monotonic() - start, line.rstrip("\n")))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            proc.wait(timeout=budget)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        _end_session(proc.pid)
        proc.wait()
        reader.join(timeout=10)
        wall = time.monotonic() - start
        with self.runs_log.open("a") as log:
            log.write(f"==== {part}: {shlex.join(cmd)}\n" + "".join(f"[{t:7.1f}] {s}\n" for t, s in lines))
        status = "timed out" if timed_out else ("ok" if proc.returncode == 0 else "failed")
        _log(f"{part}: {status} after {wall:.0f} s")
        return {"status": status, "budget_s": budget, "wall_s": wall, "returncode": proc.returncode,
                "command": shlex.join([Path(cmd[0]).name, *cmd[1:]]), "lines": lines,
                "tail": [s for _, s in lines[-25:]]}


def environment() -> dict:
    """The machine and the packages, read without importing torch."""
    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    gpu = None
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:  # the device's copy of the working tree may have no .git, the machine no git
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"host": platform.node(), "python": platform.python_version(), "executable": sys.executable,
            "cores": os.cpu_count(), "gpu": gpu, "load_average": [round(x, 2) for x in os.getloadavg()],
            "git_commit": commit or None, "versions": {n: version(n) for n in VERSIONS},
            "unmet_ray_requirements": unmet_ray_requirements(), "pip_check": pip_check()}


def pip_check() -> list[str]:
    """`pip check` over everything importable (the carried /tmp/site included): a carried package
    that needs a newer version of one the machine has shows here (then `wheels.py --also NAME`)."""
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return [f"pip check did not run: {e}"]
    return (done.stdout + done.stderr).strip().splitlines()[:60]


def unmet_ray_requirements() -> list[str]:
    """Ray's requirements (core, default, train, tune) that the installed packages do not meet here."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    try:
        requires = metadata.requires("ray") or []
    except metadata.PackageNotFoundError:
        return ["ray is not installed"]
    unmet = []
    for req in map(Requirement, requires):
        if not applies(req, {"default", "train", "tune"}):
            continue
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            why = " (left out by wheels.py)" if canonicalize_name(req.name) in EXCLUDED_PACKAGES else ""
            unmet.append(f"{req.name}: missing{why}")
            continue
        if not req.specifier.contains(have, prereleases=True):
            unmet.append(f"{req.name}: {have}, needs {req.specifier}")
    return sorted(set(unmet))


def data_settings(sizes: Sizes, classes: int, train_per_class: int) -> dict:
    """Synthetic 32x32 images in tasks of `sizes.classes_per_task` classes, the preset's model."""
    return {"data.name": "synthetic", "data.image_size": 32, "data.num_classes": classes,
            "data.train_per_class": train_per_class, "data.test_per_class": sizes.test_per_class,
            "scenario.increment": sizes.classes_per_task, "memory.size": sizes.memory}


def run_settings(sizes: Sizes, v: Variant, batch: int) -> dict:
    tasks = 1 if v.one_task else sizes.tasks
    return {**data_settings(sizes, sizes.classes_per_task * tasks, sizes.train_per_class),
            "train.epochs": sizes.epochs, "finetune.epochs": sizes.finetune_epochs, "train.batch_size": batch,
            "train.precision": v.precision, "train.compile": v.compile, "ray.use_gpu": sizes.use_gpu,
            "ray.num_workers": 1, "data.num_workers": sizes.loader_workers, **sizes.model,
            "report.at_end": False}  # the run, not the report's build


def set_args(settings: dict) -> list[str]:
    """--set KEY=VALUE for each, booleans as YAML writes them."""
    return [a for k, v in settings.items() for a in ("--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}")]


def probe_command(b: Bench, out: Path, compiled: bool) -> list[str]:
    s = b.sizes
    device = "cuda" if s.use_gpu else "cpu"
    cmd = [sys.executable, "-m", "bench.gpu_ray.probe", "--out", str(out), "--device", device,
           "--repeats", str(s.step_repeats), "--warmup", str(s.step_warmup), "--inner", str(s.step_inner)]
    if compiled:
        return cmd + ["--compiled", "--large-cap", str(b.large_batch), "--steps", "1:bf16:large"]
    dtypes = ("fp32", "bf16") if s.use_gpu else ("fp32",)
    steps = [f"{k}:fp32:{s.small_batch}" for k in s.step_keys]
    steps += [f"{k}:{d}:{batch}" for d in dtypes for batch in (s.small_batch, "large") for k in (1, 2)
              if f"{k}:{d}:{batch}" not in steps]
    if s.use_gpu:  # where the step rate stops growing with the batch: bf16 at the largest batch
        steps.append("2:bf16:max")
        cmd += ["--probe-limit", "16384"]
    return cmd + ["--large-cap", str(s.large_batch_cap), "--steps", ",".join(steps),
                  "--loader-workers", ",".join(map(str, s.loader_counts)), "--loader-batch", str(s.small_batch),
                  "--loader-batches", str(s.loader_batches), "--loader-repeats", str(s.loader_repeats),
                  "--loader-per-class", str(s.train_per_class)]


def measure_probe(b: Bench, part: str, compiled: bool = False) -> None:
    budget = b.budget(part)
    if budget is None:
        return
    out = b.work / f"{part}.json"
    rec = b.launch(part, probe_command(b, out, compiled), budget)
    rec.pop("lines")
    rec["probe"] = json.loads(out.read_text()) if out.exists() else None
    if not compiled and rec["probe"] and rec["probe"].get("large_batch"):
        b.large_batch = rec["probe"]["large_batch"]
    b.record(part, rec)


def measure_run(b: Bench, part: str) -> None:
    budget = b.budget(part)
    if budget is None:
        return
    v = VARIANTS[part]
    batch = b.sizes.small_batch if v.batch == "small" else b.large_batch
    args = [PRESET, *set_args(run_settings(b.sizes, v, batch)), "--output-basedir", str(b.work / "runs"), "--name", part]
    rec = b.launch(part, [sys.executable, "suite/run.py", *args, *(["--in-process"] if v.in_process else [])], budget)
    lines = rec.pop("lines")
    rec.update(variant=asdict(v), batch=batch, epochs=analysis.parse_epochs([s for _, s in lines]),
               first_epoch_line_s=next((t for t, s in lines if analysis.EPOCH.search(s)), None))
    results = b.work / "runs" / part / "results.json"
    if results.exists():
        doc = json.loads(results.read_text())
        rec["results"] = {k: doc.get(k) for k in ("status", "tasks_done", "memory_size", "timings", "provenance",
                                                  "acc", "num_params")}
        per_task = doc["timings"]["per_task_s"]
        if per_task:
            rec["figures"] = analysis.run_figures(rec["epochs"], per_task, doc["memory_size"], b.sizes.protocol(batch))
    b.record(part, rec)


def sweep_spec(sizes: Sizes, concurrency: int) -> dict:
    resources = {"ray.cpus_per_worker": sizes.pack_cpus, "ray.use_gpu": sizes.use_gpu}
    if sizes.use_gpu:
        resources["ray.gpus_per_worker"] = 1 / sizes.pack_trials
    data = data_settings(sizes, sizes.classes_per_task * sizes.tasks, sizes.pack_train_per_class)
    return {"name": f"pack-{concurrency}", "base": [PRESET],
            "set": {**data, "train.epochs": sizes.pack_epochs, "finetune.epochs": 1, "train.batch_size": sizes.small_batch,
                    "train.precision": "fp32", "data.num_workers": sizes.pack_loader_workers, **resources,
                    **sizes.model, "report.at_end": False},  # the trials' throughput, not the report's build
            "axes": {"seed": list(range(sizes.pack_trials))}, "max_concurrent_trials": concurrency}


def measure_packing(b: Bench) -> None:
    """The same trials 1 at a time and all at once (sequential last: the longer one)."""
    for part, concurrency in (("pack-concurrent", b.sizes.pack_trials), ("pack-sequential", 1)):
        budget = b.budget(part)
        if budget is None:
            continue
        spec = sweep_spec(b.sizes, concurrency)
        path = b.work / f"{spec['name']}.yaml"
        path.write_text(json.dumps(spec, indent=1))  # JSON is YAML
        rec = b.launch(part, [sys.executable, "suite/run.py", "--sweep", str(path), "--output-basedir",
                              str(b.work / "runs")], budget)
        rec.pop("lines")
        trials = sorted((b.work / "runs" / spec["name"]).glob("*/results.json"))
        docs = [json.loads(p.read_text()) for p in trials]
        rec.update(spec=spec, trials=[{"trial": p.parent.name, "status": d.get("status"),
                                       "total_s": d["timings"]["total_s"], "per_task_s": d["timings"]["per_task_s"]}
                                      for p, d in zip(trials, docs)])
        b.record(part, rec)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench.gpu_ray.run", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="report.json, report.md and runs.log go here")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU: the same code, in minutes")
    p.add_argument("--parts", default="", help=f"comma-separated, in this order: {', '.join(PARTS)} (default: all)")
    p.add_argument("--work", type=Path, help="where the runs go (default: a new temporary directory)")
    p.add_argument("--deadline", type=float, help="seconds for all measurements (default: the mode's, 450 on a GPU)")
    args = p.parse_args(argv)
    sizes = SMOKE if args.cpu_smoke else GPU
    if args.deadline:
        sizes = replace(sizes, deadline_s=args.deadline)
    wanted = tuple(x.strip() for x in args.parts.split(",") if x.strip())
    unknown = set(wanted) - set(PARTS)
    if unknown:
        p.error(f"--parts: unknown {', '.join(sorted(unknown))}; expected {', '.join(PARTS)}")
    parts = tuple(x for x in PARTS if x in (wanted or PARTS) and (x not in VARIANTS or x in sizes.variants)
                  and (x != "step-compiled" or sizes.use_gpu))  # compiled steps: GPU only
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-ray-"))
    work.mkdir(parents=True, exist_ok=True)
    b = Bench(sizes, args.out, work, parts, argv)
    b.save()
    _log(f"parts: {', '.join(parts)}; runs in {work}; deadline {sizes.deadline_s:.0f} s")
    for part in parts:
        try:
            if part == "probe":
                measure_probe(b, part)
            elif part == "packing":
                measure_packing(b)
            elif part == "step-compiled":
                measure_probe(b, part, compiled=True)
            else:
                measure_run(b, part)
        except Exception as e:  # reading a run's files back failed: recorded, the next part runs
            b.record(part, {"status": "failed", "note": f"reading its results: {type(e).__name__}: {e}",
                            "tail": traceback.format_exc().splitlines()[-8:]})
    b.save()
    _log(f"wrote {args.out / 'report.json'} and {args.out / 'report.md'}")
    bad = [k for k, r in b.doc["measurements"].items() if r.get("status") != "ok"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
