"""The runs' per-epoch history (log.jsonl beside results.json, written by suite/run/history.py) as one
tidy DataFrame: one row per run and epoch. Runs made before the log existed have none, and no rows."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from suite.methods import PHASES
from suite.report.load import own_classifier
from suite.schema import LOG

GROUP_COLUMNS = ["run", "label", "dataset", "setting", "method", "variant"]
EPOCH_FIELDS = ["task", "phase", "epoch", "epochs", "loss", "lr", "img_per_s", "seconds", "time"]
EPOCH_KEY = ["task", "phase", "epoch"]


def load_history(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run (its results.json at `path`) and epoch: the logged fields, a global `step` from 1 (the
    epochs in run order: tasks in order, each task's main phase then its finetuning) and the run's group
    columns. A run measured with two classifiers trained once: its history is its headline classifier's."""
    if "headline_classifier" in runs:
        runs = own_classifier(runs)
    groups = [column for column in GROUP_COLUMNS if column in runs]
    columns = groups + EPOCH_FIELDS + ["step"]
    frames = [run_epochs(read_records(Path(run["path"]).parent / LOG)).assign(**run[groups].to_dict())
              for _, run in runs.iterrows()]
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def read_records(path: Path) -> list[dict]:
    """The JSON objects of a log.jsonl, none when there is no file; a line that is no JSON object (a
    half-written last line after a crash) is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def phase_rank(phase: str) -> int:
    """A task's phases in the order it runs them (an unknown one, from an older run, last)."""
    return PHASES.index(phase) if phase in PHASES else len(PHASES)


def run_epochs(records: list[dict]) -> pd.DataFrame:
    """One row per epoch, in run order with its `step`. A resumed run logs the epochs after its checkpoint
    again: the last record of each (task, phase, epoch) is the one the run went on from."""
    epochs = pd.DataFrame([r for r in records if r.get("event") == "epoch"], columns=EPOCH_FIELDS)
    latest = epochs.dropna(subset=EPOCH_KEY).drop_duplicates(EPOCH_KEY, keep="last")
    ordered = latest.sort_values(EPOCH_KEY, key=lambda column: column.map(phase_rank) if column.name == "phase"
                                 else column)
    return ordered.astype({"task": int, "epoch": int}).assign(step=range(1, len(ordered) + 1))
