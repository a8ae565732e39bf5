"""Summary frames → display tables (text cells, header groups, best cells to bold).

A `Table` is format-neutral; `render.py` turns it into Markdown, LaTeX, HTML and CSV.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from suite.report.aggregate import UPPER_BOUNDS, Axis, method_label, setting_rank, sort_rows

MISSING = "–"
PER_CLASS = " (per class × classes)"  # marks a memory budget given as memory.per_class
LEAD_COLUMNS = ["Method", "Params (M)"]  # the main table's columns before the settings
SETTING_COLUMNS = ["Avg", "Last", "n"]  # the main table's columns per setting


@dataclass(frozen=True)
class Table:
    """A display table: `groups` span the columns above `header` (empty: a one-row header)."""

    name: str  # file stem under tables/
    title: str
    header: list[str]
    rows: list[list[str]]
    data: pd.DataFrame  # the numbers behind the table, written as CSV
    groups: list[tuple[str, int]] = field(default_factory=list)
    bold: frozenset[tuple[int, int]] = frozenset()
    breaks: frozenset[int] = frozenset()  # rows that start a new block (a rule above them)
    text_columns: int = 1  # the first columns hold text (left-aligned), the others numbers
    notes: list[str] = field(default_factory=list)


def mean_std(mean: float, std: float) -> str:
    """'72.00 ± 2.00'; the mean alone for a single run; a dash when there is none."""
    if pd.isna(mean):
        return MISSING
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def number(value: float, digits: int = 2, signed: bool = False) -> str:
    return MISSING if pd.isna(value) else f"{value:{'+' if signed else ''}.{digits}f}"


def best_cells(cells: pd.DataFrame) -> frozenset[tuple[int, int]]:
    """Cells (row, col, block, value) holding their column's highest value (at 2 decimals) per block."""
    if cells.empty:
        return frozenset()
    rounded = cells.assign(value=cells["value"].round(2))
    best = rounded["value"] == rounded.groupby(["block", "col"])["value"].transform("max")
    return frozenset(zip(rounded.loc[best, "row"], rounded.loc[best, "col"]))


def main_table(dataset: str, stats: pd.DataFrame, references: pd.DataFrame) -> Table:
    """Rows: published results, our methods, our difference to the published result of the same
    method. Columns: Params (M), then Avg, Last and n per setting. Best Avg/Last in bold."""
    settings = sorted(stats["setting"].unique(), key=setting_rank)
    published = references[(references["dataset"] == dataset) & references["setting"].isin(settings)]
    scored = published_rows(published, settings) + our_rows(stats, settings)
    differences = difference_rows(stats, published, settings)
    rows = [row for row, _ in scored] + differences
    cells = pd.DataFrame(
        [(index, col, 0, value) for index, (_, values) in enumerate(scored) for col, value in values.items()],
        columns=["row", "col", "block", "value"],
    )
    return Table(
        name=f"main_{dataset}",
        title=f"{dataset}: average incremental (Avg) and last (Last) top-1 accuracy, %",
        groups=[("", len(LEAD_COLUMNS))] + [(setting, len(SETTING_COLUMNS)) for setting in settings],
        header=LEAD_COLUMNS + SETTING_COLUMNS * len(settings),
        rows=rows,
        data=main_data(stats, published),
        bold=best_cells(cells.dropna()),
        breaks=frozenset(i for i in (published["label"].nunique(), len(scored)) if 0 < i < len(rows)),
        notes=[f"{label}: {ref['source'].iloc[0]} ({ref['note'].iloc[0]})."
               for label, ref in published.groupby("label", sort=False)],
    )


def published_rows(published: pd.DataFrame, settings: list[str]) -> list[tuple[list[str], dict[int, float]]]:
    """One row per published source: its Avg and Last where it has the setting."""
    rows = []
    for label, ref in published.groupby("label", sort=False):
        by_setting = ref.set_index("setting").reindex(settings)
        row = [label, number(ref["params_m"].iloc[0])]
        for avg, last in zip(by_setting["avg"], by_setting["last"]):
            row += [number(avg), number(last), ""]
        rows.append((row, score_columns(by_setting["avg"], by_setting["last"])))
    return rows


def our_rows(stats: pd.DataFrame, settings: list[str]) -> list[tuple[list[str], dict[int, float]]]:
    """One row per method variant: mean ± std and n per setting (upper bounds never scored)."""
    rows = []
    for (method, label), group in sort_rows(stats, ["method", "variant"]).groupby(["method", "label"], sort=False):
        by_setting = group.set_index("setting").reindex(settings)
        row = [label, params_range(group["params_m"])]
        for cell in by_setting.itertuples():
            row += [mean_std(cell.avg_mean, cell.avg_std), mean_std(cell.last_mean, cell.last_std),
                    number(cell.n, digits=0)]
        scores = {} if method in UPPER_BOUNDS else score_columns(by_setting["avg_mean"], by_setting["last_mean"])
        rows.append((row, scores))
    return rows


def score_columns(avg: pd.Series, last: pd.Series) -> dict[int, float]:
    """Column index → value of the Avg and Last cells of one main-table row."""
    first = [len(LEAD_COLUMNS) + len(SETTING_COLUMNS) * index for index in range(len(avg))]
    return {col: value for col, value in zip(first, avg)} | {col + 1: value for col, value in zip(first, last)}


def difference_rows(stats: pd.DataFrame, published: pd.DataFrame, settings: list[str]) -> list[list[str]]:
    """'Δ ours − published' per setting, for each of our rows whose method has a published result."""
    rows = []
    for (method, label), group in sort_rows(stats, ["method", "variant"]).groupby(["method", "label"], sort=False):
        ours = group.set_index("setting").reindex(settings)
        for ref_label, ref in published[published["method"] == method].groupby("label", sort=False):
            theirs = ref.set_index("setting").reindex(settings)
            row = [f"Δ {label} − {ref_label}", ""]
            for avg, last in zip(ours["avg_mean"] - theirs["avg"], ours["last_mean"] - theirs["last"]):
                row += [number(avg, signed=True), number(last, signed=True), ""]
            rows.append(row)
    return rows


def params_range(params_m: pd.Series) -> str:
    """Parameters after the last task, in millions; a range when it differs across settings."""
    low, high = params_m.min(), params_m.max()
    return number(low) if pd.isna(low) or round(low, 2) == round(high, 2) else f"{low:.2f}–{high:.2f}"


def main_data(stats: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Our summaries and the published numbers in one long frame (the CSV)."""
    ours = stats.assign(source="ours")
    theirs = published.rename(columns={"avg": "avg_mean", "last": "last_mean"}).assign(variant="")
    columns = ["source", "dataset", "setting", "method", "variant", "label", "params_m",
               "avg_mean", "avg_std", "avg_min", "avg_max", "last_mean", "last_std", "last_min", "last_max", "n"]
    return pd.concat([theirs, ours], ignore_index=True).reindex(columns=columns)


def ablation_table(dataset: str, stats: pd.DataFrame, axis: Axis) -> Table:
    """One row per axis value within each group of otherwise-equal runs; best per group in bold."""
    rows, cells, breaks = [], [], []
    blocks = stats.groupby(["setting", "method", "variant", "memory_mode"], sort=False, dropna=False)
    for block, ((setting, method, variant, mode), group) in enumerate(blocks):
        breaks.append(len(rows))
        label = method_label(method, variant)
        for _, cell in group.iterrows():
            value = f"{cell[axis.column]:g}" + (PER_CLASS if mode == "per_class" else "")
            cells += [(len(rows), 3, block, cell["avg_mean"]), (len(rows), 4, block, cell["last_mean"])]
            rows.append([label, setting, value, mean_std(cell["avg_mean"], cell["avg_std"]),
                         mean_std(cell["last_mean"], cell["last_std"]), str(cell["n"])])
    return Table(
        name=f"ablation_{axis.name}_{dataset}",
        title=f"{dataset}: accuracy against {axis.title}, %",
        header=["Method", "Setting", axis.title.capitalize(), "Avg", "Last", "n"],
        text_columns=2,
        rows=rows,
        data=stats,
        bold=best_cells(pd.DataFrame(cells, columns=["row", "col", "block", "value"])),
        breaks=frozenset(breaks[1:]),
    )


RUN_COLUMNS = {
    "run": "Run", "dataset": "Dataset", "setting": "Setting", "method": "Method", "status": "Status",
    "order": "Order", "seed": "Seed", "num_keys": "Keys", "memory_budget": "Memory", "tasks_done": "Tasks",
    "avg_incremental_accuracy": "Avg", "last_accuracy": "Last", "forgetting": "Forgetting", "bwt": "BWT",
    "bwt_all_pairs": "BWT (all pairs)", "params_m": "Params (M)", "total_time_s": "Time (s)",
}


def runs_table(runs: pd.DataFrame) -> Table:
    """Every run, finished or not, with its final metrics."""
    data = runs.assign(params_m=runs["num_params"] / 1e6)[list(RUN_COLUMNS) + ["n_tasks", "memory_mode", "error"]]
    return Table(
        name="runs",
        title="Every run: final metrics (forgetting, BWT, BWT over all pairs in points of accuracy)",
        header=list(RUN_COLUMNS.values()),
        text_columns=6,
        rows=[run_row(run) for run in data.itertuples(index=False)],
        data=data,
        notes=[f"{run.run}: failed: {first_line(run.error)}" for run in data.itertuples() if run.status == "failed"],
    )


def first_line(error: str | float | None) -> str:
    return str(error).strip().splitlines()[0] if pd.notna(error) and str(error).strip() else "no error message"


def run_row(run) -> list[str]:
    memory = MISSING if pd.isna(run.memory_budget) else f"{run.memory_budget:g}"
    return [
        run.run, run.dataset, run.setting, run.method, run.status, run.order,
        MISSING if pd.isna(run.seed) else f"{run.seed:g}",
        MISSING if pd.isna(run.num_keys) else f"{run.num_keys:g}",
        memory + (PER_CLASS if run.memory_mode == "per_class" else ""),
        f"{run.tasks_done}/{run.n_tasks}",
        number(run.avg_incremental_accuracy), number(run.last_accuracy), number(run.forgetting),
        number(run.bwt, signed=True), number(run.bwt_all_pairs, signed=True), number(run.params_m),
        number(run.total_time_s, digits=0),
    ]
