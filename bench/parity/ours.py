"""Run our suite (suite/run.py --in-process) with the release's recipe, scaled down the same way.

The pack holds all 100 classes (the releases' CIFAR reader wants them); our run keeps the
benchmark's first classes only (`data.max_classes`) and learns them in label order, as the release
learns them with `--max-task`.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from bench.parity import proc
from bench.parity.recipe import Method, Recipe

REPO = Path(__file__).resolve().parents[2]


def wanted_sets(method: Method, recipe: Recipe, seed: int) -> list[str]:
    """Every key the parity run sets on our side."""
    return [
        "data.name=cifar100",
        f"data.num_workers={recipe.num_workers}",
        f"model.embed_dim={recipe.embed_dim}",
        f"model.depth={recipe.encoder_depth}",
        f"model.num_heads={recipe.num_heads}",
        f"model.patch_size={recipe.patch_size}",
        "model.drop_path=0.1",
        f"scenario.increment={recipe.increment}",
        "scenario.initial_increment=0",
        f"data.max_classes={recipe.classes}",
        f"scenario.class_order={json.dumps(list(range(recipe.classes)))}",
        f"memory.size={recipe.memory}",
        "memory.selection=herding",
        "memory.per_worker=false",
        f"train.epochs={recipe.epochs}",
        f"train.batch_size={recipe.batch_size}",
        f"train.lr={recipe.lr}",
        f"train.incremental_lr={recipe.incremental_lr}",
        # a cosine whose floor is its start: eta_min = min(train.min_lr, lr) = lr, a constant lr
        "train.min_lr=1.0",
        "train.weight_decay=0.000001",
        "train.precision=fp32",
        "train.compile=false",
        f"finetune.epochs={recipe.finetune_epochs}",
        f"finetune.lr={recipe.finetune_lr}",
        "ray.num_workers=1",
        f"seed={seed}",
        *method.ours_sets,
    ]


def command(method: Method, recipe: Recipe, seed: int, python: str, data: Path, work: Path, name: str,
            sets: list[str]) -> list[str]:
    cmd = [python, "suite/run.py", method.ours_config, "--in-process", "--data-path", str(data),
           "--output-basedir", str(work), "--name", name, "--set", f"method={method.ours_method}"]
    for item in sets:
        cmd += ["--set", item]
    return cmd


def run(method: Method, recipe: Recipe, seed: int, python: str, data: Path, work: Path, name: str) -> dict:
    if work.exists():
        shutil.rmtree(work)  # a fresh run, never a resumed one
    work.mkdir(parents=True)
    cmd = command(method, recipe, seed, python, data, work, name, wanted_sets(method, recipe, seed))
    results = work / name / "results.json"
    log = work / "stdout.txt"
    rc, wall = proc.run(cmd, log, cwd=REPO)
    record = {"command": cmd, "config_file": method.ours_config, "wall_s": wall,
              "rc": rc, "stdout": str(log), "python": sys.executable}
    if results.is_file():
        res = json.loads(results.read_text())
        acc = res["acc"][: recipe.tasks]
        record.update({
            "acc": acc,
            "acc_matrix": res["acc_matrix"][: recipe.tasks],
            "avg_incremental_accuracy": sum(acc) / len(acc) if acc else None,
            "last_accuracy": acc[-1] if acc else None,
            "memory_size": res.get("memory_size", [])[: recipe.tasks],
            "num_params": res.get("num_params", [])[: recipe.tasks],
            "per_task_s": res.get("timings", {}).get("per_task_s", [])[: recipe.tasks],
            "provenance": res.get("provenance"),
            "resolved_config": res.get("config"),
        })
    done = len(record.get("acc", [])) == recipe.tasks and rc == 0
    record["status"] = "finished" if done else "failed"
    if not done:
        record["log_tail"] = proc.tail(log)
    return record
