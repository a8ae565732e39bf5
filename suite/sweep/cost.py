"""A sweep's cost in GPU-hours: each trial's work (suite/learner/work.py, in trained images) at the
training-step rate measured for its method on a GPU (configs/gpu_step_rates.yaml), at the measured
task count nearest its own. Step rates leave out data loading, the optimizer and evaluation's own
overheads: the figures are a floor."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import yaml

from suite.data.validation import validation_split
from suite.learner.work import work_plan
from suite.run.plan import Plan, image_side
from suite.strategies import strategy_for

RATES = Path(__file__).resolve().parents[2] / "configs" / "gpu_step_rates.yaml"


def load_rates(path: Path = RATES) -> dict:
    return yaml.safe_load(Path(path).read_text())


def trial_work(plan: Plan) -> float:
    """The trial's whole work, in trained images (every worker's together)."""
    cfg = plan.cfg
    trained, validation = validation_split(plan.data.train.labels, cfg.data.validation_fraction, cfg.seed)
    return work_plan(cfg, strategy_for(cfg), plan.data, plan.scenario, trained, validation, cfg.ray.num_workers).total()


def rate_of(plan: Plan, rates: dict) -> Optional[tuple[float, int]]:
    """(images a second, the task count it was measured at) for the trial's method, or None where none
    was measured for its method, model and image size."""
    measured = rates["rates"].get(plan.cfg.method)
    model = {**{key: getattr(plan.cfg.model, key) for key in rates["model"] if key != "image_size"},
             "image_size": image_side(plan.cfg, plan.data)}
    if not measured or model != rates["model"]:
        return None
    tasks = min(measured, key=lambda n: abs(int(n) - plan.scenario.num_tasks))
    return float(measured[tasks]), int(tasks)


def cost_lines(plans: dict[str, Plan], rates: dict) -> list[str]:
    """A line per trial (its work, and its GPU-hours where it trains on GPUs and its method has a rate),
    after the total."""
    lines, hours, work_in_all, unpriced, priced = [], 0.0, 0.0, set(), 0
    for name, plan in plans.items():
        work = trial_work(plan)
        work_in_all += work
        rate = rate_of(plan, rates) if plan.cfg.ray.use_gpu else None
        if rate is None:
            where = "no GPU step rate measured for its method and model" if plan.cfg.ray.use_gpu else "on CPUs"
            unpriced.update([plan.cfg.method] if plan.cfg.ray.use_gpu else [])
            lines.append(f"  {name}: {work / 1e6:.2f}M images trained; {where}")
            continue
        priced += 1
        trial_hours = work / rate[0] / 3600
        hours += trial_hours
        lines.append(f"  {name}: {work / 1e6:.2f}M images trained; {trial_hours:.2f} GPU-h at {rate[0]:,.0f} "
                     f"img/s ({plan.cfg.method}, {rate[1]} tasks)")
    total = f"cost      {work_in_all / 1e6:.2f}M images trained in all"
    if priced:
        total += (f"; {hours:.1f} GPU-hours on one {rates['device']} for the {priced} priced trial(s), at its "
                  f"measured step rates (a floor: no data loading, optimizer or evaluation overheads; "
                  f"configs/gpu_step_rates.yaml)")
    if unpriced:
        total += f"; not priced (no step rate measured on a GPU): {', '.join(sorted(unpriced))}"
    return [total, *lines]
