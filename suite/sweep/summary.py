"""summary.csv of a sweep: one row per trial, its axis values, status and headline metrics,
read from each trial's results.json (rewritten whenever a trial reports), and its rank among the
trials of the same method, data set and setting on the sweep's `select_on` split."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from suite.atomic import write_text
from suite.errors import UserError
from suite import schema
from suite.run.layout import results_at
from suite.run.storage import read_text_at
from suite.sweep.spec import Sweep

SUMMARY = "summary.csv"
GROUP = ("method", "dataset", "setting")  # trials ranked against each other


def trial_results(cfg, run_dir: Path) -> dict | None:
    """The trial's results where they persist; None before its first task, {"status": "unreadable"}
    for a file that is not one."""
    path = results_at(cfg, run_dir)
    text = read_text_at(path)
    if text is None:
        return None
    try:
        return schema.parse(text, path)
    except UserError:
        return {"status": "unreadable"}


def summary_frame(sweep: Sweep, sweep_dir: Path) -> pd.DataFrame:
    rows = []
    for trial in sweep.trials:
        row = {"trial": trial.name, **{k: _cell(v) for k, v in trial.values.items()}, "status": "pending",
               "method": trial.cfg.method, "dataset": trial.cfg.data.name}
        doc = trial_results(trial.cfg, sweep_dir / trial.name)
        if doc is not None:
            row.update({k: doc.get(k) for k in ("status", "setting", *schema.HEADLINE)})
            row["selected_avg"] = schema.split_summary(doc, sweep.select_on)["avg_incremental_accuracy"]
        rows.append(row)
    columns = ["trial", *sweep.trials[0].values, "status", *GROUP, *schema.HEADLINE, "select_on", "selected_avg"]
    frame = pd.DataFrame(rows).reindex(columns=list(dict.fromkeys(columns)))
    frame["select_on"] = sweep.select_on
    frame["rank"] = ranks(frame)
    return frame


def ranks(frame: pd.DataFrame) -> pd.Series:
    """1 for the best selected_avg (the average incremental accuracy on the sweep's select_on split)
    among the finished trials of the same method, data set and setting, 2 for the next, ...; empty
    for trials not finished, whose average covers only the tasks done so far."""
    finished = frame[(frame["status"] == schema.FINISHED) & frame["selected_avg"].notna()]
    rank = finished.groupby(list(GROUP))["selected_avg"].rank(ascending=False, method="min")
    return rank.reindex(frame.index).astype("Int64")


def best_trials(frame: pd.DataFrame) -> list[str]:
    """One line per method (and data set and setting, where a sweep has several): its rank-1 trial."""
    best = frame[frame["rank"] == 1].drop_duplicates(list(GROUP))
    several = frame.dropna(subset=["setting"]).drop_duplicates(["dataset", "setting"]).shape[0] > 1
    lines = []
    for row in best.itertuples(index=False):
        where = f" ({row.dataset} {row.setting})" if several else ""
        lines.append(f"best {row.method}{where} on {row.select_on}: {row.trial} (avg {row.selected_avg:.1f})")
    return lines


def _cell(value):
    return value if isinstance(value, (int, float, str)) or value is None else str(value)


def write_summary(sweep: Sweep, sweep_dir: Path) -> Path:
    return write_text(sweep_dir / SUMMARY, summary_frame(sweep, sweep_dir).to_csv(index=False))
