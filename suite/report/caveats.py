"""Warnings a report prints before anything else: results that cannot rank methods.

Joint training (the upper bound) learns every class at once; when it does not clearly beat the
methods it bounds, the schedule was too short for any of them to learn, and the table's order says
nothing about the methods. A reader must see that before the table, in the PDF too.
"""
from __future__ import annotations

import pandas as pd

from suite.datasets import dataset_title
from suite.methods import METHODS

MARGIN = 2.0  # points of last accuracy by which the upper bound should lead


def bound_caveats(finished: pd.DataFrame) -> list[str]:
    """One line per dataset and setting whose upper bound does not clearly lead."""
    upper = [name for name, m in METHODS.items() if m.bound == "upper"]
    lower = [name for name, m in METHODS.items() if m.bound == "lower"]
    lines = []
    for (dataset, setting), runs in finished.groupby(["dataset", "setting"], sort=True):
        means = runs.groupby("method")[["last_accuracy", "avg_incremental_accuracy"]].mean()
        bound = [m for m in upper if m in means.index]
        if not bound:
            continue
        joint = means.loc[bound[0], "last_accuracy"]
        others = means.drop(index=bound)
        floor = [m for m in lower if m in others.index]
        why = []
        if floor and joint < others.loc[floor[0], "avg_incremental_accuracy"]:
            why.append(f"below the lower bound's ({METHODS[floor[0]].label}) average incremental accuracy, "
                       f"{others.loc[floor[0], 'avg_incremental_accuracy']:.1f}%")
        if not others.empty and joint < others["last_accuracy"].max() + MARGIN:
            best = others["last_accuracy"].idxmax()
            why.append(f"{'below' if joint < others.loc[best, 'last_accuracy'] else f'within {MARGIN:g} points of'} "
                       f"{METHODS[best].label if best in METHODS else best}'s last accuracy, "
                       f"{others.loc[best, 'last_accuracy']:.1f}%")
        if why:
            lines.append(
                f"Caution, {dataset_title(dataset)} {setting}: the upper bound ({METHODS[bound[0]].label}, every class in one "
                f"task) reaches only {joint:.1f}% last accuracy, {' and '.join(why)}. The training was too short "
                "for the methods to learn these classes; this table cannot rank them (a smoke test, not a result).")
    return lines
