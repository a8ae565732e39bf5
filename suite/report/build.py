"""build_report: results files → tables, plots and one page under the report directory.

Two styles (report.style, suite/report_options.py): `full` and `paper`, which leaves out the sections
per run (the runs table, accuracy-matrix heat maps, class orders).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from suite.atomic import write_text
from suite.datasets import dataset_title
from suite.errors import UserError
from suite.methods import HEADLINE, METHODS
from suite.report import plots
from suite.report.aggregate import AXES, ablation_stats, curve_stats, finished_runs, main_stats, runs_frame
from suite.report.caveats import bound_caveats
from suite.report.compare import comparison_table, paired_differences, significance_note, significant
from suite.report.history import load_history
from suite.report.latex_document import write_document
from suite.report.load import load_results, own_classifier
from suite.report.page import Section, write_page
from suite.report.references import load_references
from suite.report.render import write_table
from suite.report.step_tables import cost_table, forgetting_table, parameter_table, per_step_table, validation_table
from suite.report.tables import ablation_table, class_order_table, main_table, runs_table
from suite.report_options import BANDS, DEFAULT_BAND, DEFAULT_STYLE, STYLES

TIDY_CSV = "results_tidy.csv"
DEFINITIONS = [
    "Avg: average incremental accuracy, the mean over tasks of the top-1 accuracy on all classes seen so far "
    "(first task included). Last: top-1 accuracy after the last task. Percent, on the test split unless a "
    "table says validation.",
    "Cells: mean ± sample standard deviation (ddof=1) over runs, i.e. class orders and seeds; n: number of runs "
    "(in each table's caption, per cell in its CSV); a single run shows its value alone. Best per column in "
    "bold (joint training, an upper bound, excluded).",
    "Only finished runs are pooled, and only within one dataset, setting and method; runs whose configs differ "
    "in anything but seed, class order, paths and Ray resources are shown as separate rows, labelled with the "
    "differing keys.",
    "Forgetting: mean over old tasks j of (best earlier accuracy on j − final accuracy on j). BWT: mean over old "
    "tasks j of (final accuracy on j − accuracy on j right after learning it), GEM's definition. "
    "BWT (all pairs): mean over all i > j of (A[i][j] − A[j][j]), what continuum's backward_transfer computes.",
    "Tasks (steps) count from 1 in every table, plot and CSV, as the console does; settings: 'B0-10steps' is "
    "10 steps of equal size from scratch, 'B50-10steps' a first task of 50 classes then 10 steps.",
]


def build_report(results_dir: Path | str, out_dir: Path | str | None = None, style: str = DEFAULT_STYLE,
                 band: str = DEFAULT_BAND) -> Path:
    """Report on every results.json under `results_dir` into `out_dir` (default results_dir/report).

    Returns the report directory; its index.html and README.md link the tables and plots, report.tex
    sets every table in one LaTeX article. Raises UserError when there is no readable results file.
    """
    check_choice("style", style, tuple(STYLES))
    check_choice("band", band, tuple(BANDS))
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir / "report"
    tasks = load_results(results_dir)
    runs = runs_frame(tasks)
    finished = finished_runs(runs)
    caveats = bound_caveats(finished)
    sections = [
        *([Section("Read this first", paragraphs=caveats)] if caveats else []),
        summary_section(runs, results_dir, style),
        *results_sections(tasks, finished, out_dir, band),
        *ablation_sections(runs, out_dir, band),
    ]
    if style == "full":
        sections += [runs_section(tasks, runs, out_dir), class_orders_section(tasks)]
    sections.append(Section("Definitions", paragraphs=DEFINITIONS))
    for table in (table for section in sections for table in section.tables):
        write_table(table, out_dir)
    write_text(out_dir / TIDY_CSV, tidy_csv(tasks))
    title = f"Class-incremental benchmark report: {results_dir.resolve().name}"
    write_document(out_dir, title, sections)
    write_page(out_dir, title, sections)
    return out_dir


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"report {key} '{value}' is not one of {', '.join(choices)}")


def summary_section(runs: pd.DataFrame, results_dir: Path, style: str) -> Section:
    runs = own_classifier(runs)  # a run measured with two classifiers is one run
    counts = runs["status"].value_counts()
    states = ", ".join(f"{count} {status}" for status, count in counts.items())
    commits = sorted({str(c)[:12] for c in runs["git_commit"] if isinstance(c, str) and c})
    made_at = f"made at commit {', '.join(commits)}" if commits else "made outside a git checkout"
    datasets = ", ".join(sorted(dataset_title(name) for name in runs["dataset"].unique()))
    return Section("Summary", paragraphs=[
        f"{len(runs)} run{'s' if len(runs) != 1 else ''} under '{results_dir.resolve().name}' ({states}), {made_at}; "
        f"datasets: {datasets}. Report style: {style}; every table as "
        "Markdown, CSV and a LaTeX tabular (booktabs), all of them in one LaTeX article. "
        "All results, one row per run and task:",
    ], files=[TIDY_CSV, "report.tex"])


def results_sections(tasks: pd.DataFrame, finished: pd.DataFrame, out_dir: Path, band: str) -> list[Section]:
    """The main table per dataset, the paired comparisons, the other metrics' tables and the figures."""
    if finished.empty:
        return [Section("Main results", paragraphs=["No finished run yet."])]
    stats = main_stats(finished)
    curves = curve_stats(tasks, finished)
    differences = paired_differences(finished)
    by_dataset = list(stats.groupby("dataset"))
    headline = METHODS[HEADLINE].label
    main = [main_table(dataset, frame, load_references(), finished, significant(differences),
                       significance_note(headline)) for dataset, frame in by_dataset]
    sections = [Section("Main results", tables=main)]
    if not differences.empty:
        sections.append(Section(f"Paired comparisons with {headline}", tables=[
            comparison_table(dataset, frame) for dataset, frame in differences.groupby("dataset")]))
    sections += [
        Section("Forgetting and backward transfer", tables=[forgetting_table(d, frame) for d, frame in by_dataset]),
        Section("Accuracy after each step", tables=[
            per_step_table(dataset, setting, frame)
            for (dataset, setting), frame in curves.groupby(["dataset", "setting"], sort=False)]),
    ]
    validated = [(d, frame) for d, frame in by_dataset if frame["val_avg_mean"].notna().any()]
    if validated:
        sections.append(Section("Validation split", tables=[validation_table(d, frame) for d, frame in validated]))
    history = load_history(finished)
    return sections + [
        Section("Cost", tables=[cost_table(dataset, frame) for dataset, frame in main_stats(own_classifier(finished))
                                .groupby("dataset")]),
        Section("Parameters", tables=[parameter_table(dataset, frame) for dataset, frame in curves.groupby("dataset")]),
        Section("Accuracy against classes seen", plots=plots.accuracy_curves(curves, out_dir, band)),
        Section("Training loss and learning rate", plots=plots.history_curves(history, out_dir),
                paragraphs=[] if not history.empty else ["No run stored its per-epoch history (log.jsonl)."]),
    ]


def ablation_sections(runs: pd.DataFrame, out_dir: Path, band: str) -> list[Section]:
    """A table and curves per axis that some group of otherwise-equal finished runs varies."""
    sections = []
    for axis in AXES:
        stats = ablation_stats(runs, axis)
        if stats.empty:
            continue
        tables = [ablation_table(dataset, frame, axis) for dataset, frame in stats.groupby("dataset")]
        sections.append(Section(f"Ablation: {axis.title}", tables=tables,
                                plots=plots.ablation_curves(stats, axis, out_dir, band)))
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


def tidy_csv(tasks: pd.DataFrame) -> str:
    """One row per run and task, tasks from 1; config columns as plain values (text without JSON quotes,
    lists as JSON), the accuracy row as JSON. Written for sharing: no column that says where files lay
    on the machine that ran (the results file's path, config paths and URIs); `run` names each run."""
    config = [column for column in tasks if column.startswith("cfg.")]
    plain = tasks.assign(
        task=tasks["task"] + 1,
        acc_row=tasks["acc_row"].map(lambda row: json.dumps(row) if isinstance(row, list) else row),
        **{column: tasks[column].map(plain_value) for column in config},
    )
    where = ["path", *(column for column in config if holds_locations(plain[column]))]
    return plain.drop(columns=where).to_csv(index=False)


def holds_locations(values: pd.Series) -> bool:
    """Whether every value given is an absolute file path or a URI: where something was, on one
    machine or store."""
    given = values.dropna()
    return len(given) > 0 and given.map(lambda v: isinstance(v, str) and (v.startswith(("/", "~")) or "://" in v)).all()


def plain_value(json_text):
    """A cfg.* cell (JSON text) as a CSV cell: strings and numbers as they are, null empty, lists as JSON."""
    if not isinstance(json_text, str):
        return json_text
    value = json.loads(json_text)
    return json.dumps(value) if isinstance(value, (list, dict)) else value
