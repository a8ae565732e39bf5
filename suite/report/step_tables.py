"""The tables beside the main one, from the same per-group summaries: forgetting and BWT, accuracy after
every step, validation against test, and what the runs cost. Rows are our method variants (published
rows exist for Avg/Last only); columns are grouped by setting, as in the main table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from suite.datasets import dataset_title
from suite.report.aggregate import UPPER_BOUNDS, setting_rank, setting_title, sort_rows
from suite.report.tables import MISSING, Table, best_cells, mean_std, number


@dataclass(frozen=True)
class Column:
    """One column of a per-setting group: its header, its cell's text and the value ranked for bold
    (`better`: 'max', 'min', or None for no ranking)."""

    header: str
    text: Callable[[pd.Series], str]
    value: Callable[[pd.Series], float]
    better: str | None = "max"


def spread(prefix: str, better: str | None = "max", signed: bool = False, header: str = "") -> Column:
    """A mean ± std column of a pooled metric (aggregate.POOLED)."""
    return Column(header or prefix, lambda cell: mean_std(cell[f"{prefix}_mean"], cell[f"{prefix}_std"], signed),
                  lambda cell: cell[f"{prefix}_mean"], better)


def per_setting_table(name: str, title: str, stats: pd.DataFrame, columns: list[Column],
                      notes: list[str] = ()) -> Table:
    """Rows: our method variants; per setting the given columns; best per column in bold (upper bounds
    and missing cells never)."""
    settings = sorted(stats["setting"].unique(), key=setting_rank)
    rows, cells = [], []
    for (method, label), group in sort_rows(stats, ["method", "variant"]).groupby(["method", "label"], sort=False):
        by_setting = group.set_index("setting").reindex(settings)
        row = [label]
        for cell in (by_setting.loc[setting] for setting in settings):
            for column in columns:
                if column.better and method not in UPPER_BOUNDS:
                    sign = 1 if column.better == "max" else -1
                    cells.append((len(rows), len(row), 0, sign * column.value(cell)))
                row.append(column.text(cell))
        rows.append(row)
    return Table(
        name=name, title=title,
        groups=[("", 1)] + [(setting_title(setting), len(columns)) for setting in settings],
        header=["Method"] + [column.header for column in columns] * len(settings),
        rows=rows,
        data=stats,
        bold=best_cells(pd.DataFrame(cells, columns=["row", "col", "block", "value"]).dropna()),
        notes=list(notes),
    )


def forgetting_table(dataset: str, stats: pd.DataFrame) -> Table:
    return per_setting_table(
        f"forgetting_{dataset}",
        f"{dataset_title(dataset)}: forgetting (lower is better) and backward transfer BWT (higher is better), points of top-1 "
        "accuracy on the test split, mean ± sample std over runs",
        stats, [spread("forgetting", "min", header="Forgetting"), spread("bwt", "max", signed=True, header="BWT")],
        notes=["Forgetting: mean over old tasks of (best earlier accuracy − final accuracy); BWT: mean over old "
               "tasks of (final accuracy − accuracy right after learning it). A single task has neither."],
    )


def validation_table(dataset: str, stats: pd.DataFrame) -> Table:
    return per_setting_table(
        f"validation_{dataset}",
        f"{dataset_title(dataset)}: Avg and Last top-1 accuracy (%) on the validation split (held out of the training images, "
        "data.validation_fraction) beside the test split, mean ± sample std over runs",
        stats, [spread("val_avg", header="Avg val."), spread("val_last", header="Last val."),
                spread("avg", None, header="Avg test"), spread("last", None, header="Last test")],
        notes=["Runs without a validation split show a dash in its columns. Choose settings on the validation "
               "columns (a sweep's select_on: validation); report the test columns."],
    )


def cost_table(dataset: str, stats: pd.DataFrame) -> Table:
    return per_setting_table(
        f"cost_{dataset}",
        f"{dataset_title(dataset)}: what the runs cost: the learner's wall time per run (minutes, mean over runs) and the "
        "device-hours of all the group's runs (wall time × workers)",
        stats, [Column("Min / run", lambda cell: number(cell["time_s"] / 60, 1), lambda cell: cell["time_s"], None),
                Column("Device-h", lambda cell: number(cell["device_hours"], 3), lambda cell: 0.0, None),
                Column("Device", device_text, lambda cell: 0.0, None)],
        notes=["Device: the kind of the runs' workers × their count (cpu or cuda); times include evaluation and "
               "exemplar selection, not Ray's start-up."],
    )


def parameter_table(dataset: str, curves: pd.DataFrame) -> Table:
    """Parameters used at test time after the first and the last step, and the growth between them."""
    ends = (curves.dropna(subset=["params_m"]).sort_values("task")
            .groupby(["setting", "method", "variant", "label"], sort=False)["params_m"]
            .agg(first="first", last="last").reset_index())
    return per_setting_table(
        f"params_{dataset}",
        f"{dataset_title(dataset)}: parameters used at test time (millions) after the first and the last step, and the growth "
        "between them",
        ends, [Column("First", lambda cell: number(cell["first"], 3), lambda cell: 0.0, None),
               Column("Last", lambda cell: number(cell["last"], 3), lambda cell: 0.0, None),
               Column("Growth", growth_text, lambda cell: 0.0, None)],
        notes=["Parameters after each step are in results_tidy.csv (num_params)."],
    )


def growth_text(cell: pd.Series) -> str:
    if pd.isna(cell["first"]) or pd.isna(cell["last"]):
        return MISSING
    return f"{100 * (cell['last'] / cell['first'] - 1):+.1f} %"


def device_text(cell: pd.Series) -> str:
    if pd.isna(cell["device"]):
        return MISSING
    return f"{cell['device']} × {cell['world_size']:g}" if pd.notna(cell["world_size"]) else str(cell["device"])


def per_step_table(dataset: str, setting: str, curves: pd.DataFrame) -> Table:
    """Rows: our method variants; columns: top-1 accuracy after each step, headed by the classes seen (the
    upper bound's one task sits under all the classes)."""
    seen = sorted(curves["classes_seen"].unique())
    rows, cells = [], []
    for (method, label), line in sort_rows(curves, ["method", "variant"]).groupby(["method", "label"], sort=False):
        by_seen = line.set_index("classes_seen").reindex(seen)
        if method not in UPPER_BOUNDS:
            cells += [(len(rows), col, 0, value) for col, value in enumerate(by_seen["acc_mean"], start=1)]
        rows.append([label] + [mean_std(cell.acc_mean, cell.acc_std) for cell in by_seen.itertuples()])
    return Table(
        name=f"steps_{dataset}_{setting}",
        title=f"{dataset_title(dataset)}, {setting_title(setting)}: top-1 accuracy (%) on all classes seen after each step, test "
              "split, mean ± sample std over runs",
        groups=[("", 1), ("classes seen", len(seen))],
        header=["Method"] + [f"{count:g}" for count in seen],
        rows=rows,
        data=curves.assign(task=curves["task"] + 1),
        bold=best_cells(pd.DataFrame(cells, columns=["row", "col", "block", "value"]).dropna()),
    )
