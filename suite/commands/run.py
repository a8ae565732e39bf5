"""One run from a validated config: check, plan (once), train (on Ray Train or in this process),
report. The door that composes the run layer and the report: neither imports the other.

Exit codes as the CLI's: 0 done, 1 the run failed, 128+N stopped by signal N.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from suite import schema
from suite.config import Config
from suite.learner.learner import NonFiniteLoss
from suite.run.checkpoints import check_resume
from suite.run.console import print_summary
from suite.run.footprint import OutOfMemory
from suite.run.interrupt import Interrupted, mark_interrupted, resume_command, stop_signals_raise
from suite.run.layout import (
    REPORT_DIR, check_lasting, check_output_base, check_run_dir, check_writable, results_at, run_dir_of,
)
from suite.run.local import check_storage, run_in_process
from suite.run.plan import (
    Plan, check_config, memory_warning, plan_run, resource_warnings, resources_there, upsampling_warning,
)
from suite.run.storage import is_uri


@dataclass(frozen=True)
class RunOptions:
    resume: bool = False
    dry_run: bool = False
    in_process: bool = False
    address: str | None = None  # Ray cluster; None: RAY_ADDRESS, else an embedded local Ray
    argv: tuple[str, ...] = ()  # the command line, for the resume command an interruption prints


def run_command(cfg: Config, options: RunOptions) -> int:
    check_config(cfg)
    if options.in_process:
        check_storage(cfg)
    run_dir = run_dir_of(cfg)
    check_lasting(run_dir.parent)
    if cfg.output.storage_path and not is_uri(cfg.output.storage_path):
        check_lasting(Path(cfg.output.storage_path), "output.storage_path")
    check_output_base(run_dir.parent)
    check_run_dir(cfg, run_dir, options.resume)  # a dry run refuses what the run would refuse
    stored = check_resume(cfg, run_dir) if options.resume else None
    if stored is not None and stored.get("status") == schema.FINISHED:
        print(f"run '{run_dir}' has already finished all {stored.get('tasks_done')} tasks: nothing to resume, "
              "nothing changed (its results.json and report are as they were)")
        return 0
    plan = plan_run(cfg, run_dir)
    print(plan.describe(), flush=True)
    for warning in (plan.check_memory(), upsampling_warning(cfg, plan.data), memory_warning(cfg, plan.data)):
        if warning:
            print(warning, file=sys.stderr, flush=True)
    if options.dry_run:
        warn_resources(plan, options, connected=False)
        print("dry run: nothing trained, nothing written")
        return 0
    check_writable(run_dir.parent)
    if cfg.output.storage_path:  # results persist elsewhere: the local directory marks the run for --resume
        run_dir.mkdir(exist_ok=True)
    return execute(plan, options)


def warn_resources(plan: Plan, options: RunOptions, connected: bool) -> None:
    """The request against the resources there are (resources_there), one warning line each on stderr."""
    nodes, where = resources_there(options.address, options.in_process, connected)
    for line in resource_warnings(plan.cfg, nodes, where, plan.epochs):
        print(line, file=sys.stderr, flush=True)


def execute(plan: Plan, options: RunOptions) -> int:
    """Train, then build the run's report; a stop signal is recorded in results.json. Ray Train and
    the report (pandas, matplotlib) are imported here: a dry run pays for neither."""
    failures = (NonFiniteLoss, OSError, OutOfMemory)  # any other crash of the learner keeps its traceback
    if not options.in_process:
        from suite.run.cluster import init_ray
        from suite.run.ray_train import run_on_ray
        from suite.run.supervise import RunFailed

        failures += (RunFailed,)
        init_ray(options.address)  # first: ray.init installs a SIGTERM handler of its own, which aborts
    warn_resources(plan, options, connected=not options.in_process)
    try:
        with stop_signals_raise():
            if options.in_process:
                results = run_in_process(plan, options.resume)
            else:
                results = run_on_ray(plan, options.address, str(plan.out_of_memory()))
    except Interrupted as e:
        return record_interruption(plan, e, options)
    except failures as e:
        cause = f"{type(e).__name__}: {e}" if isinstance(e, (NonFiniteLoss, OSError)) else str(e)
        print(f"error: the run failed: {cause}; the last complete results and checkpoint are kept in "
              f"{plan.run_dir}", file=sys.stderr)
        return 1
    report = None
    if plan.cfg.report.at_end:
        from suite.report import build_report

        report = build_report(plan.run_dir, plan.run_dir / REPORT_DIR, plan.cfg.report.style, plan.cfg.report.band)
    print_summary(results, plan.run_dir, report)
    return 0


def record_interruption(plan: Plan, stop: Interrupted, options: RunOptions) -> int:
    """After a stop signal (the run's workers stopped, suite/run/ray_train.py): results.json says
    `interrupted` and the line is printed before Ray shuts down, which a worker that outlived the
    stop would end with exit code 1."""
    resume = resume_command(list(options.argv))
    status = mark_interrupted(results_at(plan.cfg, plan.run_dir), stop.signal_name, resume)
    line = {schema.FINISHED: f"interrupted by {stop.signal_name} after the run had finished: its results are in "
                        f"{plan.run_dir}",
            schema.INTERRUPTED: f"error: interrupted by {stop.signal_name}: the finished tasks are kept (status: "
                           f"interrupted) in {plan.run_dir}; to continue: {resume}",
            "none": f"error: interrupted by {stop.signal_name}: no task had finished in {plan.run_dir}; "
                    f"to continue: {resume}"}[status]
    print(line, file=sys.stderr, flush=True)
    if not options.in_process:
        from suite.run.cluster import shutdown_ray

        shutdown_ray()
    return stop.exit_code
