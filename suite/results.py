"""The results file of one run: built from the learner's history, written atomically."""
from __future__ import annotations

import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from suite import metrics
from suite.config import Config
from suite.data.scenario import Scenario
from suite.methods import METHODS

REPO = Path(__file__).resolve().parents[1]


def _version(package: str):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def provenance(cfg: Config, world_size: int, device: str) -> dict:
    return {
        "python": platform.python_version(),
        **{pkg: _version(pkg) for pkg in ("torch", "ray", "timm", "continuum")},
        "host": socket.gethostname(),
        "world_size": world_size,
        "device": device,
        "seed": cfg.seed,
        "git_commit": _git_commit(),
    }


def results_document(cfg: Config, scenario: Scenario, history, status: str, prov: dict, error: str | None = None) -> dict:
    done = len(history.acc)
    summary = metrics.summary(history.acc_matrix, history.acc, history.acc_top5) if done else {}
    doc = {
        "status": status,
        "method": cfg.method,
        "label": METHODS[cfg.method].display_label(cfg.distill.knn_weight),
        "dataset": cfg.data.name,
        "setting": scenario.setting,
        "class_order": list(scenario.class_order),
        "classes_per_task": [list(t) for t in scenario.tasks],
        "class_names_per_task": [[scenario.class_names[c] for c in t] for t in scenario.tasks]
        if scenario.class_names else None,
        "tasks_done": done,
        "acc_matrix": history.acc_matrix,
        "acc": history.acc,
        "acc_top5": history.acc_top5,
        "avg_incremental_accuracy": summary.get("avg_incremental_accuracy"),
        "last_accuracy": summary.get("last_accuracy"),
        "avg_incremental_accuracy_top5": summary.get("avg_incremental_accuracy_top5"),
        "last_accuracy_top5": summary.get("last_accuracy_top5"),
        "forgetting": summary.get("forgetting"),
        "bwt": summary.get("bwt"),
        "bwt_all_pairs": summary.get("bwt_all_pairs"),
        "num_params": history.num_params,
        "memory_size": history.memory_size,
        "skipped_batches": history.skipped_batches,
        "timings": {"per_task_s": history.per_task_s, "total_s": sum(history.per_task_s)},
        "config": cfg.to_dict(),
        "provenance": prov,
    }
    if error is not None:
        doc["error"] = error
    return doc
