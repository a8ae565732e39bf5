"""`--sweep FILE`: plan every trial (each distinct data set loaded once, one copy shared by its
trials), then run them on Ray Tune (or print them with --dry-run), then the sweep's report."""
from __future__ import annotations

import sys
from pathlib import Path

from suite import schema
from suite.errors import UserError
from suite.run.layout import REPORT_DIR, check_lasting, check_output_base, check_writable
from suite.run.plan import Plan, plan_run, resource_warnings, resources_there
from suite.sweep.cost import cost_lines, load_rates
from suite.sweep.spec import Sweep
from suite.sweep.summary import SUMMARY, best_trials


def plan_trials(sweep: Sweep, sweep_dir: Path) -> dict[str, Plan]:
    """Each trial's plan (the trials of one data set share it, loaded once) and its attention against
    the memory there is; a warning line per trial that may not fit. (Each trial's config was checked
    as the sweep file was read.)"""
    datasets, plans = {}, {}
    for trial in sweep.trials:
        key = repr(trial.cfg.data)
        plan = plan_run(trial.cfg, sweep_dir / trial.name, datasets.get(key))
        datasets[key] = plan.data
        plans[trial.name] = plan
        try:
            warning = plan.check_memory()
        except UserError as e:
            raise UserError(f"{sweep.path}: trial {trial.name}: {e}") from None
        if warning:
            print(f"trial {trial.name}: {warning}", file=sys.stderr)
    return plans


def warn_resources(plans: dict[str, Plan], address: str | None) -> None:
    """Each trial's request against the resources there are, as a run's is checked; a warning that
    several trials share is printed once, with their count."""
    nodes, where = resources_there(address)
    trials_of: dict[str, list[str]] = {}
    for name, plan in plans.items():
        for line in resource_warnings(plan.cfg, nodes, where, plan.epochs):
            trials_of.setdefault(line, []).append(name)
    for line, names in trials_of.items():
        which = f"trial {names[0]}" if len(names) == 1 else f"{len(names)} trials"
        print(f"{line} ({which})", file=sys.stderr, flush=True)


def sweep_command(sweep: Sweep, basedir: Path, dry_run: bool, address: str | None) -> int:
    check_lasting(basedir)
    check_output_base(basedir)
    sweep_dir = basedir / sweep.name
    plans = plan_trials(sweep, sweep_dir)
    warn_resources(plans, address)
    print(sweep.describe(), *cost_lines(plans, load_rates()), f"output    {sweep_dir}", sep="\n", flush=True)
    if dry_run:
        print("dry run: nothing trained, nothing written")
        return 0
    # Imported here: a dry run pays for neither Ray Tune nor the report (pandas, matplotlib).
    from suite.sweep.tune import run_sweep

    check_writable(basedir)
    summary = run_sweep(sweep, plans, sweep_dir, address)
    print(summary.to_string(index=False))
    for line in best_trials(summary):
        print(line)
    first = sweep.trials[0].cfg.report  # one report for the sweep: its options as `set` gives them
    print(f"summary:  {sweep_dir / SUMMARY}")
    if first.at_end:
        from suite.report import build_report

        print(f"report:   {build_report(sweep_dir, sweep_dir / REPORT_DIR, first.style, first.band)}")
    unfinished = summary[summary["status"] != schema.FINISHED]
    if len(unfinished):
        print(f"error: {len(unfinished)} trial(s) did not finish: {', '.join(unfinished['trial'])}; "
              "run the same command again to continue", file=sys.stderr)
        return 1
    return 0
