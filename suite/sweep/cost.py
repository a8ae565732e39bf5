"""A sweep's cost in GPU-hours: each trial's work (suite/learner/work.py, in trained images) at the
training-step rate measured for its method and model on a GPU (configs/gpu_step_rates.yaml: blocks of
rates, each for the model it was measured on), at the measured task count nearest its own. Step
rates leave out data loading, the optimizer and evaluation's own overheads: the figures are a floor."""
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


def rate_of(plan: Plan, rates: dict) -> Optional[tuple[float, int, str]]:
    """(images a second, the task count it was measured at, the GPU) for the trial's method, from the
    first block measured on the trial's model and image size; None where none was."""
    for block in rates["measurements"]:
        measured = block["rates"].get(plan.cfg.method)
        model = {**{key: getattr(plan.cfg.model, key) for key in block["model"] if key != "image_size"},
                 "image_size": image_side(plan.cfg, plan.data)}
        if measured and model == block["model"]:
            tasks = min(measured, key=lambda n: abs(int(n) - plan.scenario.num_tasks))
            return float(measured[tasks]), int(tasks), block["device"]
    return None


def cost_lines(plans: dict[str, Plan], rates: dict) -> list[str]:
    """A line per trial (its work, and its GPU-hours where it trains on GPUs and its method has a rate),
    after the total."""
    lines, hours, work_in_all, unpriced, devices = [], 0.0, 0.0, set(), {}
    for name, plan in plans.items():
        work = trial_work(plan)
        work_in_all += work
        rate = rate_of(plan, rates) if plan.cfg.ray.use_gpu else None
        if rate is None:
            where = "no GPU step rate measured for its method and model" if plan.cfg.ray.use_gpu else "on CPUs"
            unpriced.update([plan.cfg.method] if plan.cfg.ray.use_gpu else [])
            lines.append(f"  {name}: {work / 1e6:.2f}M images trained; {where}")
            continue
        devices[rate[2]] = devices.get(rate[2], 0) + 1
        trial_hours = work / rate[0] / 3600
        hours += trial_hours
        lines.append(f"  {name}: {work / 1e6:.2f}M images trained; {trial_hours:.2f} GPU-h at {rate[0]:,.0f} "
                     f"img/s ({plan.cfg.method}, {rate[1]} tasks, {rate[2]})")
    total = f"cost      {work_in_all / 1e6:.2f}M images trained in all"
    if devices:
        on = " and ".join(f"one {device} ({count} trial(s))" for device, count in devices.items())
        total += (f"; {hours:.1f} GPU-hours for the {sum(devices.values())} priced trial(s), on {on}, at measured "
                  f"step rates (a floor: no data loading, optimizer or evaluation overheads; "
                  f"configs/gpu_step_rates.yaml)")
    if unpriced:
        total += f"; not priced (no step rate measured on a GPU): {', '.join(sorted(unpriced))}"
    return [total, *lines]
