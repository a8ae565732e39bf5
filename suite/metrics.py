"""Class-incremental metrics as pure functions of an accuracy matrix.

Conventions, all in percent (0..100):
- ``acc_matrix[i] = [A[i][0], ..., A[i][i]]``: A[i][j] is the top-1 accuracy on the test classes
  of task j after training task i (a ragged lower-triangular list of rows);
- ``acc[i]``: top-1 on all test data seen up to task i, sample-weighted;
- T is the index of the last row.

Naming: ``bwt`` is Lopez-Paz & Ranzato's GEM backward transfer (last row against the diagonal);
``bwt_all_pairs`` averages every pair i > j, the quantity continuum's ``backward_transfer``
aims at although its docstring cites GEM. continuum 1.2.7 itself stops one index short in both
``backward_transfer`` and ``forgetting`` (see tests/test_metrics.py), so only the average
incremental accuracy and the accuracies per task match its ``Logger`` exactly.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def accuracy_row(predictions, targets, task_of_target, num_tasks_seen: int) -> tuple[list[float], float]:
    """One row of the accuracy matrix after a task, and the overall accuracy.

    ``row[j]`` = percent of correct predictions among the samples whose true class belongs to
    task j, for j < ``num_tasks_seen``; ``overall`` = percent correct over all samples
    (sample-weighted). Every sample must belong to a seen task, and every seen task needs at least
    one sample.
    """
    predictions, targets, tasks = (np.asarray(a).reshape(-1) for a in (predictions, targets, task_of_target))
    if not len(predictions) == len(targets) == len(tasks):
        raise ValueError(f"lengths differ: {len(predictions)} predictions, {len(targets)} targets, "
                         f"{len(tasks)} task ids")
    if len(tasks) and (tasks.min() < 0 or tasks.max() >= num_tasks_seen):
        raise ValueError(f"task ids must lie in 0..{num_tasks_seen - 1}, got {tasks.min()}..{tasks.max()}")
    correct = predictions == targets
    row = []
    for j in range(num_tasks_seen):
        in_task = tasks == j
        if not in_task.any():
            raise ValueError(f"no test sample of task {j}: every seen task must be evaluated")
        row.append(100.0 * float(correct[in_task].mean()))
    return row, 100.0 * float(correct.mean())


def average_incremental_accuracy(acc: Sequence[float]) -> float:
    """Mean of acc_i over all tasks, the first included (iCaRL/DyTox usage)."""
    if len(acc) == 0:
        raise ValueError("no accuracies")
    return float(np.mean(acc))


def last_accuracy(acc: Sequence[float]) -> float:
    """acc_T, the overall accuracy after the last task."""
    if len(acc) == 0:
        raise ValueError("no accuracies")
    return float(acc[-1])


def forgetting(acc_matrix: Sequence[Sequence[float]]) -> Optional[float]:
    """Mean over j < T of (max_{j <= l < T} A[l][j] - A[T][j]) (Chaudhry et al. 2018, eq. 3).

    None with one task. continuum 1.2.7's ``forgetting`` differs: it sums j < T-1 only, takes the
    max over l < T-1 only, and still divides by T.
    """
    _check_triangular(acc_matrix)
    last = len(acc_matrix) - 1
    if last == 0:
        return None
    drops = [max(acc_matrix[l][j] for l in range(j, last)) - acc_matrix[last][j] for j in range(last)]
    return float(np.mean(drops))


def bwt(acc_matrix: Sequence[Sequence[float]]) -> Optional[float]:
    """GEM backward transfer: mean over j < T of (A[T][j] - A[j][j]). None with one task."""
    _check_triangular(acc_matrix)
    last = len(acc_matrix) - 1
    if last == 0:
        return None
    return float(np.mean([acc_matrix[last][j] - acc_matrix[j][j] for j in range(last)]))


def bwt_all_pairs(acc_matrix: Sequence[Sequence[float]]) -> Optional[float]:
    """Mean over all pairs i > j of (A[i][j] - A[j][j]). None with one task.

    What continuum's ``backward_transfer`` means to compute (it divides by the number of such
    pairs) although its docstring cites GEM, whose definition is ``bwt``. continuum 1.2.7's loop
    skips the pairs i = j + 1.
    """
    _check_triangular(acc_matrix)
    if len(acc_matrix) == 1:
        return None
    return float(np.mean([acc_matrix[i][j] - acc_matrix[j][j]
                          for i in range(1, len(acc_matrix)) for j in range(i)]))


def summary(acc_matrix: Sequence[Sequence[float]], acc: Sequence[float], acc_top5: Sequence[float]) -> dict:
    """Every metric of one run, keyed by its report name."""
    if len(acc) != len(acc_matrix) or len(acc_top5) != len(acc_matrix):
        raise ValueError(f"{len(acc_matrix)} matrix rows but {len(acc)} accuracies and "
                         f"{len(acc_top5)} top-5 accuracies")
    return {
        "avg_incremental_accuracy": average_incremental_accuracy(acc),
        "last_accuracy": last_accuracy(acc),
        "forgetting": forgetting(acc_matrix),
        "bwt": bwt(acc_matrix),
        "bwt_all_pairs": bwt_all_pairs(acc_matrix),
        "avg_incremental_accuracy_top5": average_incremental_accuracy(acc_top5),
        "last_accuracy_top5": last_accuracy(acc_top5),
    }


def _check_triangular(acc_matrix: Sequence[Sequence[float]]) -> None:
    """Raise ValueError unless row i holds exactly i + 1 accuracies (and there is a row)."""
    if len(acc_matrix) == 0:
        raise ValueError("empty accuracy matrix")
    for i, row in enumerate(acc_matrix):
        if len(row) != i + 1:
            raise ValueError(f"accuracy matrix row {i} has {len(row)} entries, expected {i + 1}")
