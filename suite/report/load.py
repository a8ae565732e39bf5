"""Every results.json under a directory → one tidy DataFrame, one row per run per task.

Run-level fields (status, method, metrics, derived axes, the flattened config as `cfg.*`
columns) repeat on each of a run's task rows. A run that has not finished a task yet keeps
one row with an empty task. Unreadable or incomplete files are skipped with a warning on
stderr naming them.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from suite.errors import UserError
from suite.methods import METHODS
from suite import schema
CLASSIFIER_COLUMN = "cfg.classifier"  # read as a config key by the variant labels: 'iCaRL (classifier=cnn)'
NUMERIC_COLUMNS = (
    "seed", "num_keys", "memory_budget", "task", "classes_seen", "acc", "acc_top5", "val_acc", "num_params",
    "memory_used", "task_time_s", *schema.SUMMARY_METRICS, *(f"val_{key}" for key in schema.SUMMARY_METRICS),
    "total_time_s", "world_size",
)


def load_results(results_dir: Path) -> pd.DataFrame:
    """Read every results.json under `results_dir`; raise UserError when there is none to read."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"results directory '{results_dir}' does not exist or is not a directory")
    paths = sorted(results_dir.rglob(schema.RESULTS))
    if not paths:
        raise UserError(f"no {schema.RESULTS} under '{results_dir}'; give the directory of a run or a sweep")
    results, problems = {}, {}
    for path in paths:
        result, problem = schema.read(path)
        if problem:
            problems[path] = problem
        else:
            results[path] = result
    if not results:
        path, problem = next(iter(problems.items()))
        raise UserError(f"none of the {len(paths)} {schema.RESULTS} files under '{results_dir}' could be read "
                        f"('{path}': {problem}); expected results written by suite/run.py")
    for path, problem in problems.items():  # the report goes on without them
        print(f"warning: skipping {path}: {problem}", file=sys.stderr)
    rows = [row for path, result in results.items()
            for view_run, view in classifier_views(result, run_id(path, results_dir))
            for row in run_rows(view, view_run, path)]
    frame = pd.DataFrame(rows)
    return frame.assign(**{
        column: pd.to_numeric(frame[column]) if column in frame else float("nan") for column in NUMERIC_COLUMNS
    })


def run_id(path: Path, results_dir: Path) -> str:
    """The run's directory relative to the scanned one (its own name when it is that directory)."""
    relative = path.parent.relative_to(results_dir).as_posix()
    return results_dir.resolve().name if relative == "." else relative


def classifier_views(result: dict, run: str) -> list[tuple[str, dict]]:
    """A run once per classifier it was measured with (its headline classifier first, under the run's
    own id; another, such as iCaRL's logits beside its nearest mean, as 'RUN#cnn'), each carrying that
    classifier's accuracies and its name in the `classifier` column, which tells them apart in every
    table as a variant does ('classifier=cnn')."""
    headline = result.get("classifier") or "cnn"
    views = [(run, {**result, "classifier": headline})]
    for name, numbers in (result.get("classifiers") or {}).items():
        if name != headline:
            views.append((f"{run}#{name}", {**result, **numbers, "classifier": name, "headline_classifier": False,
                                            "validation": None}))
    return views


def own_classifier(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run once, as its own classifier judged it (the rows of classifier_views' other views left out)."""
    return runs[runs["headline_classifier"].astype(bool)]


def run_rows(result: dict, run: str, path: Path) -> list[dict]:
    """One row per finished task, all carrying the run's fields."""
    fields = run_fields(result, run, path)
    acc = result["acc"]
    if not acc:
        return [fields]
    classes_seen = pd.Series([len(c) for c in result["classes_per_task"]]).cumsum().tolist()
    names = result.get("class_names_per_task") or [[str(c) for c in t] for t in result["classes_per_task"]]
    per_task = {
        "classes_seen": classes_seen,
        "task_classes": [", ".join(t) for t in names],
        "acc": acc,
        "acc_top5": result.get("acc_top5") or [],
        "val_acc": (result.get("validation") or {}).get("acc") or [],
        "acc_row": result["acc_matrix"],
        "num_params": result.get("num_params") or [],
        "memory_used": result.get("memory_size") or [],
        "task_time_s": (result.get("timings") or {}).get("per_task_s") or [],
    }
    return [
        {**fields, "task": task, **{name: _at(values, task) for name, values in per_task.items()}}
        for task in range(len(acc))
    ]


def run_fields(result: dict, run: str, path: Path) -> dict[str, Any]:
    """The run-level columns: identity, derived axes, final metrics and the config keys that tell
    variants apart (a key missing from an older run's config reads as its default)."""
    config = schema.flat_config(result)
    n_tasks = len(result["classes_per_task"])
    n_classes = len(result.get("class_order") or []) or sum(len(c) for c in result["classes_per_task"])
    memory_budget, memory_mode = memory_axis(config, n_classes)
    provenance = result.get("provenance") or {}
    validation = result.get("validation") or {}
    return {
        "run": run,
        "status": result["status"],
        "error": result.get("error"),
        "method": result["method"],
        "dataset": result["dataset"],
        "setting": result["setting"],
        "order": class_order_id(config.get("scenario.class_order")),
        "seed": config.get("seed"),
        "method_name": result.get("label") or method_name(result["method"], config.get("distill.knn_weight") or 0),
        "num_keys": schema.num_keys(result),
        "memory_budget": memory_budget,
        "memory_mode": memory_mode,
        "n_tasks": n_tasks,
        "tasks_done": len(result["acc"]),
        **{key: result.get(key) for key in schema.SUMMARY_METRICS},
        **{f"val_{key}": validation.get(key) for key in schema.SUMMARY_METRICS},
        "validation_fraction": validation.get("fraction"),
        "total_time_s": (result.get("timings") or {}).get("total_s"),
        **{key: provenance.get(key) for key in ("world_size", "device", "host", "git_commit")},
        "path": str(path),
        **{f"cfg.{key}": json.dumps(value, sort_keys=True) for key, value in config.items()
           if key in schema.VARIANT_KEYS},
        CLASSIFIER_COLUMN: json.dumps(result.get("classifier") or "cnn"),
        "headline_classifier": result.get("headline_classifier", True),
    }


def class_order_id(order: Any) -> str:
    """A short, stable name for a class order: its file name, 'seed:N', or a hash of the list."""
    if order is None:
        return "default"
    if isinstance(order, list):
        digest = hashlib.sha1(json.dumps(order).encode()).hexdigest()[:8]
        return f"list:{digest}"
    return str(order)


def method_name(method: str, knn_weight: float) -> str:
    """The label a run of `method` prints under (older results.json files carry none)."""
    return METHODS[method].display_label(knn_weight) if method in METHODS else method


def memory_axis(config: dict[str, Any], n_classes: int) -> tuple[int | None, str]:
    """The rehearsal budget and how it was given: 'total' (memory.size) or 'per_class' (× classes)."""
    per_class = config.get("memory.per_class")
    if per_class is not None:
        return per_class * n_classes, "per_class"
    return config.get("memory.size"), "total"


def _at(values: list, index: int) -> Any:
    return values[index] if index < len(values) else None
