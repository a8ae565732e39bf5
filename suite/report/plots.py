"""Figures as PNG and PDF: accuracy against classes seen, ablation curves,
accuracy-matrix heat maps, training loss and learning rate against epoch. Built on
`matplotlib.figure.Figure` (no pyplot, no backend switch, no global state); each figure is written
atomically. A `*_figure` function builds each figure, its caller saves it."""
from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from suite.atomic import write_bytes
from suite.datasets import dataset_title
from suite.methods import HEADLINE, METHODS, TRAIN
from suite.report.aggregate import Axis, method_rank, setting_rank, setting_title
from suite.report_options import BANDS
from suite import schema

PLOTS_DIR = "plots"
FORMATS = ("png", "pdf")
STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "lines.linewidth": 1.6, "lines.markersize": 4,
    "axes.grid": True, "grid.alpha": 0.3, "savefig.dpi": 120, "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # TrueType fonts in PDFs: editable, accepted by publishers
}
MARKERS = "osD^vP*Xh<>"
LINESTYLES = ("-", "--", "-.", ":")
MAX_TICKS = 10  # per heat-map axis
ANNOTATE_MAX_TASKS = 12  # heat maps print their numbers up to this many tasks, else show a colour bar
PANELS_PER_ROW = 3
PANEL_SIZE = (3.2, 2.6)  # inches
LEGEND_COLUMNS = 3
TASK_BOUNDARY = "_task boundary"  # the label of the vertical lines between tasks (underscore: not in legends)


@dataclass(frozen=True)
class Plot:
    """A written figure: `stem` + '.png' / '.pdf', relative to the report directory."""

    stem: str
    caption: str


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def save(figure: Figure, out_dir: Path, stem: str, caption: str) -> Plot:
    for fmt in FORMATS:
        write_bytes(out_dir / f"{stem}.{fmt}", lambda handle: figure.savefig(handle, format=fmt))
    return Plot(stem, caption)


def line_styles(frame: pd.DataFrame) -> dict[str, dict]:
    """Colour, marker and dash per label of `frame`: a method's colour and marker come from its
    record (suite/methods.py), the same in every figure; the variants of one method in a figure
    (key counts, memory sizes, ...) keep its colour, darker each, with another dash and marker; the
    headline method's lines lie on top."""
    method_of = dict(zip(frame["label"], frame["method"]))
    styles, variants = {}, {}
    for label in method_labels(frame):
        method = METHODS.get(method_of[label])
        base = method.color if method and method.color else _derived_color(method_of[label])
        marker = method.marker if method else MARKERS[0]
        i = variants[method_of[label]] = variants.get(method_of[label], -1) + 1
        styles[label] = {"color": _darker(base, i), "marker": marker if i == 0 else MARKERS[i % len(MARKERS)],
                         "linestyle": LINESTYLES[i % len(LINESTYLES)],
                         "zorder": 3 if method_of[label] == HEADLINE else 2}
    return styles


def _derived_color(name: str) -> tuple:
    """A tab10 colour for a method without one in its record, fixed by its name (not its position)."""
    colors = matplotlib.colormaps["tab10"].colors
    return colors[zlib.crc32(name.encode()) % len(colors)]


def _darker(color, step: int) -> tuple:
    """`color` with its brightness times 0.72 per `step` (0: as it is)."""
    return tuple(channel * 0.72 ** step for channel in matplotlib.colors.to_rgb(color))


# ---------------------------------------------------------------- shared pieces

def method_labels(frame: pd.DataFrame) -> list[str]:
    """The frame's method labels in the papers' order (lower bound first, upper bound last)."""
    return list(frame.sort_values("method", key=lambda column: column.map(method_rank), kind="stable")["label"]
                .unique())


def by_setting(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The frame's settings in the papers' order (B0 first, then by number of steps)."""
    groups = dict(list(frame.groupby("setting", sort=False)))
    return [(setting, groups[setting]) for setting in sorted(groups, key=setting_rank)]


def panels(figure: Figure, count: int) -> list[Axes]:
    """`count` panels sharing the y axis, up to PANELS_PER_ROW a row."""
    ncols = min(count, PANELS_PER_ROW)
    grid = figure.subplots(math.ceil(count / ncols), ncols, sharey=True, squeeze=False).ravel()
    for ax in grid[count:]:
        ax.remove()
    return list(grid[:count])


def panel_figure(count: int, legend_entries: int) -> Figure:
    """A constrained-layout figure sized for `count` panels and a legend of `legend_entries` below them."""
    ncols = min(count, PANELS_PER_ROW)
    legend_rows = math.ceil(legend_entries / LEGEND_COLUMNS)
    width, height = PANEL_SIZE
    return Figure(figsize=(max(width * ncols, 5.0), height * math.ceil(count / ncols) + 0.4 + 0.2 * legend_rows),
                  layout="constrained")


def figure_legend(figure: Figure, handles: dict[str, object], title: str) -> None:
    """One legend for the whole figure, below its panels, so that it never hides a line."""
    figure.legend(list(handles.values()), list(handles), loc="outside lower center", title=title, frameon=False,
                  ncols=min(len(handles), LEGEND_COLUMNS))


def band_limits(frame: pd.DataFrame, metric: str, band: str) -> tuple[pd.Series, pd.Series]:
    """The shaded range of `metric` (a percentage): mean ± sample std clipped to [0, 100], or min–max."""
    if band == "std":
        mean, std = frame[f"{metric}_mean"], frame[f"{metric}_std"]
        return (mean - std).clip(0, 100), (mean + std).clip(0, 100)
    return frame[f"{metric}_min"], frame[f"{metric}_max"]


def draw_band(ax: Axes, x, mean, low, high, style: dict) -> Line2D:
    """The mean line and, where runs differ, the band; returns the line (for the legend)."""
    (line,) = ax.plot(x, mean, **style)
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    if (high > low).any():  # False where the band is NaN: a single run has no std
        ax.fill_between(x, low, high, color=style["color"], alpha=0.18, linewidth=0)
    return line


def run_counts(frame: pd.DataFrame) -> str:
    """'n=3', or 'n=1–3' where the label has different numbers of runs in different settings."""
    low, high = int(frame["n"].min()), int(frame["n"].max())
    return f"n={low}" if low == high else f"n={low}–{high}"


def legend_with_counts(frame: pd.DataFrame, handles: dict[str, Line2D]) -> dict[str, Line2D]:
    """The handles under 'label (n=3)'."""
    return {f"{label} ({run_counts(frame[frame['label'] == label])})": handle for label, handle in handles.items()}


def task_ticks(tasks: int) -> list[int]:
    """Integer ticks from task 1 to the last."""
    return [int(t) for t in MaxNLocator(integer=True).tick_values(1, tasks) if 1 <= t <= tasks]


def clip_to_percent(ax: Axes) -> None:
    """Keep a shared accuracy axis tight to the data, inside [0, 100]."""
    bottom, top = ax.get_ylim()
    ax.set_ylim(max(bottom, 0), min(top, 100))


# ---------------------------------------------------------------- accuracy against classes seen

def accuracy_curves(curves: pd.DataFrame, out_dir: Path, band: str) -> list[Plot]:
    """Per dataset, one figure: accuracy on all classes seen after each task, a panel per setting."""
    plots = []
    with matplotlib.rc_context(STYLE):
        for dataset, frame in curves.groupby("dataset", sort=False):
            stem = f"{PLOTS_DIR}/accuracy_{slug(dataset)}"
            caption = (f"{dataset_title(dataset)}: top-1 accuracy on all classes seen after each task, a panel per setting; "
                       f"mean over runs, {BANDS[band]} (n per method in the legend)")
            plots.append(save(accuracy_figure(frame, band), out_dir, stem, caption))
    return plots


def classes_seen_ticks(ax, classes_seen: pd.Series, most: int = 12) -> None:
    """A tick where each task ends (5, 10, ..., 25), or integer ticks where the tasks are too many to label."""
    ends = sorted(classes_seen.unique())
    if len(ends) <= most:
        ax.set_xticks(ends)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def accuracy_figure(curves: pd.DataFrame, band: str) -> Figure:
    """One dataset's curves: a panel per setting, a line per method label, the same style in every panel."""
    labels = method_labels(curves)
    styles = line_styles(curves)
    figure = panel_figure(curves["setting"].nunique(), len(labels))
    handles = {}
    for ax, (setting, frame) in zip(panels(figure, curves["setting"].nunique()), by_setting(curves)):
        for label, line in frame.groupby("label", sort=False):
            low, high = band_limits(line, "acc", band)
            handles[label] = draw_band(ax, line["classes_seen"], line["acc_mean"], low, high, styles[label])
        ax.set(title=setting_title(setting), xlabel="number of classes seen")
        classes_seen_ticks(ax, frame["classes_seen"])
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("top-1 accuracy (%)")
    clip_to_percent(figure.axes[0])
    figure_legend(figure, legend_with_counts(curves, {label: handles[label] for label in labels}),
                  f"mean over runs; {BANDS[band]}")
    return figure


# ---------------------------------------------------------------- ablations

def ablation_curves(stats: pd.DataFrame, axis: Axis, out_dir: Path, band: str) -> list[Plot]:
    """Per dataset and setting: Avg and Last against the axis value, a line per method variant."""
    plots = []
    with matplotlib.rc_context(STYLE):
        for (dataset, setting), frame in stats.groupby(["dataset", "setting"], sort=False):
            stem = f"{PLOTS_DIR}/ablation_{axis.name}_{slug(dataset)}_{slug(setting)}"
            caption = f"{dataset_title(dataset)} {setting}: accuracy against {axis.title}; mean over runs, {BANDS[band]}"
            plots.append(save(ablation_figure(frame, axis, band), out_dir, stem, caption))
    return plots


def ablation_figure(stats: pd.DataFrame, axis: Axis, band: str) -> Figure:
    """One dataset and setting: a panel for Avg, one for Last."""
    labels = method_labels(stats)
    styles = line_styles(stats)
    figure = Figure(figsize=(8, 3.4 + 0.2 * math.ceil(len(labels) / LEGEND_COLUMNS)), layout="constrained")
    axes = figure.subplots(1, 2, sharex=True)
    handles = {}
    for ax, metric, name in zip(axes, ("avg", "last"), ("average incremental", "last")):
        for label, line in stats.groupby("label", sort=False):
            low, high = band_limits(line, metric, band)
            handles[label] = draw_band(ax, line[axis.column], line[f"{metric}_mean"], low, high, styles[label])
        ax.set(xlabel=axis_title(axis, stats), ylabel=f"{name} top-1 accuracy (%)")
        ax.set_xticks(sorted(stats[axis.column].unique()))
    figure_legend(figure, legend_with_counts(stats, {label: handles[label] for label in labels}),
                  f"mean over runs; {BANDS[band]}")
    first = stats.iloc[0]
    figure.suptitle(f"{dataset_title(first['dataset'])}, {setting_title(first['setting'])}: accuracy against {axis.title}")
    return figure


def axis_title(axis: Axis, stats: pd.DataFrame) -> str:
    if axis.column == "memory_budget" and (stats["memory_mode"] == "per_class").any():
        return f"{axis.title}, per_class × classes"
    return axis.title


# ---------------------------------------------------------------- accuracy matrices

def accuracy_matrix(rows: list[list[float]]) -> np.ndarray:
    """Lower-triangular A[i][j] with NaN above the diagonal."""
    matrix = np.full((len(rows), len(rows)), np.nan)
    for i, row in enumerate(rows):
        matrix[i, : len(row)] = row
    return matrix


def heat_maps(tasks: pd.DataFrame, out_dir: Path) -> list[Plot]:
    """Per run with at least one task: A[i][j], accuracy on task j's classes after task i."""
    plots = []
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        for run, frame in tasks.dropna(subset=["task"]).groupby("run", sort=False):
            plots.append(save(heat_map_figure(frame), out_dir, f"{PLOTS_DIR}/heatmaps/{slug(run)}",
                              f"{run}: accuracy matrix"))
    return plots


def heat_map_figure(run_tasks: pd.DataFrame) -> Figure:
    """One run's accuracy matrix, its numbers printed in the cells up to ANNOTATE_MAX_TASKS tasks."""
    matrix = accuracy_matrix(list(run_tasks.sort_values("task")["acc_row"]))
    figure = Figure(figsize=(3.8, 3.6))
    ax = figure.add_subplot()
    image = ax.imshow(matrix, vmin=0, vmax=100, cmap="viridis")
    if len(matrix) <= ANNOTATE_MAX_TASKS:
        annotate(ax, matrix)  # the numbers themselves: no colour bar needed
    else:
        figure.colorbar(image, ax=ax, label="top-1 accuracy (%)")
    ticks = np.arange(0, len(matrix), -(-len(matrix) // MAX_TICKS))
    ax.set_xticks(ticks, [str(t + 1) for t in ticks])
    ax.set_yticks(ticks, [str(t + 1) for t in ticks])
    ax.set(xlabel="evaluated on the classes of task j", ylabel="after training task i",
           title=run_title(run_tasks.iloc[0]))
    return figure


def run_title(run: pd.Series) -> str:
    """'DAFormer-M, digits B0-5steps (5 steps)' over 'class order default, seed 0' (and the status
    when the run has not finished)."""
    setting, named = run["setting"], setting_title(run["setting"])
    where = setting if named == setting else f"{setting} ({named})"
    details = [f"class order {run['order']}"]
    if pd.notna(run["seed"]):
        details.append(f"seed {int(run['seed'])}")
    if run["status"] != schema.FINISHED:
        details.append(str(run["status"]))
    return f"{run['method_name']}, {run['dataset']} {where}\n{', '.join(details)}"


def annotate(ax: Axes, matrix: np.ndarray) -> None:
    for (i, j), value in np.ndenumerate(matrix):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if value < 60 else "black")


# ---------------------------------------------------------------- training history

def history_curves(history: pd.DataFrame, out_dir: Path) -> list[Plot]:
    """Per dataset and setting: training loss and learning rate against the epoch, a line per method."""
    plots = []
    with matplotlib.rc_context(STYLE):
        for (dataset, setting), frame in history.groupby(["dataset", "setting"], sort=False):
            stem = f"{PLOTS_DIR}/history_{slug(dataset)}_{slug(setting)}"
            caption = (f"{dataset_title(dataset)} {setting}: training loss (rank 0's batches) and learning rate at the end of each "
                       "epoch, mean over runs; vertical lines: task boundaries; balanced finetuning drawn apart, "
                       "with markers")
            plots.append(save(history_figure(frame), out_dir, stem, caption))
    return plots


def history_figure(history: pd.DataFrame) -> Figure:
    """Loss above learning rate, sharing the epoch axis; a segment per label and task."""
    epochs = history_means(history)
    labels = method_labels(history)
    styles = line_styles(history)
    figure = Figure(figsize=(7, 4.6 + 0.2 * math.ceil((len(labels) + 1) / LEGEND_COLUMNS)), layout="constrained")
    loss_ax, lr_ax = figure.subplots(2, 1, sharex=True)
    for ax, column in ((loss_ax, "loss"), (lr_ax, "lr")):
        for (label, _, phase), segment in epochs.groupby(["label", "task", "phase"], sort=False):
            # a segment per phase, so that finetuning is not drawn as the main phase's continuation;
            # markers on the epochs after the main phase and on a phase of one epoch, which a line alone
            # would not show
            marked = phase != TRAIN or len(segment) == 1
            ax.plot(segment["x"], segment[column], **{**styles[label], "marker": "o" if marked else None},
                    markersize=2.5)
        for boundary in task_boundaries(epochs):
            ax.axvline(boundary, color="0.5", linewidth=0.7, alpha=0.5, label=TASK_BOUNDARY)
    if (epochs["lr"] > 0).any():  # rates a hundredfold apart (SGD's and AdamW's) stay readable; an lr of 0 is left out
        lr_ax.set_yscale("log", nonpositive="mask")
    loss_ax.set_ylabel("training loss")
    lr_ax.set(ylabel="learning rate", xlabel="epoch (tasks start together across methods)")
    handles = {label: Line2D([], [], color=styles[label]["color"], linestyle=styles[label]["linestyle"])
               for label in labels}
    handles["balanced finetuning epoch"] = Line2D([], [], color="0.4", marker="o", markersize=2.5, linestyle="none")
    figure_legend(figure, handles, "mean over runs")
    first = history.iloc[0]
    figure.suptitle(f"{dataset_title(first['dataset'])}, {setting_title(first['setting'])}: training loss and learning rate")
    return figure


def history_means(history: pd.DataFrame) -> pd.DataFrame:
    """Per label and epoch: mean loss and learning rate over its runs, at its aligned epoch `x`."""
    aligned = history.sort_values(["run", "step"]).assign(x=aligned_epochs)
    return (aligned.groupby(["label", "task", "x"], sort=False)
            .agg(loss=("loss", "mean"), lr=("lr", "mean"), phase=("phase", "first"))
            .reset_index()
            .sort_values(["label", "x"]))


def aligned_epochs(history: pd.DataFrame) -> pd.Series:
    """The global epoch, each task as long as its longest schedule: every method's task t starts at the same
    epoch, even where methods train different numbers of epochs (e.g. no finetuning without memory).
    Expects the rows in run and step order."""
    within_task = history.groupby(["run", "task"]).cumcount() + 1
    longest = within_task.groupby(history["task"]).max()
    starts = longest.cumsum().shift(fill_value=0)
    return history["task"].map(starts) + within_task


def task_boundaries(epochs: pd.DataFrame) -> list[float]:
    """Between the last epoch of each task and the first of the next."""
    starts = epochs.groupby("task")["x"].min().sort_index()
    return [start - 0.5 for start in starts.iloc[1:]]
