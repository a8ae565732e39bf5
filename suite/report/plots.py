"""Figures as PNG and PDF: accuracy against classes seen, ablation curves, accuracy-matrix heat
maps, parameters against task. Built on `matplotlib.figure.Figure` (no pyplot, no backend
switch, no global state); each figure is written atomically."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from suite.report.aggregate import Axis
from suite.atomic import write_bytes

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


def line_styles(labels: list[str]) -> dict[str, dict]:
    """Colour, marker and dash per label, distinct in colour and in greyscale print."""
    colors = matplotlib.colormaps["tab10"].colors
    return {
        label: {"color": colors[i % len(colors)], "marker": MARKERS[i % len(MARKERS)],
                "linestyle": LINESTYLES[i % len(LINESTYLES)]}
        for i, label in enumerate(labels)
    }


def draw_band(ax: Axes, x, mean, low, high, label: str, style: dict) -> None:
    """The mean line and, when there is more than one run, a min–max band."""
    ax.plot(x, mean, label=label, **style)
    if (np.asarray(high) > np.asarray(low)).any():
        ax.fill_between(x, low, high, color=style["color"], alpha=0.18, linewidth=0)


def outside_legend(ax: Axes, **kwargs) -> None:
    """A legend right of the axes, so that it never hides a line."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, **kwargs)


def accuracy_curves(curves: pd.DataFrame, out_dir: Path) -> list[Plot]:
    """Per dataset and setting: accuracy on all classes seen after each task, a line per method."""
    plots = []
    with matplotlib.rc_context(STYLE):
        for (dataset, setting), frame in curves.groupby(["dataset", "setting"], sort=False):
            figure = Figure(figsize=(5.5, 3.6))
            ax = figure.add_subplot()
            styles = line_styles(list(frame["label"].unique()))
            for label, line in frame.groupby("label", sort=False):
                draw_band(ax, line["classes_seen"], line["acc_mean"], line["acc_min"], line["acc_max"],
                          f"{label} (n={line['n'].max()})", styles[label])
            ax.set(xlabel="number of classes seen", ylabel="top-1 accuracy (%)", title=f"{dataset}, {setting}")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            outside_legend(ax, title="mean, band: min–max over runs")
            stem = f"{PLOTS_DIR}/accuracy_{slug(dataset)}_{slug(setting)}"
            plots.append(save(figure, out_dir, stem, f"{dataset} {setting}: accuracy against classes seen"))
    return plots


def ablation_curves(stats: pd.DataFrame, axis: Axis, out_dir: Path) -> list[Plot]:
    """Per dataset and setting: Avg and Last against the axis value, a line per method variant."""
    plots = []
    with matplotlib.rc_context(STYLE):
        for (dataset, setting), frame in stats.groupby(["dataset", "setting"], sort=False):
            figure = Figure(figsize=(8, 3.4), layout="constrained")
            axes = figure.subplots(1, 2, sharex=True)
            styles = line_styles(list(frame["label"].unique()))
            for ax, metric, name in zip(axes, ("avg", "last"), ("average incremental", "last")):
                for label, line in frame.groupby("label", sort=False):
                    draw_band(ax, line[axis.column], line[f"{metric}_mean"], line[f"{metric}_min"],
                              line[f"{metric}_max"], label, styles[label])
                ax.set(xlabel=axis_title(axis, frame), ylabel=f"{name} top-1 accuracy (%)")
                ax.set_xticks(sorted(frame[axis.column].unique()))
            outside_legend(axes[1], title="mean, band: min–max over runs")
            figure.suptitle(f"{dataset}, {setting}: accuracy against {axis.title}")
            stem = f"{PLOTS_DIR}/ablation_{axis.name}_{slug(dataset)}_{slug(setting)}"
            plots.append(save(figure, out_dir, stem, f"{dataset} {setting}: accuracy against {axis.title}"))
    return plots


def axis_title(axis: Axis, stats: pd.DataFrame) -> str:
    if axis.column == "memory_budget" and (stats["memory_mode"] == "per_class").any():
        return f"{axis.title}, per_class × classes"
    return axis.title


def parameter_curves(curves: pd.DataFrame, out_dir: Path) -> list[Plot]:
    """Per dataset and setting: parameter count after each task, a line per method."""
    plots = []
    with matplotlib.rc_context(STYLE):
        for (dataset, setting), frame in curves.dropna(subset=["params_m"]).groupby(["dataset", "setting"], sort=False):
            figure = Figure(figsize=(5.5, 3.6))
            ax = figure.add_subplot()
            styles = line_styles(list(frame["label"].unique()))
            for label, line in frame.groupby("label", sort=False):
                ax.plot(line["task"] + 1, line["params_m"], label=label, **styles[label])
            ax.set(xlabel="task", ylabel="parameters (millions)", title=f"{dataset}, {setting}")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            outside_legend(ax)
            stem = f"{PLOTS_DIR}/params_{slug(dataset)}_{slug(setting)}"
            plots.append(save(figure, out_dir, stem, f"{dataset} {setting}: parameters against task"))
    return plots


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
            matrix = accuracy_matrix(list(frame.sort_values("task")["acc_row"]))
            first = frame.iloc[0]
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
                   title=f"{run}\n{first['method']}, {first['dataset']} {first['setting']} ({first['status']})")
            stem = f"{PLOTS_DIR}/heatmaps/{slug(run)}"
            plots.append(save(figure, out_dir, stem, f"{run}: accuracy matrix"))
    return plots


def annotate(ax: Axes, matrix: np.ndarray) -> None:
    for (i, j), value in np.ndenumerate(matrix):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if value < 60 else "black")
