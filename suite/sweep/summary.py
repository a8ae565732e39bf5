"""summary.csv of a sweep: one row per trial, its axis values, status and headline metrics,
read from each trial's results.json (rewritten whenever a trial reports)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from suite.atomic import write_text
from suite.errors import UserError
from suite.run import schema
from suite.run.layout import results_at
from suite.run.storage import read_text_at
from suite.sweep.spec import Sweep

SUMMARY = "summary.csv"


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
        row = {"trial": trial.name, **{k: _cell(v) for k, v in trial.values.items()}, "status": "pending"}
        doc = trial_results(trial.cfg, sweep_dir / trial.name)
        if doc is not None:
            row.update({k: doc.get(k) for k in ("status", *schema.HEADLINE)})
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(value):
    return value if isinstance(value, (int, float, str)) or value is None else str(value)


def write_summary(sweep: Sweep, sweep_dir: Path) -> Path:
    return write_text(sweep_dir / SUMMARY, summary_frame(sweep, sweep_dir).to_csv(index=False))
