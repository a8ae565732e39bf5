"""Summary frames → display tables (text cells, header groups, best cells to bold).

A `Table` is format-neutral; `render.py` turns it into Markdown, LaTeX, HTML and CSV.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from suite.datasets import TOP5_DATASETS, dataset_title
from suite.methods import METHODS
from suite.report.aggregate import RUN_GROUP, UPPER_BOUNDS, Axis, setting_rank, setting_title, sort_rows
from suite.report.load import own_classifier
from suite.report.references import DYTOX_TABLE_BACKBONES, MEMORY_PROTOCOLS, PROTOCOL_SWITCH, run_comparison
from suite import schema

MISSING = "–"
PER_CLASS = " (per class × classes)"  # marks a memory budget given as memory.per_class
# The main table's metric columns per setting: (header, our summary's prefix, the references' column).
MAIN_METRICS = (("Avg", "avg", "avg"), ("Last", "last", "last"),
                ("Avg top-5", "avg5", "avg_top5"), ("Last top-5", "last5", "last_top5"))
SIGNIFICANCE_MARK = "†"  # on our cells where the headline method's paired difference is significant


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


def mean_std(mean: float, std: float, signed: bool = False) -> str:
    """'72.00 ± 2.00'; the mean alone for a single run; a dash when there is none."""
    if pd.isna(mean):
        return MISSING
    text = number(mean, signed=signed)
    return text if pd.isna(std) else f"{text} ± {std:.2f}"


def number(value: float, digits: int = 2, signed: bool = False) -> str:
    return MISSING if pd.isna(value) else f"{value:{'+' if signed else ''}.{digits}f}"


def best_cells(cells: pd.DataFrame) -> frozenset[tuple[int, int]]:
    """Cells (row, col, block, value) holding their column's highest value (at 2 decimals) per block; a
    column with one value ranks nothing and bolds nothing."""
    if cells.empty:
        return frozenset()
    rounded = cells.assign(value=cells["value"].round(2))
    group = rounded.groupby(["block", "col"])["value"]
    best = (rounded["value"] == group.transform("max")) & (group.transform("count") > 1)
    return frozenset(zip(rounded.loc[best, "row"], rounded.loc[best, "col"]))


def main_table(dataset: str, stats: pd.DataFrame, references: pd.DataFrame, runs: pd.DataFrame,
               marked: frozenset = frozenset(), mark_note: str = "") -> Table:
    """DyTox's layout. Rows: published results of our runs' memory protocols, our methods, our difference to
    the published result of the same method, memory protocol and recipe, then published results of other
    protocols (never compared). Columns per setting: #P, Avg, Last (and top-5 on ImageNet-like data). Best
    Avg/Last in bold; `marked` (setting, method, variant, metric) cells get a †, which `mark_note` explains."""
    settings = sorted(stats["setting"].unique(), key=setting_rank)
    metrics = MAIN_METRICS[: 4 if dataset in TOP5_DATASETS else 2]
    ours = stats.merge(run_comparison(runs), on=RUN_GROUP, how="left")
    shown = references[(references["dataset"] == dataset) & references["setting"].isin(settings)]
    shown = shown.dropna(subset=[column for _, _, column in metrics], how="all")
    same_protocol = shown["memory_protocol"].isin(ours["memory_protocol"]) & same_backbone(shown, ours)
    compared, listed = shown[same_protocol], shown[~same_protocol]
    layout = MainLayout(settings, metrics)
    views = other_classifiers(runs)
    scored = published_rows(compared, layout) + our_rows(ours, layout, marked, views)
    differences = difference_rows(ours, compared, layout)
    rows = [row for row, _ in scored] + [row for row, _ in differences] + [row for row, _ in
                                                                           published_rows(listed, layout)]
    cells = pd.DataFrame(
        [(index, col, 0, value) for index, (_, values) in enumerate(scored) for col, value in values.items()],
        columns=["row", "col", "block", "value"],
    )
    block_starts = (compared["label"].nunique(), len(scored), len(scored) + len(differences))
    marks = [mark_note] if marked else []
    if views & set(zip(ours["method"], ours["variant"])):
        marks.append("Bold: the best of each method's own classifier; the rows of a run's other classifiers (its "
                     "nearest mean beside its logits, say) are shown, not ranked.")
    return Table(
        name=f"main_{dataset}",
        title=f"{dataset_title(dataset)}: {metric_names(metrics)} accuracy (%) on the test split; #P: parameters (M) after the "
              f"last task. Ours: {spread_caption(ours['n'])}; our runs: {protocol_names(ours['memory_protocol'])}",
        groups=[("", 1)] + [(setting_title(setting), len(layout.columns)) for setting in settings],
        header=["Method"] + layout.columns * len(settings),
        rows=rows,
        data=main_data(ours, shown),
        bold=best_cells(cells.dropna()),
        breaks=frozenset(i for i in block_starts if 0 < i < len(rows)),
        notes=marks + protocol_notes(ours, compared, listed) + [note for _, note in differences]
        + source_notes(shown),
    )


@dataclass(frozen=True)
class MainLayout:
    """The main table's columns: #P then one per metric, for each setting."""

    settings: list[str]
    metrics: tuple[tuple[str, str, str], ...]  # (header, our summary's prefix, the references' column)

    @property
    def columns(self) -> list[str]:
        return ["#P"] + [header for header, _, _ in self.metrics]

    def column(self, setting_index: int, metric_index: int) -> int:
        """The table column of one metric of one setting (0 is the method)."""
        return 1 + setting_index * len(self.columns) + 1 + metric_index


def metric_names(metrics: tuple) -> str:
    top5 = " and top-5" if len(metrics) > 2 else ""
    return f"average incremental (Avg) and last (Last) top-1{top5}"


def spread_caption(n: pd.Series) -> str:
    """'mean ± sample std over n = 3 runs (class orders and seeds)'; the range of n when cells differ."""
    low, high = int(n.min()), int(n.max())
    if high == 1:
        return "one run a cell (no spread)"
    count = f"n = {low} runs" if low == high else f"{low} to {high} runs a cell (n of each in the CSV)"
    alone = "; a single run shows its value alone" if low == 1 else ""
    return f"mean ± sample std over {count} (class orders and seeds){alone}"


def protocol_names(protocols: pd.Series) -> str:
    """'global memory', or 'global memory and per-GPU memory' when runs differ."""
    return " and ".join(MEMORY_PROTOCOLS[protocol] for protocol in protocols.drop_duplicates())


def protocol_notes(ours: pd.DataFrame, compared: pd.DataFrame, listed: pd.DataFrame) -> list[str]:
    """Which memory protocol our runs used, and which published rows are compared with them."""
    by_protocol = ours.drop_duplicates(["memory_protocol", "label"]).groupby("memory_protocol", sort=False)["label"]
    if by_protocol.ngroups == 1:
        runs = f"{protocol_names(ours['memory_protocol'])} ({PROTOCOL_SWITCH[ours['memory_protocol'].iloc[0]]})"
    else:
        runs = "; ".join(f"{MEMORY_PROTOCOLS[protocol]} ({PROTOCOL_SWITCH[protocol]}) for {', '.join(labels)}"
                         for protocol, labels in by_protocol)
    notes = [f"Memory protocol of our runs: {runs}."]
    if not compared.empty:
        notes.append(f"Published rows above ours share our runs' memory protocol "
                     f"({protocol_names(compared['memory_protocol'])}) and, for a CNN baseline, its backbone; a Δ "
                     "row compares our runs only with the published result of the same method, memory protocol, "
                     "backbone and (for DyTox) recipe.")
    if not listed.empty:
        notes.append(f"Published rows at the bottom: {protocol_names(listed['memory_protocol'])}, run under another "
                     "protocol than ours (another memory protocol, of which this suite has no distributed memory, or "
                     "another baseline protocol: backbone, class orders, schedule), listed for information and "
                     "never compared.")
    return notes


def source_notes(published: pd.DataFrame) -> list[str]:
    """Per published row: its source, note, memory protocol, GPU count and recipe."""
    return [f"{label}: {ref['source'].iloc[0]} ({reference_facts(ref.iloc[0])})."
            for label, ref in published.groupby("label", sort=False)]


def reference_facts(ref: pd.Series) -> str:
    """'2000 exemplars in one global memory; global memory, 2 GPUs, recipe DyTox'."""
    lead = f"{ref['note']}; " if pd.notna(ref["note"]) else ""
    return lead + protocol_facts(ref)


def protocol_facts(ref: pd.Series) -> str:
    """'global memory, 2 GPUs, recipe DyTox' for a published result."""
    gpus = "GPU count not given" if pd.isna(ref["gpus"]) else f"{ref['gpus']:g} GPUs"
    recipe = f", recipe {ref['recipe']}" if pd.notna(ref["recipe"]) else ""
    backbone = f", backbone {ref['backbone']}" if pd.notna(ref["backbone"]) else ""
    return f"{MEMORY_PROTOCOLS[ref['memory_protocol']]}, {gpus}{recipe}{backbone}"


def published_rows(published: pd.DataFrame, layout: MainLayout) -> list[tuple[list[str], dict[int, float]]]:
    """One row per published source: its #P and numbers where it has the setting."""
    rows = []
    for label, ref in published.groupby("label", sort=False):
        by_setting = ref.set_index("setting").reindex(layout.settings)
        row, scores = [label], {}
        for s_index, (_, cell) in enumerate(by_setting.iterrows()):
            row.append(number(cell["params_m"]))
            for m_index, (_, _, column) in enumerate(layout.metrics):
                row.append(number(cell[column]))
                scores[layout.column(s_index, m_index)] = cell[column]
        rows.append((row, scores))
    return rows


def other_classifiers(runs: pd.DataFrame) -> set[tuple[str, str]]:
    """(method, variant) of the rows that show a run as another classifier than its own judged it."""
    views = runs.drop(own_classifier(runs).index)
    return set(zip(views["method"], views["variant"]))


def our_rows(stats: pd.DataFrame, layout: MainLayout, marked: frozenset,
             unranked: set = frozenset()) -> list[tuple[list[str], dict[int, float]]]:
    """One row per method variant: #P and mean ± std per setting (upper bounds and the `unranked`
    (method, variant) rows never scored, and the bounds' Avg left blank, as DyTox's table has it: they
    train one task); a † where the headline's paired difference is significant."""
    rows = []
    for (method, variant, label), group in sort_rows(stats, ["method", "variant"]).groupby(
            ["method", "variant", "label"], sort=False):
        by_setting = group.set_index("setting").reindex(layout.settings)
        row, scores = [label], {}
        for s_index, (setting, cell) in enumerate(by_setting.iterrows()):
            row.append(number(cell["params_m"]))
            for m_index, (_, prefix, _) in enumerate(layout.metrics):
                if method in UPPER_BOUNDS and prefix.startswith("avg"):  # one task: no incremental average
                    row.append(MISSING)
                    continue
                mark = SIGNIFICANCE_MARK if (setting, method, variant, prefix) in marked else ""
                row.append(mean_std(cell[f"{prefix}_mean"], cell[f"{prefix}_std"]) + mark)
                scores[layout.column(s_index, m_index)] = cell[f"{prefix}_mean"]
        rows.append((row, {} if method in UPPER_BOUNDS or (method, variant) in unranked else scores))
    return rows


def same_backbone(published: pd.DataFrame, ours: pd.DataFrame) -> pd.Series:
    """Published rows of no backbone or of one our runs' protocols share: our CNN runs' backbones, and,
    with transformer runs among ours, the DyTox table's (its baselines are their context). The others,
    another protocol's, are listed apart."""
    shared = set(ours["backbone"].dropna())
    if ours["backbone"].isna().any():
        shared |= set(DYTOX_TABLE_BACKBONES)
    return published["backbone"].isna() | published["backbone"].isin(shared)


def difference_rows(ours: pd.DataFrame, compared: pd.DataFrame, layout: MainLayout) -> list[tuple[list[str], str]]:
    """'Δ ours − published' per setting, with a note naming what is compared, for each of our rows and each
    published result of its method, memory protocol and recipe (a reference without recipe: any recipe)."""
    rows = []
    for (method, label), group in sort_rows(ours, ["method", "variant"]).groupby(["method", "label"], sort=False):
        mine = group.set_index("setting").reindex(layout.settings)
        for ref_label, ref in compared[compared["method"] == method].groupby("label", sort=False):
            theirs = ref.set_index("setting").reindex(layout.settings)
            same = (mine["memory_protocol"] == theirs["memory_protocol"]) & (
                theirs["recipe"].isna() | (theirs["recipe"] == mine["recipe"])) & (
                theirs["backbone"].isna() | (theirs["backbone"] == mine["backbone"]))
            if not same.any():
                continue
            row = [f"Δ {label} − {ref_label}"]
            for setting in layout.settings:
                row.append("")
                for _, prefix, column in layout.metrics:
                    difference = mine.at[setting, f"{prefix}_mean"] - theirs.at[setting, column]
                    row.append(number(difference if same[setting] else float("nan"), signed=True))
            rows.append((row, difference_note(row[0], mine[same], theirs[same].iloc[0])))
    return rows


def difference_note(difference: str, mine: pd.DataFrame, ref: pd.Series) -> str:
    """'Δ DyTox − DyTox (erratum, 2k global memory): our runs with global memory, recipe DyTox, 2 worker(s);
    the published figures: global memory, 2 GPUs, recipe DyTox.'"""
    recipe = f", recipe {mine['recipe'].iloc[0]}" if pd.notna(mine["recipe"].iloc[0]) else ""
    recipe += f", backbone {mine['backbone'].iloc[0]}" if pd.notna(mine["backbone"].iloc[0]) else ""
    workers = ", ".join(f"{count:g}" for count in mine["workers"].drop_duplicates())
    return (f"{difference}: our runs with {MEMORY_PROTOCOLS[mine['memory_protocol'].iloc[0]]}{recipe}, "
            f"{workers} worker(s); the published figures: {protocol_facts(ref)}.")


def main_data(ours: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Our summaries and the published numbers in one long frame (the CSV), each with its memory protocol."""
    theirs = published.rename(columns={reference: f"{prefix}_mean" for _, prefix, reference in MAIN_METRICS})
    columns = ["source", "dataset", "setting", "method", "variant", "label", "memory_protocol", "recipe", "backbone",
               "gpus",
               "workers", "params_m", *(f"{prefix}_{stat}" for _, prefix, _ in MAIN_METRICS
                                        for stat in ("mean", "std", "min", "max")), "n"]
    theirs = theirs.assign(variant="")
    return pd.concat([theirs, ours.assign(source="ours")], ignore_index=True).reindex(columns=columns)


def ablation_table(dataset: str, stats: pd.DataFrame, axis: Axis) -> Table:
    """One row per axis value within each group of otherwise-equal runs; best per group in bold."""
    rows, cells, breaks = [], [], []
    blocks = stats.groupby(["setting", "method", "variant", "memory_mode"], sort=False, dropna=False)
    for block, ((setting, method, variant, mode), group) in enumerate(blocks):
        breaks.append(len(rows))
        label = group["label"].iloc[0]  # the runs' own label (e.g. "DAFormer-M + KNN (ours)")
        for _, cell in group.iterrows():
            value = f"{cell[axis.column]:g}" + (PER_CLASS if mode == "per_class" else "")
            cells += [(len(rows), 3, block, cell["avg_mean"]), (len(rows), 4, block, cell["last_mean"])]
            rows.append([label, setting, value, mean_std(cell["avg_mean"], cell["avg_std"]),
                         mean_std(cell["last_mean"], cell["last_std"]), str(cell["n"])])
    return Table(
        name=f"ablation_{axis.name}_{dataset}",
        title=f"{dataset_title(dataset)}: accuracy against {axis.title}, %",
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
        notes=[f"{run.run}: failed: {first_line(run.error)}" for run in data.itertuples() if run.status == schema.FAILED],
    )


def first_line(error: str | float | None) -> str:
    return str(error).strip().splitlines()[0] if pd.notna(error) and str(error).strip() else "no error message"


def run_row(run) -> list[str]:
    memory = memory_text(run)
    return [
        run.run, run.dataset, run.setting, run.method, run.status, run.order,
        MISSING if pd.isna(run.seed) else f"{run.seed:g}",
        MISSING if pd.isna(run.num_keys) else f"{run.num_keys:g}",
        memory,
        f"{run.tasks_done}/{run.n_tasks}",
        number(run.avg_incremental_accuracy), number(run.last_accuracy), number(run.forgetting),
        number(run.bwt, signed=True), number(run.bwt_all_pairs, signed=True), number(run.params_m),
        number(run.total_time_s, digits=0),
    ]


def memory_text(run) -> str:
    """The run's rehearsal budget; 'none' for methods that keep no memory (finetune, joint)."""
    if run.method in METHODS and not METHODS[run.method].rehearsal:
        return "none"
    if pd.isna(run.memory_budget):
        return MISSING
    return f"{run.memory_budget:g}" + (PER_CLASS if run.memory_mode == "per_class" else "")


def class_order_table(dataset: str, setting: str, order: str, tasks: pd.DataFrame) -> Table:
    """The classes of each task of one class order (names where the data set has them)."""
    data = tasks[["task", "task_classes"]].drop_duplicates("task").sort_values("task")
    return Table(
        name=f"classes_{dataset}_{setting}_{order}".replace(":", "").replace("/", "_"),
        title=f"{dataset_title(dataset)} {setting}, class order {order}: the classes of each task",
        header=["Task", "Classes"],
        rows=[[str(task + 1), classes] for task, classes in data.itertuples(index=False)],
        data=data.assign(task=data["task"] + 1),
        text_columns=2,
    )
