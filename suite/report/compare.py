"""Paired comparisons with the headline method: for every other method, the difference in Avg and Last
over the runs both made with the same class order and seed, its spread, a paired t-test and a bootstrap
interval, and what that lets a reader conclude."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from suite.datasets import dataset_title
from suite.methods import HEADLINE
from suite.report.aggregate import UPPER_BOUNDS, setting_rank, setting_title, sort_rows
from suite.report.tables import MISSING, SIGNIFICANCE_MARK, Table, mean_std, number

ALPHA = 0.05  # two-sided significance level of the paired t-test
MIN_PAIRS = 3  # fewer pairs: nothing is concluded, whatever the test says
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # the interval is the same at every build of the report
NOT_SIGNIFICANT = "n.s."  # the verdict of a difference the test does not find at ALPHA
PAIR_KEYS = ["order", "seed"]
METRICS = {"avg": "avg_incremental_accuracy", "last": "last_accuracy"}
METHOD_KEYS = ["method", "variant", "label"]


def paired_differences(finished: pd.DataFrame, headline: str = HEADLINE) -> pd.DataFrame:
    """One row per data set, setting, headline variant, other method variant and metric: the statistics of
    (headline − other) over their runs paired by class order and seed (runs repeated at one pair averaged).
    Upper bounds (joint training) are not compared: they are listed apart, as DyTox's table lists them."""
    rows = []
    for (dataset, setting), runs in finished.groupby(["dataset", "setting"], sort=False):
        others = runs[(runs["method"] != headline) & ~runs["method"].isin(UPPER_BOUNDS)]
        for head_label, head in runs[runs["method"] == headline].groupby("label", sort=False):
            for (method, variant, label), other in others.groupby(METHOD_KEYS, sort=False):
                pairs = pair_runs(head, other)
                for metric, column in METRICS.items():
                    rows.append({"dataset": dataset, "setting": setting, "headline": head_label, "method": method,
                                 "variant": variant, "label": label, "metric": metric,
                                 **difference_stats(pairs[f"{column}_head"].to_numpy(),
                                                    pairs[f"{column}_other"].to_numpy())})
    if not rows:
        return pd.DataFrame()
    return sort_rows(pd.DataFrame(rows), ["dataset", "setting", "method", "variant"])


def pair_runs(head: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """The two groups' metrics side by side, one row per class order and seed both ran."""
    def per_pair(runs: pd.DataFrame) -> pd.DataFrame:
        return runs.groupby(PAIR_KEYS, dropna=False)[list(METRICS.values())].mean().reset_index()

    return per_pair(head).merge(per_pair(other), on=PAIR_KEYS, suffixes=("_head", "_other"))


def difference_stats(head: np.ndarray, other: np.ndarray) -> dict:
    """n, mean and sample std of head − other, a 95% percentile-bootstrap interval of the mean and the
    two-sided paired t-test's p (both only where the differences vary), and the verdict."""
    diff = head - other
    n = len(diff)
    std = diff.std(ddof=1) if n > 1 else float("nan")
    p = low = high = float("nan")
    if n > 1 and std > 0:
        p = float(stats.ttest_rel(head, other).pvalue)
        interval = stats.bootstrap((diff,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                                   rng=np.random.default_rng(BOOTSTRAP_SEED)).confidence_interval
        low, high = float(interval.low), float(interval.high)
    mean = float(diff.mean()) if n else float("nan")
    return {"n": n, "mean": mean, "std": std, "ci_low": low, "ci_high": high, "p": p,
            "verdict": verdict(n, mean, std, p)}


def verdict(n: int, mean: float, std: float, p: float) -> str:
    """'higher', 'lower', NOT_SIGNIFICANT, or why nothing can be concluded."""
    if n == 0:
        return "no runs with the same class order and seed"
    if n < MIN_PAIRS:
        return f"too few pairs (n = {n}) to conclude"
    if not std > 0:
        return f"every pair differs by {mean:+.2f}: no spread to test"
    if p < ALPHA:
        return "higher" if mean > 0 else "lower"
    return NOT_SIGNIFICANT


def significant(differences: pd.DataFrame) -> frozenset[tuple[str, str, str, str]]:
    """(setting, method, variant, metric) where the headline differs at ALPHA over at least MIN_PAIRS pairs:
    the main table marks those cells."""
    if differences.empty:
        return frozenset()
    hits = differences[differences["verdict"].isin(["higher", "lower"])]
    return frozenset(zip(hits["setting"], hits["method"], hits["variant"], hits["metric"]))


def significance_note(headline: str) -> str:
    """What the main table's † says."""
    return (f"{SIGNIFICANCE_MARK}: {headline} differs from this cell at p < {ALPHA:g} (two-sided paired t-test "
            f"over at least {MIN_PAIRS} runs with the same class order and seed; see the comparisons table).")


def comparison_table(dataset: str, differences: pd.DataFrame) -> Table:
    """One row per setting and method: the headline's paired difference in Avg and Last, and the verdict."""
    rows, breaks = [], []
    blocks = differences.groupby("setting", sort=False)
    for setting, block in sorted(blocks, key=lambda item: setting_rank(item[0])):
        breaks.append(len(rows))
        for (headline, label), pair in block.groupby(["headline", "label"], sort=False):
            cells = pair.set_index("metric")
            row = [f"{headline} − {label}", setting_title(setting), str(cells["n"].iloc[0])]
            for metric in METRICS:
                cell = cells.loc[metric]
                row += [mean_std(cell["mean"], cell["std"], signed=True), interval_text(cell), number(cell["p"], 3),
                        cell["verdict"]]
            rows.append(row)
    return Table(
        name=f"comparisons_{dataset}",
        title=f"{dataset_title(dataset)}: paired differences with the headline method, points of top-1 accuracy on the test "
              "split (mean ± sample std over pairs of runs with the same class order and seed)",
        header=["Comparison", "Setting", "Pairs", *["Δ", "95% CI", "p", "Verdict"] * len(METRICS)],
        groups=[("", 3), *((metric.capitalize(), 4) for metric in METRICS)],
        text_columns=2,
        rows=rows,
        data=differences,
        breaks=frozenset(breaks[1:]),
        notes=[f"95% CI: percentile bootstrap of the mean difference ({BOOTSTRAP_RESAMPLES:,} resamples of the "
               f"pairs, seed {BOOTSTRAP_SEED}); p: two-sided paired t-test; {NOT_SIGNIFICANT}: no significant "
               f"difference at p < {ALPHA:g}. Nothing is concluded from fewer than "
               f"{MIN_PAIRS} pairs, and with 3 to 5 pairs only a large, consistent difference can reach "
               f"p < {ALPHA:g}: read the interval."],
    )


def interval_text(cell: pd.Series) -> str:
    if pd.isna(cell["ci_low"]):
        return MISSING
    return f"[{cell['ci_low']:+.2f}, {cell['ci_high']:+.2f}]"
