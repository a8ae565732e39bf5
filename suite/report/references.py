"""Published numbers (configs/references.yaml) as a DataFrame, one row per reference and setting, and the
memory protocol and recipe of our runs, which decide the published numbers a run is compared with."""
from __future__ import annotations

import json
import re
from numbers import Real
from pathlib import Path

import pandas as pd
import yaml

from suite.datasets import DATASETS
from suite.errors import UserError
from suite.methods import METHODS
from suite.report.aggregate import RUN_GROUP

DEFAULT_REFERENCES = Path(__file__).resolve().parents[2] / "configs" / "references.yaml"
# How the rehearsal memory was held, as a table cell names it.
MEMORY_PROTOCOLS = {
    "global": "global memory",  # one selection of the whole budget (our default, the baselines')
    "distributed": "distributed memory",  # the budget split across GPUs, sampled apart (no such mode here)
    "per_gpu": "per-GPU memory",  # each GPU selects the whole budget (the DyTox paper; memory.per_worker)
}
# Our runs' protocol: memory.per_worker reproduces DyTox's per-GPU memory; otherwise the memory is global.
PER_WORKER_PROTOCOL = {False: "global", True: "per_gpu"}
PROTOCOL_SWITCH = {protocol: f"memory.per_worker: {json.dumps(flag)}"
                   for flag, protocol in PER_WORKER_PROTOCOL.items()}
RECIPES = ("DyTox", "DyTox+", "DyTox++")
# The backbones of the DyTox table's baselines (DER's protocol), the protocol our transformer runs share.
DYTOX_TABLE_BACKBONES = ("cifar_resnet18", "resnet18", "preact_resnet18")  # the last: its ImageNet DER row
# (MixUp on, ASAM on) → the DyTox model version whose recipe that is.
RECIPE_OF = {(False, False): "DyTox", (True, False): "DyTox+", (True, True): "DyTox++"}
METRICS = ("avg", "last", "avg_top5", "last_top5")
REQUIRED = ("label", "method", "dataset", "memory_protocol", "source", "results")
OPTIONAL = ("gpus", "recipe", "backbone", "note", "params_m")
ENTRY_COLUMNS = ["label", "method", "dataset", "memory_protocol", "gpus", "recipe", "backbone", "source", "note"]
COLUMNS = ENTRY_COLUMNS[:4] + ["setting", *METRICS, "params_m"] + ENTRY_COLUMNS[4:]
SETTING_PATTERN = r"B\d+-\d+steps"


def load_references(path: Path = DEFAULT_REFERENCES) -> pd.DataFrame:
    """Every published result with its protocol and source; empty when the file does not exist.

    Raises UserError, one line naming the file and the entry, when the file is malformed.
    """
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    rows, seen = [], set()
    for number, entry in enumerate(read_entries(path), start=1):
        try:
            rows += reference_rows(entry)
        except ValueError as err:
            raise entry_error(path, number, entry, str(err)) from err
        if (entry["dataset"], entry["label"]) in seen:
            raise entry_error(path, number, entry, f"a second entry of this label for {entry['dataset']}; "
                                                   "labels must be unique per dataset")
        seen.add((entry["dataset"], entry["label"]))
    return pd.DataFrame(rows, columns=COLUMNS)


def entry_error(path: Path, number: int, entry, problem: str) -> UserError:
    """The one-line error 'FILE: entry 3 (LABEL): PROBLEM'."""
    label = entry.get("label", "no label") if isinstance(entry, dict) else "not a mapping"
    return UserError(f"{path}: entry {number} ('{label}'): {' '.join(problem.split())}")


def read_entries(path: Path) -> list:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UserError(f"{path}: not readable YAML ({' '.join(str(err).split())})") from err
    entries = document.get("references") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: expected a non-empty list under 'references:'")
    return entries


def reference_rows(entry) -> list[dict]:
    """One row per setting of one entry; ValueError saying what is wrong with it."""
    if not isinstance(entry, dict):
        raise ValueError("expected a mapping of label, method, dataset, memory_protocol, source, results")
    check_keys(entry, REQUIRED, OPTIONAL)
    check_entry(entry)
    results = entry["results"]
    if not isinstance(results, dict) or not results:
        raise ValueError("results must map settings such as B0-10steps to their numbers")
    return [
        {**{key: entry.get(key) for key in ENTRY_COLUMNS}, "setting": setting,
         **result_numbers(setting, numbers, entry.get("params_m"))}
        for setting, numbers in results.items()
    ]


def check_keys(mapping: dict, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    missing = [key for key in required if key not in mapping]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}")
    unknown = [str(key) for key in mapping if key not in required + optional]
    if unknown:
        raise ValueError(f"unknown key {', '.join(unknown)} (known: {', '.join(required + optional)})")


def check_entry(entry: dict) -> None:
    for key in ("label", "method", "source"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise ValueError(f"{key} must be a non-empty string")
    if entry.get("backbone") is not None and (not isinstance(entry["backbone"], str) or not entry["backbone"].strip()):
        raise ValueError("backbone must be a model.backbone name such as cifar_resnet18, or null")
    check_choice(entry, "dataset", DATASETS)
    check_choice(entry, "memory_protocol", tuple(MEMORY_PROTOCOLS))
    if entry.get("recipe") is not None:
        check_choice(entry, "recipe", RECIPES)
    gpus = entry.get("gpus")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1):
        raise ValueError(f"gpus must be a positive whole number or null, not {gpus!r}")


def check_choice(entry: dict, key: str, choices: tuple[str, ...]) -> None:
    if not isinstance(entry[key], str) or entry[key] not in choices:
        raise ValueError(f"{key} {entry[key]!r} is not one of {', '.join(choices)}")


def result_numbers(setting, numbers, params_m) -> dict[str, float]:
    """The metrics of one setting (missing ones NaN) and its parameter count (the entry's by default)."""
    if not isinstance(setting, str) or not re.fullmatch(SETTING_PATTERN, setting):
        raise ValueError(f"setting '{setting}' is not named like B0-10steps")
    if not isinstance(numbers, dict) or not any(metric in numbers for metric in METRICS):
        raise ValueError(f"{setting} needs at least one of {', '.join(METRICS)}")
    check_keys(numbers, (), METRICS + ("params_m",))
    values = {key: numbers.get(key, params_m if key == "params_m" else None) for key in METRICS + ("params_m",)}
    for key, value in values.items():
        if value is not None and not valid_number(key, value):
            raise ValueError(f"{setting} {key} must be a number{' in 0-100' if key in METRICS else ' > 0'}, "
                             f"not {value!r}")
    return {key: float("nan") if value is None else float(value) for key, value in values.items()}


def valid_number(key: str, value) -> bool:
    if isinstance(value, bool) or not isinstance(value, Real):
        return False
    return 0 <= value <= 100 if key in METRICS else value > 0


def run_comparison(runs: pd.DataFrame) -> pd.DataFrame:
    """Per group of pooled runs (dataset, setting, method, variant): the memory protocol, the DyTox recipe
    its training recipe matches, its CNN backbone (None for a transformer) and its worker count, from the
    runs' `cfg.*` columns (JSON text).

    Runs of one group share their config, so the first run speaks for the group.
    """
    config = runs[RUN_GROUP].assign(
        per_worker=cfg_values(runs, "memory.per_worker").astype(bool),
        mixup=cfg_values(runs, "train.mixup") > 0,
        asam=cfg_values(runs, "train.asam_rho") > 0,
        workers=cfg_values(runs, "ray.num_workers"),
        backbone=[backbone if is_cnn(method) else None
                  for method, backbone in zip(runs["method"], cfg_values(runs, "model.backbone"))],
    ).drop_duplicates(RUN_GROUP)
    return config[RUN_GROUP + ["workers", "backbone"]].assign(
        memory_protocol=config["per_worker"].map(PER_WORKER_PROTOCOL),
        recipe=[None if backbone else RECIPE_OF.get(key)
                for backbone, key in zip(config["backbone"], zip(config["mixup"], config["asam"]))],
    )


def is_cnn(method: str) -> bool:
    return method in METHODS and METHODS[method].architecture == "cnn"


def cfg_values(runs: pd.DataFrame, key: str) -> pd.Series:
    return runs[f"cfg.{key}"].map(json.loads)
