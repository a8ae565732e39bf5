"""Group comparable runs and summarise them: mean, sample std, min, max and count.

Runs are only ever pooled within one dataset, setting and method. Inside that, runs that
differ in a config value (other than seed and class order) are told apart by a *variant*
label naming the differing keys, e.g. "memory.size=500", so they are never averaged together.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pandas as pd

from suite.methods import METHODS
from suite import schema

SETTING_CONFIG_KEYS = ("cfg.scenario.increment", "cfg.scenario.initial_increment")
METHOD_ORDER = tuple(METHODS)
UPPER_BOUNDS = tuple(m.name for m in METHODS.values() if m.bound == "upper")  # shown, but never marked best
RUN_GROUP = ["dataset", "setting", "method", "variant"]


@dataclass(frozen=True)
class Axis:
    """An ablation axis: the run column it reads and the config keys that set it."""

    name: str
    column: str
    config_keys: tuple[str, ...]
    title: str


AXES = (
    Axis("num_keys", "num_keys", ("cfg.model.num_keys",), "number of external keys"),
    Axis("memory_size", "memory_budget", ("cfg.memory.size", "cfg.memory.per_class"), "memory size (exemplars)"),
)


def runs_frame(tasks: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its last task row (final accuracy, final parameter count)."""
    return tasks.sort_values(["run", "task"]).drop_duplicates("run", keep="last").reset_index(drop=True)


def finished_runs(runs: pd.DataFrame, ignore: tuple[str, ...] = ()) -> pd.DataFrame:
    """The finished runs, each with its variant label and display label."""
    finished = runs[runs["status"] == schema.FINISHED]
    if finished.empty:
        return finished.assign(variant=pd.Series(dtype=str), label=pd.Series(dtype=str))
    variant = variant_labels(finished, ignore)
    labels = [method_label(m, v, name) for m, v, name in zip(finished["method"], variant, finished["method_name"])]
    return finished.assign(variant=variant, label=labels)


def variant_labels(runs: pd.DataFrame, ignore: tuple[str, ...] = ()) -> pd.Series:
    """Per run: the config values that tell it apart from other runs of its method and dataset.

    A key counts when it varies inside one setting; it then labels the method's runs in every
    setting, so that rows line up across the columns of the main table.
    """
    config_columns = [
        column for column in runs.columns
        if column.startswith("cfg.") and column not in SETTING_CONFIG_KEYS + ignore
    ]
    labels = [group_variants(group, config_columns) for _, group in runs.groupby(["dataset", "method"])]
    return pd.concat(labels).reindex(runs.index)


def group_variants(runs: pd.DataFrame, config_columns: list[str]) -> pd.Series:
    """Variant labels within one dataset and method."""
    counts = runs.groupby("setting")[config_columns].nunique(dropna=False)
    keys = [column for column in config_columns if (counts[column] > 1).any()]
    if not keys:
        return pd.Series("", index=runs.index)
    return runs[keys].apply(describe_config, axis=1)


def describe_config(values: pd.Series) -> str:
    """'memory.size=500, model.out_proj=false' from cfg.* columns holding JSON text."""
    return ", ".join(
        f"{key.removeprefix('cfg.')}={'unset' if pd.isna(value) else _plain(value)}"
        for key, value in values.items()
    )


def _plain(json_text: str) -> str:
    value = json.loads(json_text)
    return value if isinstance(value, str) else json.dumps(value)


def method_label(method: str, variant: str, name: str | None = None) -> str:
    """'DAFormer-M (memory.size=500)'; `name` is the run's own label ('DAFormer-M + KNN (ours)')."""
    name = name or (METHODS[method].label if method in METHODS else method)
    return f"{name} ({variant})" if variant else name


def method_rank(method: str) -> tuple[int, str]:
    """Known methods in the paper's order (lower bound first, upper bound last), then others."""
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def setting_rank(setting: str) -> tuple[float, float, str]:
    """'B0-10steps' → (0, 10): B0 settings first, then by number of steps."""
    match = re.fullmatch(r"B(\d+)-(\d+)steps", setting)
    return (int(match[1]), int(match[2]), setting) if match else (float("inf"), float("inf"), setting)


# The run metrics a summary pools: its column prefix → the runs' column.
POOLED = {
    "avg": "avg_incremental_accuracy", "last": "last_accuracy",
    "avg5": "avg_incremental_accuracy_top5", "last5": "last_accuracy_top5",
    "forgetting": "forgetting", "bwt": "bwt",
    "val_avg": "val_avg_incremental_accuracy", "val_last": "val_last_accuracy",
}


def setting_title(setting: str) -> str:
    """A setting as papers name it: 'B0-10steps' → '10 steps', 'B50-10steps' → 'B50, 10 steps'."""
    match = re.fullmatch(r"B(\d+)-(\d+)steps", setting)
    if not match:
        return setting
    steps = f"{match[2]} step{'s' if match[2] != '1' else ''}"
    return steps if match[1] == "0" else f"B{match[1]}, {steps}"


def summarize(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group: mean, sample std (ddof=1; empty for a single run), min and max of each pooled metric;
    parameters (M), the learner's time per run, the device-hours of all its runs, the device; n."""
    spread = {f"{prefix}_{stat}": (column, stat) for prefix, column in POOLED.items()
              for stat in ("mean", "std", "min", "max")}
    return (
        runs.assign(device_hours=runs["total_time_s"] * runs["world_size"].fillna(1) / 3600)
        .groupby(by, sort=False, dropna=False)
        .agg(**spread, params_m=("num_params", "mean"), time_s=("total_time_s", "mean"),
             device_hours=("device_hours", "sum"), device=("device", "first"), world_size=("world_size", "max"),
             n=("run", "size"))
        .assign(params_m=lambda frame: frame["params_m"] / 1e6)
        .reset_index()
    )


def main_stats(finished: pd.DataFrame) -> pd.DataFrame:
    """Avg/Last over class orders and seeds per dataset, setting, method and variant."""
    return sort_rows(summarize(finished, RUN_GROUP + ["label"]), RUN_GROUP)


def ablation_stats(runs: pd.DataFrame, axis: Axis) -> pd.DataFrame:
    """Avg/Last per value of `axis`, for groups of otherwise-equal runs that vary it."""
    candidates = runs.dropna(subset=[axis.column])
    finished = finished_runs(candidates, ignore=axis.config_keys)
    group = RUN_GROUP + ["label", "memory_mode"]
    stats = summarize(finished, group + [axis.column])
    varied = stats.groupby(group, dropna=False)[axis.column].transform("nunique") > 1
    return sort_rows(stats[varied], RUN_GROUP + [axis.column])


def curve_stats(tasks: pd.DataFrame, finished: pd.DataFrame) -> pd.DataFrame:
    """Per task of each group of finished runs: accuracy mean/std/min/max, classes seen, parameters."""
    labelled = tasks.dropna(subset=["task"]).merge(finished[["run", "variant", "label"]], on="run")
    return sort_rows(
        labelled.groupby(RUN_GROUP + ["label", "task"], sort=False)
        .agg(
            classes_seen=("classes_seen", "median"),
            acc_mean=("acc", "mean"),
            acc_std=("acc", "std"),
            acc_min=("acc", "min"),
            acc_max=("acc", "max"),
            params_m=("num_params", "mean"),
            n=("run", "nunique"),
        )
        .assign(params_m=lambda frame: frame["params_m"] / 1e6)
        .reset_index(),
        RUN_GROUP + ["task"],
    )


def sort_rows(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Sorted by `by`: settings by steps, methods in the paper's order, anything else as is."""
    keys = {"setting": setting_rank, "method": method_rank}
    return frame.sort_values(
        by, key=lambda column: column.map(keys[column.name]) if column.name in keys else column
    ).reset_index(drop=True)
