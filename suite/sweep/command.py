"""`--sweep FILE`: validate every trial, then run them on Ray Tune (or print them with --dry-run)."""
from __future__ import annotations

import sys
from pathlib import Path

from suite.data.registry import load_dataset
from suite.errors import UserError
from suite.run import schema
from suite.run.footprint import check_run
from suite.run.layout import REPORT_DIR, check_lasting, check_output_base, check_writable
from suite.run.plan import (
    check_config, check_data, check_files, image_side, planned_epochs, resource_warnings, resources_there,
)
from suite.sweep.spec import Sweep
from suite.sweep.summary import SUMMARY, best_trials


def check_trials_data(sweep: Sweep) -> dict[str, int]:
    """Each trial against its data set (every distinct one loaded once) and its attention against
    the memory there is; a warning line per trial that may not fit. The epochs each trial plans."""
    datasets, epochs = {}, {}
    for trial in sweep.trials:
        key = repr(trial.cfg.data)
        if key not in datasets:
            datasets[key] = load_dataset(trial.cfg.data)
            check_files(datasets[key])
        data = datasets[key]
        check_data(trial.cfg, data)
        num_tasks = check_config(trial.cfg).num_tasks
        epochs[trial.name] = planned_epochs(trial.cfg, num_tasks)
        try:
            warning = check_run(trial.cfg, image_side(trial.cfg, data), num_tasks)
        except UserError as e:
            raise UserError(f"{sweep.path}: trial {trial.name}: {e}") from None
        if warning:
            print(f"trial {trial.name}: {warning}", file=sys.stderr)
    return epochs


def warn_resources(sweep: Sweep, address: str | None, epochs: dict[str, int]) -> None:
    """Each trial's request against the resources there are, as a run's is checked (`epochs`: each
    trial's plan); a warning that several trials share is printed once, with their count."""
    nodes, where = resources_there(address)
    trials_of: dict[str, list[str]] = {}
    for trial in sweep.trials:
        for line in resource_warnings(trial.cfg, nodes, where, epochs[trial.name]):
            trials_of.setdefault(line, []).append(trial.name)
    for line, names in trials_of.items():
        which = f"trial {names[0]}" if len(names) == 1 else f"{len(names)} trials"
        print(f"{line} ({which})", file=sys.stderr, flush=True)


def sweep_command(sweep: Sweep, basedir: Path, dry_run: bool, address: str | None) -> int:
    check_lasting(basedir)
    check_output_base(basedir)
    warn_resources(sweep, address, check_trials_data(sweep))
    sweep_dir = basedir / sweep.name
    print(sweep.describe(), f"output    {sweep_dir}", sep="\n", flush=True)
    if dry_run:
        print("dry run: nothing trained, nothing written")
        return 0
    # Imported here: a dry run pays for neither Ray Tune nor the report (pandas, matplotlib).
    from suite.report import build_report
    from suite.sweep.tune import run_sweep

    check_writable(basedir)
    summary = run_sweep(sweep, sweep_dir, address)
    print(summary.to_string(index=False))
    for line in best_trials(summary):
        print(line)
    first = sweep.trials[0].cfg.report  # one report for the sweep: its options as `set` gives them
    report = build_report(sweep_dir, sweep_dir / REPORT_DIR, first.style, first.band)
    print(f"summary:  {sweep_dir / SUMMARY}\nreport:   {report}")
    unfinished = summary[summary["status"] != schema.FINISHED]
    if len(unfinished):
        print(f"error: {len(unfinished)} trial(s) did not finish: {', '.join(unfinished['trial'])}; "
              "run the same command again to continue", file=sys.stderr)
        return 1
    return 0
