"""Sweep files: base configs + axes -> a validated list of trials with stable names. No Ray here.

    name: quick                        # default output name (--name overrides)
    base: [configs/quickstart.yaml]    # config files, layered left to right
    recipes:                           # per method: config files layered after base (optional)
      dytox: [configs/model/cifar_dytox.yaml]
    set: {train.epochs: 3}             # overrides for every trial (optional)
    axes:                              # grid: a list of values per config key
      scenario.class_order: [null, "seed:1"]
      model.num_keys: [1, 5]
      train.lr: {loguniform: [1.0e-3, 1.0e-1]}   # random: drawn `num_samples` times
    num_samples: 1                     # grid repeats, or random draws per grid point
    seed: 0                            # seeds the random draws
    max_concurrent_trials: 2
    select_on: test                    # the split summary.csv ranks trials on: test, or validation
                                       # (every trial then needs data.validation_fraction > 0)

Random axes are drawn here, once, from a seeded generator, rather than by Tune's searchers: every
trial is then known before the sweep starts (validated, named, counted in --dry-run), and a
restarted sweep finds the same trials under the same names.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from suite import config as config_mod
from suite.config import Config
from suite.errors import UserError
from suite.run.plan import check_config
from suite.schema import SPLITS
from suite.run.storage import join

SWEEP_KEYS = {"name", "base", "recipes", "set", "axes", "num_samples", "seed", "max_concurrent_trials", "select_on"}
DISTRIBUTIONS = {
    "uniform": lambda rng, lo, hi: float(rng.uniform(lo, hi)),
    "loguniform": lambda rng, lo, hi: float(np.exp(rng.uniform(np.log(lo), np.log(hi)))),
    "randint": lambda rng, lo, hi: int(rng.integers(lo, hi)),
}


@dataclass(frozen=True)
class Trial:
    name: str
    values: dict[str, Any]  # axis key -> value
    cfg: Config


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    trials: tuple[Trial, ...]
    max_concurrent_trials: int
    select_on: str = "test"  # the split trials are ranked on (one of schema.SPLITS)

    def describe(self) -> str:
        lines = [f"sweep     {self.name} ({self.path}): {len(self.trials)} trial(s), "
                 f"at most {self.max_concurrent_trials} at a time, ranked on {self.select_on}"]
        for t in self.trials:
            r = t.cfg.ray
            cpus = f"{r.cpus_per_worker:g}" if r.cpus_per_worker else "shared-out"
            gpus = f" + {r.gpus_per_worker:g} GPU" if r.use_gpu else ""
            values = ", ".join(f"{k}={v!r}" for k, v in t.values.items())
            lines.append(f"  {t.name}\n      {values}; {r.num_workers} worker(s) x ({cpus} CPU{gpus})")
        return "\n".join(lines)


LONG_VALUE = 24  # characters of an axis value a trial name keeps whole


def trial_name(values: dict[str, Any], index: int | None) -> str:
    """A stable name from the axis values (and a sample index if repeated), safe in a file name and
    unquoted in a shell: 'size-100_num_keys-5'."""
    parts = [f"{key.split('.')[-1]}-{_short(v)}" for key, v in values.items()]
    if index is not None:
        parts.append(f"sample-{index}")
    return re.sub(r"[^A-Za-z0-9_.+-]", "", "_".join(parts)) or "trial"


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = json.dumps(value) if isinstance(value, list) else str(value).replace(":", "")
    if isinstance(value, list) or len(text) > LONG_VALUE:  # a digest: the same in every process (hash() is not)
        return text[:8].strip("[\"") + hashlib.sha1(text.encode()).hexdigest()[:6]
    return text


def _check_spec(spec: dict, where: str) -> None:
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise UserError(f"{where}: unknown sweep key(s) {sorted(unknown)}; expected {sorted(SWEEP_KEYS)}")
    axes = spec.get("axes")
    if not isinstance(axes, dict) or not axes:
        raise UserError(f"{where}: 'axes' must map config keys to lists of values (or distributions)")
    keys = config_mod.all_keys()
    for key, values in axes.items():
        if key not in keys:
            raise config_mod.unknown_key_error(key, f"{where}: axis")
        if isinstance(values, dict):
            if len(values) != 1 or next(iter(values)) not in DISTRIBUTIONS:
                raise UserError(f"{where}: axis '{key}' has {values!r}; expected a list or one of "
                                f"{', '.join(DISTRIBUTIONS)}: [low, high]")
            bounds = next(iter(values.values()))
            if not (isinstance(bounds, list) and len(bounds) == 2 and bounds[0] < bounds[1]):
                raise UserError(f"{where}: axis '{key}' needs [low, high] with low < high, got {bounds!r}")
        elif not isinstance(values, list) or not values:
            raise UserError(f"{where}: axis '{key}' must be a non-empty list of values, got {values!r}")
    recipes = spec.get("recipes", {})
    if not isinstance(recipes, dict) or not all(
            isinstance(files, (str, list)) for files in recipes.values()):
        raise UserError(f"{where}: 'recipes' must map method names to config files")
    methods = axes.get("method", [spec.get("set", {}).get("method")])
    stray = sorted(set(recipes) - set(methods))
    if stray:
        raise UserError(f"{where}: recipes name {', '.join(stray)}, which no trial runs; expected methods of the "
                        f"'method' axis ({', '.join(map(str, methods))})")
    for key in ("num_samples", "max_concurrent_trials", "seed"):
        value = spec.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "seed" else 1):
            raise UserError(f"{where}: '{key}' = {value!r}; expected a positive integer")
    if spec.get("select_on", "test") not in SPLITS:
        raise UserError(f"{where}: 'select_on' = {spec['select_on']!r}; expected one of {', '.join(SPLITS)}")


def _check_selection(trials: list[Trial], select_on: str, where: str) -> None:
    """Ranking on the validation split needs one in every trial."""
    if select_on != "validation":
        return
    without = [t.name for t in trials if not t.cfg.data.validation_fraction]
    if without:
        more = f" (and {len(without) - 1} more)" if len(without) > 1 else ""
        raise UserError(f"{where}: 'select_on' = 'validation', but trial {without[0]}{more} has "
                        "data.validation_fraction = 0, so no validation split; set data.validation_fraction "
                        "(e.g. 0.1) under 'set', or select_on: test")


def _points(axes: dict, num_samples: int, rng) -> list[tuple[dict, int | None]]:
    grid_keys = [k for k, v in axes.items() if isinstance(v, list)]
    random_keys = [k for k, v in axes.items() if isinstance(v, dict)]
    points = []
    for combo in itertools.product(*(axes[k] for k in grid_keys)):
        for sample in range(num_samples):
            values = dict(zip(grid_keys, combo))
            for key in random_keys:
                (dist, (lo, hi)), = axes[key].items()
                values[key] = DISTRIBUTIONS[dist](rng, lo, hi)
            points.append((values, sample if num_samples > 1 and not random_keys else None))
    return points


def load_sweep(path: Path, resolve_config, overrides: dict, sets: list[str], name: str | None,
               basedir: Path, flags: dict[str, str] | None = None) -> Sweep:
    """Read and validate a sweep file; every trial's config is validated like a run's.

    Trial runs go to BASEDIR/<sweep name>/<trial name>. `flags` names the command-line flag of
    an override in errors.
    """
    where = str(path)
    flags = flags or {}
    spec = config_mod.read_yaml(path)
    _check_spec(spec, where)
    base = spec.get("base", [])
    base = [base] if isinstance(base, str) else base
    files = [resolve_config(b) for b in base]
    common = {**spec.get("set", {}), **overrides}
    rng = np.random.default_rng(spec.get("seed", 0))
    name = name or spec.get("name") or path.stem
    problem = config_mod.name_problem(str(name))
    if problem:
        raise UserError(f"{where}: the sweep's name {name!r} {problem}")
    sweep_dir = str(Path(basedir) / name)
    trials, names = [], set()
    for values, sample in _points(spec["axes"], spec.get("num_samples", 1), rng):
        tname = trial_name(values, sample)
        if tname in names:
            tname = trial_name(values, len(names))
        names.add(tname)
        extra = {**common, **values, "output.basedir": sweep_dir, "output.name": tname}
        origin = {**{k: f"{where}: set" for k in spec.get("set", {})}, **{k: flags[k] for k in overrides if k in flags},
                  **{k: f"{where}: trial {tname}" for k in values}}
        method = values.get("method", common.get("method"))
        recipe = spec.get("recipes", {}).get(method, [])
        recipe = [recipe] if isinstance(recipe, str) else recipe
        cfg = config_mod.load(files + [resolve_config(r) for r in recipe], sets, extra, origin)
        if cfg.output.storage_path:  # the trials of a sweep persist under STORAGE/<sweep name>/<trial>
            cfg = config_mod.apply(cfg, {"output.storage_path": join(cfg.output.storage_path, name)}, where)
        try:
            check_config(cfg)
        except UserError as e:
            raise UserError(f"{where}: trial {tname}: {e}") from None
        trials.append(Trial(tname, values, cfg))
    select_on = spec.get("select_on", "test")
    _check_selection(trials, select_on, where)
    return Sweep(name, path, tuple(trials), spec.get("max_concurrent_trials", 1), select_on)
