"""Class-incremental scenarios: which original classes each task brings.

B0, or a larger first task, then equal increments, in a class order. The split is the one of
continuum's `ClassIncremental`, which tests/test_scenario.py uses as the oracle; it is not called
at run time, because importing continuum (sklearn, torchvision's models) costs seconds in the
driver and again in every Ray worker. The learner keeps data as indices into the data set (memory
exemplars must be indices, to checkpoint and broadcast them) and original class ids for reports.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from suite.config import Config, read_yaml
from suite.data.registry import DataSet
from suite.errors import UserError
from suite.methods import METHODS

ORDERS_DIR = Path(__file__).resolve().parents[2] / "configs" / "orders"


@dataclass(frozen=True)
class Scenario:
    class_order: tuple[int, ...]  # original class ids, in the order they are learned
    tasks: tuple[tuple[int, ...], ...]  # original class ids of each task
    setting: str  # e.g. "B0-10steps", "B50-5steps"
    class_names: tuple[str, ...] = ()  # by original class id, once the data set is loaded

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def label_of_class(self) -> dict[int, int]:
        """Original class id -> incremental label (its position in the class order)."""
        return {c: i for i, c in enumerate(self.class_order)}

    def classes_up_to(self, task: int) -> list[int]:
        return [c for t in self.tasks[: task + 1] for c in t]


def task_sizes(num_classes: int, increment: int, initial_increment: int) -> list[int]:
    """Classes per task, or a UserError when the increments do not cover the classes."""
    first = initial_increment or increment
    if first > num_classes:
        key = "scenario.initial_increment" if initial_increment else "scenario.increment"
        raise UserError(f"{key} = {first} is larger than the {num_classes} classes of the data set")
    rest = num_classes - first
    if rest % increment:
        divisors = [d for d in range(1, rest + 1) if rest % d == 0] if rest else [increment]
        raise UserError(
            f"scenario.increment = {increment} does not divide the {rest} classes after the first task "
            f"of {first} ({num_classes} in all); expected one of {', '.join(map(str, divisors))}"
        )
    return [first] + [increment] * (rest // increment)


def setting_name(sizes: list[int], increment: int) -> str:
    """DyTox/DER naming: "B0-10steps" for equal tasks, "B50-5steps" for 50 base classes + 5 steps."""
    if sizes[0] != increment:
        return f"B{sizes[0]}-{len(sizes) - 1}steps"
    return f"B0-{len(sizes)}steps"


def _read_order_file(name: str) -> list:
    path = Path(name) if name.endswith((".yaml", ".yml")) else ORDERS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in ORDERS_DIR.glob("*.yaml"))
        raise UserError(
            f"scenario.class_order: no order file '{name}' (looked for {path}); "
            f"expected a list, 'seed:N' or one of {', '.join(known)}"
        )
    order = read_yaml(path).get("class_order")
    if not isinstance(order, list):
        raise UserError(f"order file '{path}' has no 'class_order' list")
    return order


def resolve_class_order(spec, num_classes: int) -> list[int]:
    """A class order from a list, an order-file name or 'seed:N'; checked to be a permutation."""
    if spec is None:
        return list(range(num_classes))
    if isinstance(spec, str) and spec.startswith("seed:"):
        try:
            seed = int(spec[5:])
        except ValueError:
            raise UserError(f"scenario.class_order = '{spec}' is malformed; expected 'seed:N' with an integer N") from None
        return np.random.default_rng(seed).permutation(num_classes).tolist()
    order = _read_order_file(spec) if isinstance(spec, str) else spec
    if not isinstance(order, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in order):
        raise UserError(f"scenario.class_order must be a list of integer class ids, an order name or 'seed:N'; got {spec!r}")
    foreign = sorted(set(order) - set(range(num_classes)))
    if foreign:
        raise UserError(f"scenario.class_order has ids outside 0..{num_classes - 1}: {foreign[:5]}")
    if len(set(order)) != len(order):
        dupes = sorted({c for c in order if order.count(c) > 1})
        raise UserError(f"scenario.class_order repeats class ids {dupes[:5]}; expected each class once")
    if len(order) != num_classes:
        raise UserError(f"scenario.class_order lists {len(order)} classes; the data set has {num_classes}")
    return order


def plan_scenario(cfg: Config, num_classes: int) -> Scenario:
    """The scenario from the config alone (no data loaded): used for validation and --dry-run."""
    order = resolve_class_order(cfg.scenario.class_order, num_classes)
    sizes = task_sizes(num_classes, cfg.scenario.increment, cfg.scenario.initial_increment)
    setting = setting_name(sizes, cfg.scenario.increment)
    if METHODS[cfg.method].single_task:
        sizes = [num_classes]  # the upper bound: every class in one task, reported under the same setting
    bounds = np.cumsum([0] + sizes)
    tasks = tuple(tuple(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
    return Scenario(tuple(order), tasks, setting)


def build_scenario(cfg: Config, data: DataSet) -> Scenario:
    """The planned scenario, checked against the labels the data set really has."""
    scenario = plan_scenario(cfg, data.num_classes)
    missing = set(scenario.class_order) - set(np.unique(data.train.labels).tolist())
    if missing:
        raise UserError(f"data set '{data.name}' has no training images of classes {sorted(missing)[:5]}")
    return replace(scenario, class_names=tuple(data.class_names))
