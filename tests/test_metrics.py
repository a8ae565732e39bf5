"""suite.metrics: hand-computed values, and agreement with continuum 1.2.7's Logger.

continuum's ``forgetting`` and ``backward_transfer`` each stop one index short of their papers'
definitions (which the suite follows), so for those two the tests pin continuum's exact formula on
our accuracy matrix instead of equality: the inputs (accuracies per task) agree, the formulas
do not.
"""
import numpy as np
import pytest
from continuum.metrics import Logger

from suite import metrics

# One class per task is enough for the hand-made matrices; A[i][j] in percent.
MATRIX_3 = [[80.0], [85.0, 90.0], [50.0, 70.0, 85.0]]


def _continuum_forgetting(acc_matrix):
    """continuum 1.2.7's formula: j and l both range over 0..T-2 (not T-1), divided by T."""
    last = len(acc_matrix) - 1
    if last == 0:
        return 0.0
    drops = [max(acc_matrix[l][j] for l in range(j, last - 1)) - acc_matrix[last][j] for j in range(last - 1)]
    return sum(drops) / last


def _continuum_backward_transfer(acc_matrix):
    """continuum 1.2.7's formula: pairs i >= j + 2 only, divided by the number of pairs i > j."""
    rows = len(acc_matrix)
    if rows == 1:
        return 0.0
    total = sum(acc_matrix[i][j] - acc_matrix[j][j] for i in range(1, rows) for j in range(i - 1))
    return total / (rows * (rows - 1) / 2)


def _random_run(seed, num_tasks):
    """Per task: (predictions, targets, task ids as float64, like continuum's) on all seen classes."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 4, num_tasks)
    classes = np.split(np.arange(sizes.sum()), np.cumsum(sizes)[:-1])
    per_class = rng.integers(3, 31, sizes.sum())
    steps = []
    for t in range(num_tasks):
        seen = np.concatenate(classes[: t + 1])
        targets = np.repeat(seen, per_class[seen])
        tasks = np.concatenate([np.full(per_class[c].sum(), j) for j, c in enumerate(classes[: t + 1])])
        right = rng.random(len(targets)) < rng.uniform(0.2, 0.95, t + 1)[tasks]
        predictions = np.where(right, targets, rng.choice(seen, len(targets)))
        steps.append((predictions, targets, tasks.astype(np.float64)))
    return steps


def _steps_realizing(acc_matrix, per_task=20):
    """Predictions that give exactly ``acc_matrix`` (class j = task j, ``per_task`` samples each)."""
    steps = []
    for i, row in enumerate(acc_matrix):
        targets = np.repeat(np.arange(i + 1), per_task)
        correct = np.concatenate([np.arange(per_task) < round(a * per_task / 100) for a in row])
        steps.append((np.where(correct, targets, -1), targets, targets.astype(np.float64)))
    return steps


def _logger_after(steps):
    """A continuum Logger fed one test evaluation per task, queried before its last end_task."""
    logger = Logger(list_subsets=["test"])
    for t, (predictions, targets, tasks) in enumerate(steps):
        if t:
            logger.end_task()
        logger.add([predictions, targets, tasks], subset="test")
    return logger


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("num_tasks", [4, 5])
def test_random_predictions_agree_with_continuum_logger(seed, num_tasks):
    logger = Logger(list_subsets=["test"])
    acc_matrix, acc = [], []
    for t, (predictions, targets, tasks) in enumerate(_random_run(seed, num_tasks)):
        logger.add([predictions, targets, tasks], subset="test")
        row, overall = metrics.accuracy_row(predictions, targets, tasks, t + 1)
        acc_matrix.append(row)
        acc.append(overall)

        assert row == pytest.approx(100 * np.array(logger.accuracy_per_task), abs=1e-6)
        assert overall == pytest.approx(100 * logger.accuracy, abs=1e-6)
        assert metrics.average_incremental_accuracy(acc) == pytest.approx(
            100 * logger.average_incremental_accuracy, abs=1e-6)
        assert _continuum_forgetting(acc_matrix) == pytest.approx(100 * logger.forgetting, abs=1e-6)
        assert _continuum_backward_transfer(acc_matrix) == pytest.approx(
            100 * logger.backward_transfer, abs=1e-6)
        logger.end_task()


def test_continuum_forgetting_and_backward_transfer_differ_from_spec():
    logger = _logger_after(_steps_realizing(MATRIX_3))
    # continuum: forgetting = (80 - 50) / 2; backward transfer = (50 - 80) / 3.
    assert 100 * logger.forgetting == pytest.approx(15.0)
    assert 100 * logger.backward_transfer == pytest.approx(-10.0)
    assert metrics.forgetting(MATRIX_3) == pytest.approx(27.5)
    assert metrics.bwt_all_pairs(MATRIX_3) == pytest.approx(-15.0)


def test_two_tasks_continuum_reports_zero_forgetting_and_transfer():
    matrix = [[90.0], [70.0, 80.0]]
    logger = _logger_after(_steps_realizing(matrix))
    assert logger.forgetting == 0.0
    assert logger.backward_transfer == 0.0
    assert metrics.forgetting(matrix) == pytest.approx(20.0)
    assert metrics.bwt(matrix) == pytest.approx(-20.0)
    assert metrics.bwt_all_pairs(matrix) == pytest.approx(-20.0)


def test_hand_computed_3x3():
    # forgetting: (max(80, 85) - 50 + 90 - 70) / 2
    assert metrics.forgetting(MATRIX_3) == pytest.approx(27.5)
    # GEM: last row against the diagonal, (50 - 80 + 70 - 90) / 2
    assert metrics.bwt(MATRIX_3) == pytest.approx(-25.0)
    # all pairs: (85 - 80 + 50 - 80 + 70 - 90) / 3
    assert metrics.bwt_all_pairs(MATRIX_3) == pytest.approx(-15.0)


def test_forgetting_counts_only_rows_before_the_last():
    # The last row's own higher accuracy on task 0 is not a "previous best".
    assert metrics.forgetting([[60.0], [40.0, 90.0], [70.0, 90.0, 50.0]]) == pytest.approx((60 - 70 + 0) / 2)


def test_average_and_last_accuracy():
    assert metrics.average_incremental_accuracy([80.0, 87.0, 70.0]) == pytest.approx(79.0)
    assert metrics.last_accuracy([80.0, 87.0, 70.0]) == 70.0


def test_summary():
    result = metrics.summary(MATRIX_3, [80.0, 87.0, 70.0], [95.0, 96.0, 91.0])
    assert result == pytest.approx({
        "avg_incremental_accuracy": 79.0,
        "last_accuracy": 70.0,
        "forgetting": 27.5,
        "bwt": -25.0,
        "bwt_all_pairs": -15.0,
        "avg_incremental_accuracy_top5": 94.0,
        "last_accuracy_top5": 91.0,
    })


def test_one_task():
    assert metrics.forgetting([[75.0]]) is None
    assert metrics.bwt([[75.0]]) is None
    assert metrics.bwt_all_pairs([[75.0]]) is None
    assert metrics.summary([[75.0]], [75.0], [99.0]) == {
        "avg_incremental_accuracy": 75.0,
        "last_accuracy": 75.0,
        "forgetting": None,
        "bwt": None,
        "bwt_all_pairs": None,
        "avg_incremental_accuracy_top5": 99.0,
        "last_accuracy_top5": 99.0,
    }


def test_accuracy_row_weights_overall_by_samples():
    targets = np.array([0, 0, 0, 1, 2, 2, 3, 3])
    task_of_target = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    predictions = np.array([0, 0, 1, 1, 2, 0, 0, 0])
    row, overall = metrics.accuracy_row(predictions, targets, task_of_target, 2)
    assert row == pytest.approx([75.0, 25.0])
    assert overall == pytest.approx(50.0)


@pytest.mark.parametrize("predictions, targets, tasks, seen", [
    ([0, 1], [0, 1], [0, 0], 2),  # task 1 has no sample
    ([0, 1], [0, 1], [0, 2], 2),  # task id beyond the tasks seen
    ([0], [0, 1], [0, 1], 2),  # lengths differ
])
def test_accuracy_row_rejects_bad_input(predictions, targets, tasks, seen):
    with pytest.raises(ValueError):
        metrics.accuracy_row(predictions, targets, tasks, seen)


@pytest.mark.parametrize("bad", [[], [[1.0], [2.0]], [[1.0, 2.0]]])
def test_matrix_must_be_lower_triangular(bad):
    with pytest.raises(ValueError):
        metrics.forgetting(bad)


def test_summary_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        metrics.summary(MATRIX_3, [80.0, 87.0], [95.0, 96.0, 91.0])
