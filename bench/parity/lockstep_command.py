"""python -m bench.parity lockstep: the releases' own training code beside ours, step by step.

    python -m bench.parity lockstep --daformer CHECKOUT --dytox CHECKOUT --release-python PY

For each method: our learner runs the lockstep (bench/parity/lockstep.py), the release's code runs
it on our initial weights in the release's venv (bench/parity/lockstep_release.py), every step
is compared; the certificate goes to OUT/lockstep.md (+ .json) and the release's trajectory to
the golden files the test suite replays (tests/golden/).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from bench.parity import golden, meta, proc, release
from bench.parity.lockstep import (
    REPO, Setup, compare, float_floor, make_inputs, release_view, run_ours, task_positions,
)
from bench.parity.recipe import METHODS

DRIVER = Path(__file__).with_name("lockstep_release.py")
GOLDEN = REPO / "tests" / "golden"


def golden_path(method: str) -> Path:
    return GOLDEN / f"{method.lower()}.json"


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.parity lockstep", description=__doc__.split("\n")[0])
    p.add_argument("--daformer", type=Path, help="DAFormer release checkout (mainDual.py, continual/, options/)")
    p.add_argument("--dytox", type=Path, help="DyTox release checkout (main.py, continual/, options/)")
    p.add_argument("--release-python", required=True, help="python of the release venv (timm 0.4.9, continuum)")
    p.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=sorted(METHODS))
    p.add_argument("--out", type=Path, default=REPO / "reports" / "parity")
    p.add_argument("--work-dir", type=Path, default=Path("/work/parity-work/lockstep"))
    p.add_argument("--no-golden", action="store_true", help="compare only; leave tests/golden/ as it is")
    return p.parse_args(argv)


def run_release(args, name: str, setup: Setup, inputs: dict, init: dict, work: Path) -> dict:
    method = METHODS[name]
    checkout = getattr(args, method.release).resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "trajectory.pt").unlink(missing_ok=True)
    spec = {"entry": method.entry, "preset_path": str(checkout / method.preset),
            "release_options": setup.release_options(), "tasks": task_positions(setup),
            "task_sizes": [setup.classes_per_task] * setup.tasks, "seed": setup.seed, "lambdas": inputs["lambdas"]}
    (work / "spec.json").write_text(json.dumps(spec, indent=1) + "\n")
    torch.save({**{k: v for k, v in inputs.items() if k != "lambdas"},
                "init": {t: release_view(values) for t, values in init.items()}}, work / "inputs.pt")
    rc, wall = proc.run([args.release_python, str(DRIVER), str(checkout), str(work)], work / "release.log", cwd=checkout)
    if rc != 0:
        raise SystemExit(f"the {name} release's lockstep failed (exit {rc}); its log ends:\n{proc.tail(work / 'release.log')}")
    print(f"[lockstep] {name}: the release's side took {wall:.0f} s", flush=True)
    return torch.load(work / "trajectory.pt", weights_only=False)


def unused_release_parameters(release: dict, mapped: set[str]) -> list[str]:
    """Release parameters with no counterpart of ours that never change (built, never applied);
    one that changes is a difference and stays in the comparison's problems."""
    first, last = release["steps"][0]["params"], release["steps"][-1]["params"]
    return sorted(n for n in set(last) - mapped if n in first and torch.equal(first[n], last[n]))


def lockstep_one(args, name: str) -> dict:
    setup = Setup(name)
    inputs = make_inputs(setup)
    ours = run_ours(setup, inputs)
    trajectory = run_release(args, name, setup, inputs, ours["init"], args.work_dir.resolve() / name.lower())
    mapped = set(ours["steps"][-1]["params"])
    trajectory["unused"] = unused_release_parameters(trajectory, mapped)
    result = compare(ours, trajectory)
    result["floor"] = float_floor(setup, inputs, ours)
    source = meta.source(getattr(args, METHODS[name].release).resolve())
    if not args.no_golden:
        golden.write(golden_path(name), setup, ours["init"], trajectory, {"release_commit": source["commit"],
                     "release_tree_sha256": source["tree_sha256"], "suite_commit": meta.git_commit()}, mapped)
    return {"method": name, "setup": asdict(setup), "source": source, "unused": trajectory["unused"], **result}


QUANTITIES = (("loss_rel", "loss"), ("grad_rel", "grad_norm"), ("param_rel", "parameters"))  # compare's, golden's


def worst(result: dict, key: str) -> float:
    return max(phase[key] for phase in result["worst"].values())


def verdict(result: dict) -> str:
    within = all(worst(result, key) <= golden.TOLERANCE[name] for key, name in QUANTITIES)
    memories = all(t["memory_equal"] for t in result["tasks"])
    predictions = all(t["predictions_equal"] for t in result["tasks"])
    ok = within and memories and predictions and not result["problems"]
    figures = ", ".join(f"{name.replace('_', ' ')} {worst(result, key):.1e} (bound {golden.TOLERANCE[name]:.0e})"
                        for key, name in QUANTITIES)
    return (f"**{'holds' if ok else 'does not hold'}**: {sum(p['steps'] for p in result['worst'].values())} "
            f"optimizer steps, largest relative deviation: {figures}; memories "
            f"{'identical' if memories else 'differ'}; test predictions {'identical' if predictions else 'differ'}")


def certificate(results: list[dict], info: dict) -> str:
    lines = ["# Lockstep certificate: the releases' training code and ours, step by step", "",
             f"Written by `{info['command']}` on {info['written']} at our commit `{info['commit']}`"
             f"{' (with uncommitted changes)' if info['dirty'] else ''}; machine: {info['machine']}.", "",
             "How it is made: bench/parity/lockstep.py (our side) and lockstep_release.py (the release's side, in "
             "the release's venv on its checkout). Both start from our initial weights (every parameter each task "
             "creates, loaded into the release's model under its names), read the same pre-augmented batches in the "
             "same order with the same MixUp λ, drop-path off; the release's task loop is re-sequenced from its "
             "main() (each step cites the line it follows) and everything inside a step is the release's own code "
             "(engine.train_one_epoch, its SAM, Mixup, criterion, freeze, create_optimizer, rehearsal Memory). "
             "Deviations are relative: |ours − release| / |release| for losses and gradient norms, "
             "‖ours − release‖ / ‖release‖ per parameter tensor (the worst tensor per step). GPSA's positional-score "
             "bias is left out: its gradient is zero in exact arithmetic (a constant per softmax row), so Adam moves it "
             "by rounding alone, with no effect on any output (bench/parity/lockstep.py, SHIFT_INVARIANT). "
             "The bounds and why they are not 1e-5 for parameters: bench/parity/golden.py, TOLERANCE.", "",
             "Where the release is not driven this way, and what is compared instead: its data pipeline (both "
             "sides read the same pre-augmented images; the augmentation policies are compared value for value in "
             "tests/test_fidelity.py), its learning-rate schedules (timm's per-epoch cosine cannot be matched step "
             "by step: both sides run a constant lr, as the statistical comparison does), drop-path (off; the masks "
             "are compared by reading the code, reports/parity/DIFFERENCES.md), initialisation (ours is loaded into "
             "the release; the first key's init follows the release's code), torch.distributed (one process) and "
             "the releases' CUDA calls (patched for the CPU by bench/parity/wrapper.py).", "",
             f"Release venv: {info['release_versions']}. Ours: {info['ours_versions']}.", ""]
    for r in results:
        s = r["setup"]
        lines += [f"## {r['method']}", "", f"Verdict: {verdict(r)}.", "",
                  f"Release: `{r['source']['commit']}` (files sha256 `{r['source']['tree_sha256'][:16]}`). "
                  f"Setup: {s['tasks']} tasks of {s['classes_per_task']} classes, {s['per_class']} images per class, "
                  f"{s['image_size']}×{s['image_size']} images, patch {s['patch_size']}, embed {s['embed_dim']}, "
                  f"{s['encoder_depth']} GPSA block + the task block, {s['num_heads']} heads, batch {s['batch_size']}, "
                  f"{s['epochs']} epochs a task, {s['finetune_epochs']} of balanced finetuning, memory {s['memory']}, "
                  f"seed {s['seed']}.", ""]
        if r["unused"]:
            lines += [f"Release parameters with no counterpart here, never changed (built and never applied): "
                      f"{', '.join(r['unused'])}.", ""]
        lines += ["Largest relative deviation per phase, against the release and, as the float floor, ours against "
                  "ours with every initial weight moved by one float32 rounding:", "",
                  "| phase | steps | loss | gradient norm | parameters | floor: loss | floor: gradient norm | floor: parameters |",
                  "|---|---|---|---|---|---|---|---|"]
        for phase, w in r["worst"].items():
            f = r["floor"][phase]
            lines.append(f"| {phase} | {w['steps']} | {w['loss_rel']:.1e} | {w['grad_rel']:.1e} | {w['param_rel']:.1e} | "
                         f"{f['loss_rel']:.1e} | {f['grad_rel']:.1e} | {f['param_rel']:.1e} |")
        lines += ["", "| after task | memory (pool positions, in memory order) | same as the release's | "
                  "test predictions differing |", "|---|---|---|---|"]
        for t in r["tasks"]:
            lines.append(f"| {t['task'] + 1} | {' '.join(map(str, t['memory']))} | {'yes' if t['memory_equal'] else 'no: ' + ' '.join(map(str, t['release_memory']))} "
                         f"| {t['predictions_differing']} of {t['test_images']} |")
        lines += ["", "<details><summary>every step</summary>", "",
                  "| step | task | phase | epoch | loss (ours) | loss (release) | loss dev. | grad dev. | worst parameter | dev. |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in r["steps"]:
            lines.append(f"| {row['step']} | {row['task'] + 1} | {row['phase']} | {row['epoch'] + 1} | {row['loss']:.6f} | "
                         f"{row['release_loss']:.6f} | {row['loss_rel']:.1e} | {row['grad_rel']:.1e} | "
                         f"{row['param_worst']} | {row['param_rel']:.1e} |")
        lines += ["", "</details>", ""]
        if r["problems"]:
            lines += ["Problems:", *[f"- {p}" for p in r["problems"]], ""]
    return "\n".join(lines)


def main(argv) -> int:
    args = parse(argv)
    problem = release.checkout_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    results = [lockstep_one(args, name) for name in args.methods]
    for r in results:
        print(f"[lockstep] {r['method']}: {verdict(r)}", flush=True)
    info = {"command": "python -m bench.parity lockstep " + " ".join(argv), "written": datetime.datetime.now().isoformat(timespec="minutes"),
            "commit": meta.git_commit(), "dirty": meta.suite_dirty(), "machine": meta.machine_line(meta.machine()),
            "release_versions": meta.versions(args.release_python), "ours_versions": meta.versions(sys.executable)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lockstep.md").write_text(certificate(results, info) + "\n")
    (args.out / "lockstep.json").write_text(json.dumps({"info": info, "results": [
        {k: v for k, v in r.items() if k != "steps"} | {"steps": r["steps"]} for r in results]}, indent=1, default=str) + "\n")
    print(f"[lockstep] certificate: {args.out / 'lockstep.md'}", flush=True)
    return 0
