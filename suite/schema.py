"""A run's files, defined once for every writer and reader: results.json's keys and statuses, and
the names of the files beside it (log.jsonl's records name a task's phases as suite/methods.py does).

The run layer writes results.json after every task (`document`); the CLI, the sweep summary, the
interruption handler and the report read it (`read`, `parse`, `flat_config`, `num_keys`). A key
added here is added for all of them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from suite import metrics
from suite.config import Config, flatten, keys_where
from suite.errors import UserError
from suite.methods import METHODS

RESULTS = "results.json"
LOG = "log.jsonl"  # one JSON record per epoch, task, checkpoint and resume (suite/run/history.py)
STATUSES = RUNNING, FINISHED, FAILED, INTERRUPTED = ("running", "finished", "failed", "interrupted")
REQUIRED_KEYS = ("status", "method", "dataset", "setting", "acc", "acc_matrix", "classes_per_task", "config")
HEADLINE = ("tasks_done", "avg_incremental_accuracy", "last_accuracy", "forgetting", "bwt")
SUMMARY_METRICS = ("avg_incremental_accuracy", "last_accuracy", "avg_incremental_accuracy_top5", "last_accuracy_top5",
                   "forgetting", "bwt", "bwt_all_pairs")
SPLITS = ("test", "validation")  # what a run's accuracies are measured on: the test's at the top level
# Config keys that tell two variants of a method apart (not where or how a run executed, and not
# the method, seed, data set or class order, which have columns of their own).
VARIANT_KEYS = keys_where("variant", True)
DEFAULTS = flatten(Config().to_dict())


def document(cfg: Config, scenario, history, status: str, provenance: dict, error: str | None = None) -> dict:
    """The results file of a run from the learner's history so far."""
    done = len(history.acc)
    doc = {
        "status": status,
        "method": cfg.method,
        "label": METHODS[cfg.method].display_label(cfg.distill.knn_weight),
        "num_keys": METHODS[cfg.method].num_keys(cfg.model.num_keys, scenario.num_tasks),  # resolved
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
        **_summary(history.acc_matrix, history.acc, history.acc_top5),
        "classifier": METHODS[cfg.method].classifiers[0],
        "classifiers": _classifiers(history),
        "validation": _validation(cfg, history),
        "num_params": history.num_params,
        "memory_size": history.memory_size,
        "skipped_batches": history.skipped_batches,
        "timings": {"per_task_s": history.per_task_s, "total_s": sum(history.per_task_s)},
        "config": cfg.to_dict(),
        "provenance": provenance,
    }
    if error is not None:
        doc["error"] = error
    return doc


def interrupted(doc: dict, signal_name: str, resume: str) -> dict:
    """A results file marked as stopped by `signal_name`, with the command that continues it."""
    return {**doc, "status": INTERRUPTED, "interrupted": {"signal": signal_name, "resume": resume}}


def _summary(acc_matrix: list, acc: list, acc_top5: list) -> dict:
    """SUMMARY_METRICS of the tasks done so far (each None before the first)."""
    summary = metrics.summary(acc_matrix, acc, acc_top5) if acc else {}
    return {key: summary.get(key) for key in SUMMARY_METRICS}


def _classifiers(history) -> dict | None:
    """Each classifier's accuracies, parameters and SUMMARY_METRICS, by name ("cnn": logits, "nme": nearest mean of
    exemplars), for a method with more than one; the top level holds the headline one's (`classifier`)."""
    if not history.by_classifier:
        return None
    return {name: {**numbers, **_summary(numbers["acc_matrix"], numbers["acc"], numbers["acc_top5"])}
            for name, numbers in history.by_classifier.items()}


def _validation(cfg: Config, history) -> dict | None:
    """The same numbers on the validation split (data.validation_fraction); None when it is off."""
    if not cfg.data.validation_fraction:
        return None
    return {"fraction": cfg.data.validation_fraction, "images": history.val_images, "acc": history.val_acc,
            "acc_top5": history.val_acc_top5, "acc_matrix": history.val_acc_matrix,
            **_summary(history.val_acc_matrix, history.val_acc, history.val_acc_top5)}


def split_summary(doc: dict, split: str) -> dict:
    """A results file's SUMMARY_METRICS on `split` (one of SPLITS), None each for a run without it."""
    numbers = doc if split == "test" else doc.get("validation") or {}
    return {key: numbers.get(key) for key in SUMMARY_METRICS}


def read(path: Path) -> tuple[dict | None, str | None]:
    """(the parsed file, None), or (None, why it cannot be used) when it is corrupt or incomplete."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"not valid JSON ({err})"
    if not isinstance(doc, dict):
        return None, "not a JSON object"
    missing = [key for key in REQUIRED_KEYS if key not in doc]
    if missing:
        return None, f"missing {', '.join(missing)}"
    return doc, None


def parse(text: str, where: str) -> dict:
    """A results file's text, or one UserError naming the file when it is not one of ours."""
    try:
        doc = json.loads(text)
        doc["config"].items()
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"'{where}' is not a results file written by suite/run.py ({type(e).__name__}); "
                        "expected JSON with a 'config' section") from None
    return doc


def num_keys(doc: dict) -> int | None:
    """The run's external key count (None: a method without keys); a file written before the count was
    stored resolves it from the method's record, as the run did."""
    if "num_keys" in doc:
        return doc["num_keys"]
    method = METHODS.get(doc["method"])
    return method.num_keys(doc["config"].get("model", {}).get("num_keys"), len(doc["classes_per_task"])) if method else None


def flat_config(doc: dict) -> dict[str, Any]:
    """The run's config as {"dotted.key": value}; a key missing from an older run's file (added to
    the suite since) reads as its default, so that runs differing only in the suite's version agree."""
    return {**DEFAULTS, **flatten(doc["config"])}
