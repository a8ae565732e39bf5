"""Scenarios: task sizes and class sets for B0 and B50, class orders, against continuum's split (the oracle)."""
import numpy as np
import pytest
from continuum.datasets import InMemoryDataset
from continuum.scenarios import ClassIncremental
from continuum.tasks import TaskType

from suite.config import load
from suite.data.registry import load_dataset
from suite.data.scenario import build_scenario, plan_scenario, resolve_class_order, task_sizes
from suite.errors import UserError


def continuum_tasks(scenario, data) -> list[list[int]]:
    """The oracle: continuum's ClassIncremental on the real labels, as sorted original class ids per task."""
    sizes = [len(t) for t in scenario.tasks]
    reference = ClassIncremental(
        InMemoryDataset(data.train.images, data.train.labels, data_type=TaskType.IMAGE_ARRAY),
        increment=sizes[-1], initial_increment=sizes[0] if sizes[0] != sizes[-1] else 0,
        class_order=list(scenario.class_order))
    return [sorted(scenario.class_order[c] for c in taskset.get_classes()) for taskset in reference]


@pytest.mark.parametrize("sets", [
    ["scenario.increment=10"], ["scenario.increment=10", "scenario.initial_increment=50"],
    ["scenario.increment=5", "scenario.class_order=cifar100_order2"], ["scenario.increment=20", "scenario.class_order=seed:4"],
    ["scenario.increment=10", "scenario.initial_increment=50", "scenario.class_order=cifar100_order3"],
])
def test_split_agrees_with_continuum(sets):
    cfg = load([], ["data.name=synthetic", "data.num_classes=100", "data.train_per_class=2", "data.test_per_class=1",
                    *sets])
    data = load_dataset(cfg.data)
    scenario = build_scenario(cfg, data)
    assert continuum_tasks(scenario, data) == [sorted(t) for t in scenario.tasks]


def test_b0_and_b50_task_sizes():
    assert task_sizes(100, 10, 0) == [10] * 10
    assert task_sizes(100, 5, 50) == [50] + [5] * 10
    with pytest.raises(UserError, match="does not divide"):
        task_sizes(100, 7, 0)


def test_b50_scenario_classes_follow_the_order():
    cfg = load([], ["data.name=synthetic", "data.num_classes=100", "data.train_per_class=2",
                    "data.test_per_class=1", "scenario.increment=10", "scenario.initial_increment=50",
                    "scenario.class_order=cifar100_order1"])
    data = load_dataset(cfg.data)
    scenario = build_scenario(cfg, data)
    order = resolve_class_order("cifar100_order1", 100)
    assert scenario.setting == "B50-5steps"
    assert [len(t) for t in scenario.tasks] == [50, 10, 10, 10, 10, 10]
    assert list(scenario.tasks[0]) == order[:50] and list(scenario.tasks[-1]) == order[90:]
    assert scenario.label_of_class[order[0]] == 0 and scenario.label_of_class[order[99]] == 99


def test_b0_digits_scenario():
    cfg = load(["configs/quickstart.yaml"], ["scenario.class_order=seed:3"])
    scenario = build_scenario(cfg, load_dataset(cfg.data))
    assert scenario.setting == "B0-5steps"
    assert sorted(c for t in scenario.tasks for c in t) == list(range(10))
    assert list(scenario.class_order) == np.random.default_rng(3).permutation(10).tolist()


def test_joint_learns_every_class_in_one_task_under_the_same_setting():
    cfg = load(["configs/quickstart.yaml"], ["method=joint"])
    scenario = plan_scenario(cfg, 10)
    assert scenario.num_tasks == 1 and len(scenario.tasks[0]) == 10
    assert scenario.setting == "B0-5steps"
