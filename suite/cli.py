"""`python suite/run.py`: parse the command line (ours and the original code's style), load and
validate the config, and hand it to its command (suite/commands/: one run, or a sweep).

Exit codes: 0 success; 2 a user error, one line on stderr; 1 an internal failure.
"""
from __future__ import annotations

import argparse
import difflib
import gc
import os
import sys
from dataclasses import replace
from pathlib import Path

from suite import config as config_mod
from suite.errors import OneLineParser, UserError
from suite.run.storage import is_uri

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/quickstart.yaml"
FLAGS = config_mod.flags()  # config key -> its flag (--name, --data-path, --epochs, --lr, ...: the releases' flags)


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python suite/run.py", description="Class-incremental benchmark runs (DAFormer and baselines).")
    p.add_argument("configs", nargs="*", metavar="CONFIG.yaml", help="config files, layered left to right")
    p.add_argument("--options", nargs="+", default=[], metavar="A.yaml", help="more config files (the original code's style)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key, e.g. memory.size=500")
    for key, flag in FLAGS.items():  # the config keys that have a flag of their own
        f = config_mod.all_keys()[key]
        p.add_argument(flag, type=int if f.type is int else str, help=f"{f.metadata['help']} ({key})")
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


def flag_overrides(args) -> dict:
    values = {key: getattr(args, flag[2:].replace("-", "_")) for key, flag in FLAGS.items()}
    return {k: v for k, v in values.items() if v is not None}


def parse(argv: list[str]) -> argparse.Namespace:
    args, unknown = parser().parse_known_args(argv)
    if unknown:
        raise unknown_flag(unknown, argv)
    return args


def unknown_flag(unknown: list[str], argv: list[str]) -> UserError:
    """An unknown flag, answered with the --set spelling of the config key nearest to its name."""
    given = next((a for a in unknown if a.startswith("--")), unknown[0])
    name, _, value = given[2:].partition("=")
    if not value:
        after = argv[argv.index(given) + 1:argv.index(given) + 2] if given in argv else []
        value = after[0] if after and not after[0].startswith("-") else "VALUE"
    keys = list(config_mod.all_keys())
    by_leaf = {}
    for key in keys:
        by_leaf.setdefault(key.rsplit(".", 1)[-1], key)
    close = difflib.get_close_matches(name.replace("-", "_"), keys + list(by_leaf), n=1, cutoff=0.6)
    if not close or not given.startswith("--"):
        return UserError(f"unrecognized arguments: {' '.join(unknown)} (see --help; a config key is set with "
                         "--set KEY=VALUE, --help-keys lists them)")
    return UserError(f"unrecognized arguments: {given}; did you mean --set {by_leaf.get(close[0], close[0])}={value}?")


def load_config(args) -> tuple[config_mod.Config, list[Path]]:
    names = args.configs + args.options
    stray = [n for n in names if args.resume and Path(n).suffix not in (".yaml", ".yml")]
    if stray:  # DyTox's `--resume PATH`
        raise UserError(f"--resume takes no path: it continues the run --name NAME under --output-basedir; "
                        f"drop '{stray[0]}'")
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
        argv = list(sys.argv[1:] if argv is None else argv)
        args = parse(argv)
        args.argv = argv  # for the resume command an interruption prints
        return _main(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _main(args) -> int:
    """Dispatch: the key list, a sweep, or one run. Each imports its layer only when asked for
    (--help-keys, argument errors and a run's config errors answer without loading torch)."""
    if args.help_keys:
        print(config_mod.describe())
        return 0
    if args.sweep:
        check_address(args.address)
        return sweep(args)
    cfg, _ = load_config(args)  # first: a mistake in it is answered before torch and Ray are imported
    check_address(args.address)
    from suite.commands.run import RunOptions, run_command

    options = RunOptions(resume=args.resume, dry_run=args.dry_run, in_process=args.in_process,
                         address=args.address, argv=tuple(args.argv))
    return run_command(cfg, options)


def check_address(address: str | None) -> None:
    if address:
        from suite.run.cluster import check_reachable

        check_reachable(address)


def sweep(args) -> int:
    from suite.commands.sweep import sweep_command
    from suite.sweep.spec import load_sweep

    for flag, why in (("in_process", "a sweep runs its trials on Ray Tune"),
                      ("resume", "a sweep run again continues by itself, without rerunning finished trials")):
        if getattr(args, flag):
            raise UserError(f"--sweep does not take --{flag.replace('_', '-')}: {why}; drop it")
    flags = flag_overrides(args)
    basedir = Path(flags.pop("output.basedir", "runs")).expanduser().resolve()
    flags.pop("output.name", None)
    if args.configs or args.options:
        raise UserError("--sweep takes its config files from the sweep file's 'base'; drop the positional configs")
    spec = load_sweep(resolve_config_path(args.sweep), resolve_config_path, flags, args.set, args.name, basedir, FLAGS)
    spec = replace(spec, trials=tuple(replace(t, cfg=absolute_paths(t.cfg)) for t in spec.trials))
    return sweep_command(spec, basedir, args.dry_run, args.address)
