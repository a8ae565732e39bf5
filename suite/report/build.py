"""build_report: results files → tables, plots and one page under the report directory."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from suite.report import plots
from suite.report.aggregate import AXES, ablation_stats, curve_stats, finished_runs, main_stats, runs_frame
from suite.atomic import write_text
from suite.report.load import load_results
from suite.report.page import Section, write_page
from suite.report.references import load_references
from suite.report.render import write_table
from suite.report.tables import ablation_table, class_order_table, main_table, runs_table

TIDY_CSV = "results_tidy.csv"
DEFINITIONS = [
    "Avg: average incremental accuracy, the mean over tasks of the top-1 accuracy on all classes seen so far "
    "(first task included). Last: top-1 accuracy after the last task. Percent.",
    "Cells: mean ± sample standard deviation (ddof=1) over runs, i.e. class orders and seeds; n: number of runs; "
    "a single run shows its value alone. Bands in plots: min–max over runs. Best Avg/Last per column in bold "
    "(joint training, an upper bound, excluded).",
    "Only finished runs are pooled, and only within one dataset, setting and method; runs whose configs differ "
    "in anything but seed, class order, paths and Ray resources are shown as separate rows, labelled with the "
    "differing keys.",
    "Forgetting: mean over old tasks j of (best earlier accuracy on j − final accuracy on j). BWT: mean over old "
    "tasks j of (final accuracy on j − accuracy on j right after learning it), GEM's definition. "
    "BWT (all pairs): mean over all i > j of (A[i][j] − A[j][j]), what continuum's backward_transfer computes.",
]


def build_report(results_dir: Path | str, out_dir: Path | str | None = None) -> Path:
    """Report on every results.json under `results_dir` into `out_dir` (default results_dir/report).

    Returns the report directory; its index.html and README.md link the tables and plots.
    Raises UserError when there is no readable results file.
    """
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir / "report"
    tasks = load_results(results_dir)
    runs = runs_frame(tasks)
    finished = finished_runs(runs)
    sections = [
        summary_section(runs, results_dir),
        *results_sections(tasks, finished, load_references(), out_dir),
        *ablation_sections(runs, out_dir),
        runs_section(tasks, runs, out_dir),
        class_orders_section(tasks),
        Section("Definitions", paragraphs=DEFINITIONS),
    ]
    for table in (table for section in sections for table in section.tables):
        write_table(table, out_dir)
    write_text(out_dir / TIDY_CSV, tasks.to_csv(index=False))
    write_page(out_dir, f"Class-incremental benchmark report: {results_dir.resolve().name}", sections)
    return out_dir


def summary_section(runs: pd.DataFrame, results_dir: Path) -> Section:
    counts = runs["status"].value_counts()
    states = ", ".join(f"{count} {status}" for status, count in counts.items())
    commits = sorted({str(c)[:12] for c in runs["git_commit"] if isinstance(c, str) and c})
    made_at = f"made at commit {', '.join(commits)}" if commits else "made outside a git checkout"
    return Section("Summary", paragraphs=[
        f"{len(runs)} runs under {results_dir} ({states}), {made_at}; "
        f"datasets: {', '.join(sorted(runs['dataset'].unique()))}. All results, one row per run and task:",
    ], files=[TIDY_CSV])


def results_sections(tasks: pd.DataFrame, finished: pd.DataFrame, references: pd.DataFrame,
                     out_dir: Path) -> list[Section]:
    """The paper-shaped table per dataset, accuracy and parameter curves."""
    if finished.empty:
        return [Section("Main results", paragraphs=["No finished run yet."])]
    stats = main_stats(finished)
    curves = curve_stats(tasks, finished)
    tables = [main_table(dataset, frame, references, finished) for dataset, frame in stats.groupby("dataset")]
    return [
        Section("Main results", tables=tables),
        Section("Accuracy against classes seen", plots=plots.accuracy_curves(curves, out_dir)),
        Section("Parameters against task", plots=plots.parameter_curves(curves, out_dir)),
    ]


def ablation_sections(runs: pd.DataFrame, out_dir: Path) -> list[Section]:
    """A table and curves per axis that some group of otherwise-equal finished runs varies."""
    sections = []
    for axis in AXES:
        stats = ablation_stats(runs, axis)
        if stats.empty:
            continue
        tables = [ablation_table(dataset, frame, axis) for dataset, frame in stats.groupby("dataset")]
        sections.append(Section(f"Ablation: {axis.title}", tables=tables,
                                plots=plots.ablation_curves(stats, axis, out_dir)))
    return sections


def runs_section(tasks: pd.DataFrame, runs: pd.DataFrame, out_dir: Path) -> Section:
    return Section("Runs", tables=[runs_table(runs)], plots=plots.heat_maps(tasks, out_dir), small_plots=True,
                   paragraphs=["Accuracy matrices: A[i][j] is the top-1 accuracy on the classes of task j "
                               "after training task i."])


def class_orders_section(tasks: pd.DataFrame) -> Section:
    """Which classes each task held, per data set and class order (the runs of an order share it)."""
    known = tasks.dropna(subset=["task", "task_classes"])
    tables = [class_order_table(dataset, setting, order, frame)
              for (dataset, setting, order), frame in known.groupby(["dataset", "setting", "order"])]
    return Section("Class orders", tables=tables)
