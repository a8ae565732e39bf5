"""`python suite/run.py`: parse the command line (ours and the original code's style), validate, run.

Exit codes: 0 success; 2 a user error, one line on stderr; 1 an internal failure.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
from dataclasses import replace
from pathlib import Path

from suite import config as config_mod
from suite.errors import UserError
from suite.interrupt import Interrupted, mark_interrupted, resume_command, stop_signals_raise
from suite.storage import is_uri, join

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/quickstart.yaml"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, not argparse's usage dump
        raise UserError(f"{message} (see --help)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python suite/run.py", description="Class-incremental benchmark runs (DAFormer and baselines).")
    p.add_argument("configs", nargs="*", metavar="CONFIG.yaml", help="config files, layered left to right")
    p.add_argument("--options", nargs="+", default=[], metavar="A.yaml", help="more config files (the original code's style)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key, e.g. memory.size=500")
    p.add_argument("--name", help="run name: files go to OUTPUT_BASEDIR/NAME")
    p.add_argument("--output-basedir", help="base directory of runs (default: runs)")
    p.add_argument("--data-path", help="directory of the data set (data.path)")
    p.add_argument("--memory-size", type=int, help="total rehearsal memory (memory.size)")
    p.add_argument("--sweep", metavar="SWEEP.yaml", help="run a Ray Tune sweep")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else an embedded local Ray)")
    p.add_argument("--resume", action="store_true", help="continue the run NAME from its last finished task")
    p.add_argument("--dry-run", action="store_true", help="print the resolved plan and exit")
    p.add_argument("--in-process", action="store_true", help="run the learner in this process, without Ray")
    p.add_argument("--help-keys", action="store_true", help="list every config key with its default")
    return p


def resolve_config_path(name: str) -> Path:
    """A config path as given, else relative to the repo; `options/...` (the original layout) maps to configs/."""
    candidates = [Path(name), REPO / name]
    if name.startswith("options/"):
        candidates.append(REPO / "configs" / name[len("options/"):])
    for path in candidates:
        if path.is_file():
            return path
    raise UserError(f"config file '{name}' does not exist; expected a YAML file (see configs/)")


FLAGS = {"output.name": "--name", "output.basedir": "--output-basedir", "data.path": "--data-path",
         "memory.size": "--memory-size"}


def flag_overrides(args) -> dict:
    values = {key: getattr(args, flag[2:].replace("-", "_")) for key, flag in FLAGS.items()}
    return {k: v for k, v in values.items() if v is not None}


def load_config(args) -> tuple[config_mod.Config, list[Path]]:
    names = args.configs + args.options
    if not names and not args.sweep:
        names = [DEFAULT_CONFIG]
    files = [resolve_config_path(n) for n in names]
    cfg = config_mod.load(files, args.set, flag_overrides(args), FLAGS)
    if cfg.output.name is None:
        stem = files[-1].stem if files else "run"
        cfg = config_mod.apply(cfg, {"output.name": f"{stem}-{cfg.method}"}, "default name")
    return absolute_paths(cfg), files


def absolute_paths(cfg: config_mod.Config) -> config_mod.Config:
    """Ray Train workers change directory: every path is made absolute here, in the driver."""
    paths = {"output.basedir": str(Path(cfg.output.basedir).expanduser().resolve())}
    if cfg.data.path:
        paths["data.path"] = str(Path(cfg.data.path).expanduser().resolve())
    if cfg.output.storage_path and not is_uri(cfg.output.storage_path):
        paths["output.storage_path"] = str(Path(cfg.output.storage_path).expanduser().resolve())
    return config_mod.apply(cfg, paths, "paths")


def run_dir_of(cfg: config_mod.Config) -> Path:
    return Path(cfg.output.basedir) / cfg.output.name


def check_run_dir(cfg: config_mod.Config, run_dir: Path, resume: bool) -> None:
    """A new run needs a new name (Ray Train would silently continue an old one); --resume an old one."""
    from suite.runner import RESULTS, persist_dir
    from suite.storage import join, read_text_at

    if resume and not run_dir.exists():
        raise UserError(f"--resume: no run at '{run_dir}'; check --name and --output-basedir")
    if not resume and run_dir.exists():
        raise UserError(f"run directory '{run_dir}' already exists; pass --resume to continue it, "
                        "or choose another --name")
    if not cfg.output.storage_path:
        return
    stored = join(persist_dir(cfg, run_dir), RESULTS)
    try:
        found = read_text_at(stored) is not None
    except OSError as e:
        raise UserError(f"output.storage_path: cannot read '{stored}' ({e}); expected a reachable directory or URI") from None
    if found and not resume:
        raise UserError(f"'{stored}' already exists; pass --resume to continue that run, or choose another --name")


def check_writable(directory: Path) -> None:
    """Create `directory` if needed and prove a file can be written there, before any training."""
    probe = directory / f".write-test-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"output directory '{directory}' cannot be written ({e.strerror or type(e).__name__}); "
                        "expected a writable directory (output.basedir, --output-basedir)") from None


def console() -> None:
    """The command line's process: `python suite/run.py` and the installed `daformer-suite`."""
    code = main()
    # Everything is written by now. Exempt the objects of torch, timm, Ray and pandas from the
    # garbage collection that interpreter shutdown runs: it took 3-4 s on 2 cores, for nothing.
    gc.freeze()
    sys.exit(code)


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        args = parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # for the resume command an interruption prints
        return _main(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _main(args) -> int:
    if args.help_keys:
        print(config_mod.describe())
        return 0
    if args.address:
        from suite.distributed.cluster import check_reachable

        check_reachable(args.address)
    if args.sweep:
        return sweep_command(args)
    cfg, _ = load_config(args)
    from suite.plan import Plan, check_config, check_files
    from suite.runner import check_in_process_storage, check_resume, prepare

    check_config(cfg)
    if args.in_process:
        check_in_process_storage(cfg)
    run_dir = run_dir_of(cfg)
    if not args.dry_run:
        check_run_dir(cfg, run_dir, args.resume)
        stored = check_resume(cfg, run_dir) if args.resume else None
        if stored is not None and stored.get("status") == "finished":
            print(f"run '{run_dir}' has already finished all {stored.get('tasks_done')} tasks: nothing to resume, "
                  "nothing changed (its results.json and report are as they were)")
            return 0
    data, scenario = prepare(cfg)
    check_files(data)
    plan = Plan(cfg, data, scenario, run_dir)
    print(plan.describe(), flush=True)
    if args.dry_run:
        print("dry run: nothing trained, nothing written")
        return 0
    check_writable(run_dir.parent)
    if cfg.output.storage_path:  # results persist elsewhere: the local directory marks the run for --resume
        run_dir.mkdir(exist_ok=True)
    return execute(plan, args)


def sweep_command(args) -> int:
    """`--sweep FILE`: validate every trial, then run them on Ray Tune (or print them with --dry-run)."""
    from suite.plan import check_data, check_files
    from suite.data.registry import load_dataset
    from suite.sweep import load_sweep

    flags = flag_overrides(args)
    basedir = Path(flags.pop("output.basedir", "runs")).expanduser().resolve()
    flags.pop("output.name", None)
    if args.configs or args.options:
        raise UserError("--sweep takes its config files from the sweep file's 'base'; drop the positional configs")
    sweep = load_sweep(resolve_config_path(args.sweep), resolve_config_path, flags, args.set, args.name, basedir, FLAGS)
    sweep = replace(sweep, trials=tuple(replace(t, cfg=absolute_paths(t.cfg)) for t in sweep.trials))
    datasets = {}
    for trial in sweep.trials:
        key = repr(trial.cfg.data)
        if key not in datasets:
            datasets[key] = load_dataset(trial.cfg.data)
            check_files(datasets[key])
        check_data(trial.cfg, datasets[key])
    sweep_dir = basedir / sweep.name
    print(sweep.describe(), f"output    {sweep_dir}", sep="\n", flush=True)
    if args.dry_run:
        print("dry run: nothing trained, nothing written")
        return 0
    from suite.distributed.tune import run_sweep
    from suite.report import build_report

    check_writable(basedir)
    summary = run_sweep(sweep, sweep_dir, args.address)
    print(summary.to_string(index=False))
    report = build_report(sweep_dir, sweep_dir / "report")
    print(f"summary:  {sweep_dir / 'summary.csv'}\nreport:   {report}")
    unfinished = summary[summary["status"] != "finished"]
    if len(unfinished):
        print(f"error: {len(unfinished)} trial(s) did not finish: {', '.join(unfinished['trial'])}; "
              "run the same command again to continue", file=sys.stderr)
        return 1
    return 0


def record_interruption(plan, stop, argv: list[str], on_ray: bool) -> int:
    """After a stop signal: no worker left to write, then results.json says `interrupted`."""
    from suite.runner import RESULTS, persist_dir

    if on_ray:
        import ray

        ray.shutdown()
    resume = resume_command(argv)
    status = mark_interrupted(join(persist_dir(plan.cfg, plan.run_dir), RESULTS), stop.signal_name, resume)
    line = {"finished": f"interrupted by {stop.signal_name} after the run had finished: its results are in "
                        f"{plan.run_dir}",
            "interrupted": f"error: interrupted by {stop.signal_name}: the finished tasks are kept (status: "
                           f"interrupted) in {plan.run_dir}; to continue: {resume}",
            "none": f"error: interrupted by {stop.signal_name}: no task had finished in {plan.run_dir}; "
                    f"to continue: {resume}"}[status]
    print(line, file=sys.stderr)
    return stop.exit_code


def execute(plan, args) -> int:
    """Train (on Ray Train, or in this process with --in-process), then build the run's report."""
    from suite.distributed.cluster import init_ray
    from suite.distributed.train import RunFailed, run_on_ray
    from suite.learner.learner import NonFiniteLoss
    from suite.report import build_report
    from suite.runner import run_in_process
    from suite.summary import print_summary

    if not args.in_process:
        init_ray(args.address)  # first: ray.init installs a SIGTERM handler of its own, which aborts
    try:
        with stop_signals_raise():
            if args.in_process:
                results = run_in_process(plan.cfg, plan.run_dir, args.resume)
            else:
                results = run_on_ray(plan.cfg, plan.run_dir, args.address)
    except Interrupted as e:
        return record_interruption(plan, e, args.argv, on_ray=not args.in_process)
    except (RunFailed, NonFiniteLoss, OSError) as e:  # a crash of the learner itself keeps its traceback
        cause = str(e) if isinstance(e, RunFailed) else f"{type(e).__name__}: {e}"
        print(f"error: the run failed: {cause}; the last complete results and checkpoint are kept in "
              f"{plan.run_dir}", file=sys.stderr)
        return 1
    report = build_report(plan.run_dir, plan.run_dir / "report")
    print_summary(results, plan.run_dir, report)
    return 0
