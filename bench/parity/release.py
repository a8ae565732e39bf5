"""Run a published release (DAFormer's mainDual.py, DyTox's main.py) and read its accuracies.

The release loads its `--options` files after argparse and lets them override the command line
(mainDual.py/main.py `load_options`), so the scale-down of keys its preset sets (embed_dim,
depth, num_heads, local_up_to_layer, batch sizes, finetuning_epochs) goes in an options file of
our own, layered after the preset; everything else goes through its command-line flags.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import yaml

from bench.parity import proc
from bench.parity.recipe import METHODS, Method, Recipe

WRAPPER = Path(__file__).with_name("wrapper.py")

# Every flag a run passes besides the data, output and seed, and why.
FLAG_NOTES = {
    "--data-set CIFAR": "the 32x32 CIFAR pipeline and normalisation (DyTox's default is IMNET)",
    "--max-task T": "stop after T tasks (the pack holds all 100 classes)",
    "--sched step --decay-epochs 1e9 --warmup-epochs 0": "constant lr (see the recipe)",
    "--device cpu": "no GPU here",
    "--num_workers W --no-pin-mem": "data-loader workers as ours; no pinned memory without a GPU",
}


def overlay(recipe: Recipe) -> dict:
    """The preset's keys that the scale-down changes (an options file, layered last)."""
    return {
        "embed_dim": recipe.embed_dim,
        "depth": recipe.encoder_depth + 1,
        "local_up_to_layer": recipe.encoder_depth,
        "num_heads": recipe.num_heads,
        "patch_size": recipe.patch_size,
        "batch_size": recipe.batch_size,
        "incremental_batch_size": recipe.batch_size,
        # the presets set incremental_lr, and an options file beats --incremental-lr on the command line
        "incremental_lr": recipe.incremental_lr,
        "finetuning_epochs": recipe.finetune_epochs,
    }


def command(method: Method, recipe: Recipe, seed: int, checkout: Path, python: str, data: Path,
            work: Path, name: str) -> list[str]:
    options = work / "scale.yaml"
    options.write_text(yaml.safe_dump(overlay(recipe), sort_keys=False))
    return [
        python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
        str(WRAPPER), str(checkout), method.entry,
        "--options", str(checkout / method.preset), str(options),
        "--data-set", "CIFAR", "--data-path", str(data),
        "--initial-increment", str(recipe.increment), "--increment", str(recipe.increment),
        "--class-order", *map(str, recipe.class_order), "--max-task", str(recipe.tasks),
        "--epochs", str(recipe.epochs), "--base-epochs", str(recipe.epochs),
        "--memory-size", str(recipe.memory), "--seed", str(seed),
        "--lr", str(recipe.lr), "--incremental-lr", str(recipe.incremental_lr), "--finetuning-lr", str(recipe.finetune_lr),
        "--sched", "step", "--decay-epochs", "1e9", "--warmup-epochs", "0",
        "--device", "cpu", "--num_workers", str(recipe.num_workers), "--no-pin-mem",
        "--log-path", str(work / "logs"), "--log-category", "parity",
        "--output-basedir", str(work / "out"), "--name", name,
    ]


def read_logs(work: Path) -> dict:
    """Per-task accuracies from the release's logs_*.json (one line per finished task).

    Each line is written by engine.eval_and_log after the task's last evaluation: `test_acc1` is
    the top-1 on all seen classes, `acc_per_task` continuum's row of the accuracy matrix.
    """
    logs = sorted((work / "logs").rglob("logs_*.json"))
    if not logs:
        raise RuntimeError(f"no logs_*.json under {work / 'logs'}")
    lines = [json.loads(line) for line in logs[-1].read_text().splitlines() if line.strip()]
    tasks = {line["task"]: line for line in lines if "task" in line}
    rows = [tasks[t] for t in sorted(tasks)]
    acc = [float(r["test_acc1"]) for r in rows]
    return {
        "acc": acc,
        "acc_matrix": [[float(a) for a in r["acc_per_task"]] for r in rows],
        "avg_incremental_accuracy": statistics.mean(acc) if acc else None,
        "last_accuracy": acc[-1] if acc else None,
        "log_file": str(logs[-1]),
    }


def run(method: Method, recipe: Recipe, seed: int, checkout: Path, python: str, data: Path,
        work: Path, name: str) -> dict:
    """Train one release run; the record's fields (status, accuracies, wall time, command)."""
    work.mkdir(parents=True, exist_ok=True)
    cmd = command(method, recipe, seed, checkout, python, data, work, name)
    log = work / "stdout.txt"
    rc, wall = proc.run(cmd, log, cwd=work)
    record = {"command": cmd, "options_overlay": overlay(recipe), "wall_s": wall, "rc": rc, "stdout": str(log)}
    try:
        record.update(read_logs(work))
    except RuntimeError as err:
        record["error"] = str(err)
    done = rc == 0 and len(record.get("acc", [])) == recipe.tasks
    record["status"] = "finished" if done else "failed"
    if not done:
        record["log_tail"] = proc.tail(log)
    return record


def checkout_problem(args) -> str | None:
    """What is wrong with --release-python and the checkouts `args.methods` need, in one line, or None."""
    if not args.release_python or not Path(args.release_python).is_file():
        return f"--release-python {args.release_python}: no such interpreter (the release venv's python is needed)"
    for name in args.methods:
        method = METHODS[name]
        checkout = getattr(args, method.release)
        if checkout is None:
            return f"--{method.release} is required to run {name}'s release"
        for rel in (method.entry, "continual", method.preset):
            if not (checkout / rel).exists():
                return f"--{method.release} {checkout}: missing {rel} (expected the release's checkout)"
    return None
