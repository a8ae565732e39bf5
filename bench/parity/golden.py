"""Golden trajectories: a release's lockstep run kept small enough for the test suite.

A golden file (tests/golden/<method>.json, written by `python -m bench.parity lockstep`) holds the
lockstep's setup (its seed generates the batches and λs again), our initial weights per task, the
release commits, and the release's trajectory: per optimizer step the loss, the gradient norm
and a fingerprint of every parameter (its norm and its projection on a fixed random direction);
the release's parameters after the last step in full; its memory after each task and its
predictions on the test batch. `replay` runs our learner against it, with no release present.
"""
from __future__ import annotations

import base64
import json
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from bench.parity.lockstep import Setup, compared, make_inputs, run_ours

# Largest relative deviation a replay (and the lockstep's verdict) accepts, per quantity. The two
# sides compute the same functions in another order (fused attention and a batched dual block
# here, explicit softmax in the release), so float32 rounding (about 1e-7 an operation) is left.
# Losses and gradient norms carry it as it is. Parameters carry it through Adam, whose update
# lr·m/(√v + 1e-8) turns a rounding-sized difference in a gradient entry within a few 1e-8 of
# zero into a visible difference of that entry's step (most of all at each task's first step,
# where the update is lr·g/(|g| + 1e-8)): one entry of a tensor then sets the tensor's deviation.
# The lockstep measures that floor (ours against ours with every initial weight moved by one
# float32 rounding) and prints it beside the release's deviation (reports/parity/lockstep.md):
# DyTox's reaches 2.3e-5 on losses, 3.1e-4 on gradient norms and 4.8e-3 on parameters. The bounds
# sit above that floor, since another CPU rounds differently, and below what a recipe detail
# broken on purpose gives: 1e-2 or more on the losses (tests/test_golden_trajectories.py).
TOLERANCE = {"loss": 3e-4, "grad_norm": 3e-3, "parameters": 2e-2}


def _direction(name: str, numel: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    v = torch.randn(numel, generator=g, dtype=torch.float64)
    return v / torch.linalg.vector_norm(v)


def fingerprint(params: dict[str, torch.Tensor]) -> dict[str, tuple[float, float]]:
    """Per parameter: (norm, projection on its own fixed random unit direction), in float64."""
    out = {}
    for name, p in params.items():
        flat = p.detach().double().flatten()
        out[name] = (float(torch.linalg.vector_norm(flat)), float(flat @ _direction(name, flat.numel())))
    return out


def write(path: Path, setup: Setup, init: dict, release: dict, sources: dict, names: set[str]) -> None:
    """The golden file for one method, as JSON (tensors as base64 of their bytes); `names` are the
    release parameters ours map to."""
    steps = [{"task": s["task"], "phase": s["phase"], "epoch": s["epoch"], "loss": s["losses"][0],
              "grad_norm": s["grad_norm"], "fingerprint": fingerprint({n: p for n, p in s["params"].items() if n in names and compared(n)})}
             for s in release["steps"]]
    golden = {"sources": sources, "setup": asdict(setup), "steps": steps, "memories": release["memories"],
              "predictions": [_encode(p) for p in release["predictions"]],
              "init": {str(t): {n: _encode(v) for n, v in values.items()} for t, values in init.items()},
              "final": {n: _encode(release["steps"][-1]["params"][n]) for n in sorted(names) if compared(n)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(golden, indent=1) + "\n")
    tmp.replace(path)


def read(path: Path) -> dict:
    golden = json.loads(path.read_text())
    return {**golden, "predictions": [_decode(p) for p in golden["predictions"]],
            "init": {int(t): {n: _decode(v) for n, v in values.items()} for t, values in golden["init"].items()},
            "final": {n: _decode(v) for n, v in golden["final"].items()}}


def _encode(t: torch.Tensor) -> dict:
    array = t.detach().contiguous().numpy()
    return {"dtype": str(array.dtype), "shape": list(array.shape), "base64": base64.b64encode(array.tobytes()).decode()}


def _decode(d: dict) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(d["base64"]), dtype=d["dtype"]).copy()).reshape(d["shape"])


def _rel(a: float, b: float, scale: float) -> float:
    return abs(a - b) / max(abs(scale), 1e-12)


def replay(golden: dict, sets: tuple[str, ...] = ()) -> dict:
    """Our learner on the golden run's data and initial weights, against the release's trajectory:
    the largest relative deviation per quantity, and every mismatch as a line in `problems`.
    `sets` change our config (to break a recipe detail on purpose)."""
    setup = Setup(**golden["setup"])
    ours = run_ours(setup, make_inputs(setup), {int(t): v for t, v in golden["init"].items()}, sets)
    problems = []
    if len(ours["steps"]) != len(golden["steps"]):
        problems.append(f"{len(ours['steps'])} optimizer steps, the release took {len(golden['steps'])}")
    worst = {"loss": 0.0, "grad_norm": 0.0, "parameters": 0.0, "final_parameters": 0.0}
    for i, (a, b) in enumerate(zip(ours["steps"], golden["steps"])):
        where = f"step {i} (task {b['task'] + 1}, {b['phase']} epoch {b['epoch'] + 1})"
        if (a["task"], a["phase"], a["epoch"]) != (b["task"], b["phase"], b["epoch"]):
            problems.append(f"{where}: ours is at task {a['task'] + 1}, {a['phase']} epoch {a['epoch'] + 1}")
            break
        worst["loss"] = max(worst["loss"], _rel(a["loss"], b["loss"], b["loss"]))
        worst["grad_norm"] = max(worst["grad_norm"], _rel(a["grad_norm"], b["grad_norm"], b["grad_norm"]))
        mine = fingerprint({n: a["params"][n] for n in b["fingerprint"]})
        for name, (norm, proj) in b["fingerprint"].items():
            deviation = max(_rel(mine[name][0], norm, norm), _rel(mine[name][1], proj, norm))
            worst["parameters"] = max(worst["parameters"], deviation)
            if deviation > TOLERANCE["parameters"]:
                problems.append(f"{where}: {name} is {deviation:.1e} off the release's")
        if _rel(a["loss"], b["loss"], b["loss"]) > TOLERANCE["loss"]:
            problems.append(f"{where}: loss {a['loss']:.6f}, the release's {b['loss']:.6f}")
        if _rel(a["grad_norm"], b["grad_norm"], b["grad_norm"]) > TOLERANCE["grad_norm"]:
            problems.append(f"{where}: gradient norm {a['grad_norm']:.6f}, the release's {b['grad_norm']:.6f}")
    if ours["steps"]:
        last = ours["steps"][-1]["params"]
        for name, value in golden["final"].items():
            deviation = float(torch.linalg.vector_norm((last[name] - value).double())
                              / torch.linalg.vector_norm(value.double()).clamp_min(1e-12))
            worst["final_parameters"] = max(worst["final_parameters"], deviation)
            if deviation > TOLERANCE["parameters"]:
                problems.append(f"after the last step: {name} is {deviation:.1e} off the release's")
    for t, (a, b) in enumerate(zip(ours["memories"], golden["memories"])):
        if a != b:
            problems.append(f"memory after task {t + 1}: {a}, the release's {b}")
    for t, (a, b) in enumerate(zip(ours["predictions"], golden["predictions"])):
        if not torch.equal(a, b):
            problems.append(f"predictions after task {t + 1}: {int((a != b).sum())} of {len(b)} differ")
    return {"worst": worst, "problems": problems, "steps": len(ours["steps"])}
