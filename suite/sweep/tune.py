"""A sweep as a Ray Tune `Tuner`: each trial launches its run's `TorchTrainer` (Ray Train).

Ray 2.60 pattern: a function trainable that builds the TorchTrainer and calls fit(), with
`TuneReportCallback` in the trainer's RunConfig so per-epoch and per-task metrics reach Tune, and
Tune's logger callbacks (logging.backend) record them. Each trial's run
directory is SWEEP_DIR/<trial name>, stable across restarts, so a retried or restored trial
resumes its own run from its last task checkpoint. Tune's own state lives in SWEEP_DIR/tune.
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from suite.learner.progress import format_seconds
from suite import schema
from suite.run.cluster import cluster_nodes, init_ray, set_driver_env
from suite.run.plan import Plan
from suite.run.ray_train import make_trainer
from suite.run.supervise import fit
from suite.run.trackers import tune_callbacks
from suite.sweep.spec import Sweep
from suite.sweep.summary import summary_frame, trial_results, write_summary

TUNE_DIR = "tune"
TRIAL_DRIVER_CPUS = 0.01  # a trial's own process only waits on its workers; they hold the CPUs


def run_trial(config: dict, stored: list) -> None:
    """One trial: `config["trial"]` names it (all Tune shows and stores); `stored` holds the
    object-store reference of every trial's plan, by name (one copy of each data set, however many
    trials share it; in a list, which `tune.with_parameters` passes on as it is, where it would
    resolve a bare reference). The trial's workers read their plan from the same object."""
    plans = stored[0]
    trials = ray.get(plans)  # numpy arrays come back as views of the stored object: no copy
    if config["trial"] not in trials:  # a restored sweep whose file no longer has this trial
        raise RuntimeError(f"trial '{config['trial']}' is not in the sweep file any more; "
                           "rerun the changed sweep under a new --name")
    set_driver_env()  # this trial's process starts its run's TorchTrainer
    plan = trials[config["trial"]]
    if (trial_results(plan.cfg, plan.run_dir) or {}).get("status") == schema.FINISHED:  # restored after the driver
        return                                                                       # died between finish and bookkeeping
    trainer = make_trainer(plan, cluster_nodes(), callbacks=[TuneReportCallback()], reserved=TRIAL_DRIVER_CPUS,
                           trackers=False, stored=(plans, config["trial"]))
    fit(trainer, plan.cfg, plan.run_dir)


class SummaryCallback(tune.Callback):
    """Rewrites the sweep summary whenever a trial reports, finishes or fails, and prints a line per
    trial that ends: 'trial k/N done', the time elapsed and an ETA (from the trials that ran here;
    those a continued sweep had finished before end at once and do not count in the rate)."""

    def __init__(self, sweep: Sweep, sweep_dir: Path):
        self.sweep, self.sweep_dir = sweep, sweep_dir
        self.finished_before = {t.name for t in sweep.trials
                                if (trial_results(t.cfg, sweep_dir / t.name) or {}).get("status") == schema.FINISHED}
        self.ended, self.ran, self.start = 0, 0, time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        write_summary(self.sweep, self.sweep_dir)

    def on_trial_complete(self, iteration, trials, trial, **info):
        write_summary(self.sweep, self.sweep_dir)
        self.trial_ended(trial.config["trial"], "done")

    def on_trial_error(self, iteration, trials, trial, **info):
        write_summary(self.sweep, self.sweep_dir)
        self.trial_ended(trial.config["trial"], schema.FAILED)

    def trial_ended(self, name: str, how: str) -> None:
        self.ended += 1
        self.ran += name not in self.finished_before
        total, elapsed = len(self.sweep.trials), time.monotonic() - self.start
        eta = format_seconds(elapsed / self.ran * (total - self.ended)) if self.ran else "?"
        print(f"sweep     trial {self.ended}/{total} {how} ({name})  elapsed {format_seconds(elapsed)}  eta {eta}",
              flush=True)


def sweep_trackers(sweep: Sweep) -> list[str]:
    """The sweep's logging.backend: Tune's logger callbacks log every trial (its runs log none)."""
    return list(dict.fromkeys(name for trial in sweep.trials for name in trial.cfg.logging.backend))


def run_sweep(sweep: Sweep, plans: dict[str, Plan], sweep_dir: Path, address: str | None) -> pd.DataFrame:
    """Run (or continue) every trial of its plan; returns the final summary."""
    init_ray(address)
    stored = [ray.put(plans)]  # the trials of one data set share one copy of it (pickle keeps shared objects shared)
    trainable = tune.with_resources(tune.with_parameters(run_trial, stored=stored), {"CPU": TRIAL_DRIVER_CPUS})
    if (sweep_dir / TUNE_DIR).exists():
        print(f"continuing the sweep in {sweep_dir}: finished trials are kept, the others resume from their "
              "last checkpoint", flush=True)
    # A new Tuner even when continuing (not Tuner.restore): a restored Tuner starts every unfinished trial at
    # once, as max_concurrent_trials only holds back new trials, and each trial's run directory holds its
    # progress anyway (run_trial returns at once for a finished one).
    space = {"trial": tune.grid_search(list(plans))}  # names only: Tune's tables stay one line per trial
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(max_concurrent_trials=sweep.max_concurrent_trials),
        run_config=tune.RunConfig(name=TUNE_DIR, storage_path=str(sweep_dir),
                                  callbacks=[SummaryCallback(sweep, sweep_dir),
                                             *tune_callbacks(sweep_trackers(sweep), str(sweep_dir))],
                                  failure_config=tune.FailureConfig(max_failures=1)),
    )
    tuner.fit()
    write_summary(sweep, sweep_dir)
    return summary_frame(sweep, sweep_dir)
