"""python -m bench.parity: the releases and our suite on the same images, then the report."""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import shlex
import sys
from pathlib import Path

from bench.parity import meta, ours, pack, proc, release, report, store
from bench.parity.recipe import METHODS, QUICK, Recipe

# Declared before the runs of the 5-seed comparison (2026-12-06): what 5 seeds a side can resolve
# at the CPU budget, given the seed spread of the earlier 3-seed runs (up to 2.3 points).
MARGIN = 3.0

RELEASE_ENVIRONMENT = [
    "release venv: timm 0.4.9 and continuum 1.2.7 (+ six) as the releases pin them, torch/torchvision as ours; "
    "Pillow 10.4.0, because timm 0.4.9's RandAugment (rand-m9-mstd0.5-inc1, 'inc' levels) calls "
    "ImageOps.posterize with 0 bits at magnitude 10, which Pillow >= 11 refuses (ValueError) and older Pillow "
    "maps to a black image",
    "the releases launch through `python -m torch.distributed.run --standalone --nproc_per_node=1` (world size 1, "
    "as train.sh with one GPU): in distributed mode their RASampler re-shuffles every epoch (set_epoch)",
]


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.parity", description=__doc__.split(":")[1].strip())
    p.add_argument("--daformer", type=Path, help="DAFormer release checkout (mainDual.py, continual/, options/)")
    p.add_argument("--dytox", type=Path, help="DyTox release checkout (main.py, continual/, options/)")
    p.add_argument("--tiny-imagenet", type=Path, required=True, help="Tiny-ImageNet-100 in Stanford's layout")
    p.add_argument("--release-python", default=None, help="python of the release venv (timm 0.4.9, continuum)")
    p.add_argument("--ours-python", default=sys.executable, help="python of our venv (default: this one)")
    p.add_argument("--out", type=Path, default=Path("reports/parity"))
    p.add_argument("--data-dir", type=Path, default=Path("/work/parity-data"), help="where the CIFAR-layout pack goes")
    p.add_argument("--work-dir", type=Path, default=Path("/work/parity-work"), help="the runs' logs and checkpoints")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--classes", type=int)
    p.add_argument("--increment", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--finetune-epochs", type=int)
    p.add_argument("--lr", type=float, help="main-phase base lr, both sides (default: the presets' 5e-4)")
    p.add_argument("--incremental-lr", type=float, help="main-phase base lr of tasks 2+, both sides (default: --lr)")
    p.add_argument("--finetune-lr", type=float, help="finetuning base lr, both sides (default 5e-5)")
    p.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=sorted(METHODS))
    p.add_argument("--impl", nargs="+", choices=["release", "ours"], default=["release", "ours"])
    p.add_argument("--no-timing", action="store_true", help="skip the step timing")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from the stored records, run nothing")
    p.add_argument("--quick", action="store_true", help="a tiny recipe (4 classes, 2 tasks, 1 epoch, embed 32)")
    p.add_argument("--margin", type=float, default=MARGIN,
                   help=f"equivalence margin in points of accuracy, declared before the runs (default {MARGIN})")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (each with one compute thread)")
    return p.parse_args(argv)


def build_recipe(args) -> Recipe:
    base = QUICK if args.quick else Recipe()
    changes = {k: v for k, v in (("classes", args.classes), ("increment", args.increment), ("epochs", args.epochs),
                                 ("finetune_epochs", args.finetune_epochs), ("lr", args.lr),
                                 ("incremental_lr", args.incremental_lr if args.incremental_lr is not None else args.lr),
                                 ("finetune_lr", args.finetune_lr)) if v is not None}
    return Recipe(**{**base.__dict__, **changes})


def check_inputs(args, recipe: Recipe) -> str | None:
    """One line saying what is wrong with the command line, or None."""
    problem = recipe.check() or pack.check_source(args.tiny_imagenet)
    if problem:
        return problem
    if "release" in args.impl and (problem := release.checkout_problem(args)):
        return problem
    if not args.no_timing and (args.daformer is None or not (args.daformer / "continual" / "DualVit.py").is_file()):
        return "the step timing needs --daformer with continual/DualVit.py (or pass --no-timing)"
    return None


def run_key(args, name: str, impl: str, seed: int) -> str:
    return ("quick-" if args.quick else "") + store.key(name, impl, seed)


def run_one(args, recipe: Recipe, name: str, impl: str, seed: int, data: Path) -> dict:
    method = METHODS[name]
    key = run_key(args, name, impl, seed)
    work = args.work_dir.resolve() / key
    print(f"[parity] {key}: running", flush=True)
    if impl == "release":
        fields = release.run(method, recipe, seed, getattr(args, method.release).resolve(), args.release_python,
                             data, work, key)
    else:
        fields = ours.run(method, recipe, seed, args.ours_python, data, work, key)
    record = {"key": key, "method": name, "impl": impl, "seed": seed, "recipe": recipe.as_dict(),
              "git_commit": meta.git_commit(), "suite_dirty": meta.suite_dirty(),
              "suite_diff_sha256": meta.suite_diff_sha256(),
              "finished_at": datetime.datetime.now().isoformat(timespec="seconds"), **fields}
    print(f"[parity] {key}: {record['status']} avg {record.get('avg_incremental_accuracy')} "
          f"last {record.get('last_accuracy')} in {record['wall_s']:.0f} s", flush=True)
    return record


def step_timing(args, out: Path) -> dict | None:
    """The step timing, in a process of its own (allocator settings apply from its start)."""
    path = out / ("steptime-quick.json" if args.quick else "steptime.json")
    if args.no_timing or args.report_only:
        return json.loads(path.read_text()) if path.is_file() else None
    if not path.is_file():
        cmd = [args.ours_python, "-W", "ignore", "-m", "bench.parity.steptime", "--daformer",
               str(args.daformer.resolve()), "--out", str(path.resolve())] + (["--quick"] if args.quick else [])
        rc, wall = proc.run(cmd, args.work_dir.resolve() / "steptime.txt", cwd=meta.REPO)
        if rc != 0:
            print(f"[parity] step timing failed (rc {rc}); see {args.work_dir / 'steptime.txt'}", flush=True)
            return None
        print(f"[parity] step timing done in {wall:.0f} s", flush=True)
    return json.loads(path.read_text())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["lockstep"]:
        from bench.parity import lockstep_command
        return lockstep_command.main(argv[1:])
    if argv[:1] == ["pycil-lockstep"]:
        from bench.parity import pycil_lockstep
        return pycil_lockstep.main(argv[1:])
    if argv[:1] == ["ucir"]:
        from bench.parity import ucir
        return ucir.main(argv[1:])
    if argv[:1] == ["pycil"]:
        from bench.parity import pycil_command
        return pycil_command.main(argv[1:])
    args = parse(argv)
    recipe = build_recipe(args)
    problem = check_inputs(args, recipe)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest = pack.pack(args.tiny_imagenet, args.data_dir)
    data = args.data_dir.resolve()
    pending = []
    for seed in [] if args.report_only else args.seeds:  # seed-major: a stopped benchmark still has both sides of some seeds
        for name in args.methods:
            for impl in args.impl:
                key = run_key(args, name, impl, seed)
                if store.finished(store.load(out, key), recipe.as_dict()):
                    print(f"[parity] {key}: finished before, kept", flush=True)
                    continue
                pending.append((name, impl, seed))
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:  # each run is a subprocess
        runs = [pool.submit(run_one, args, recipe, name, impl, seed, data) for name, impl, seed in pending]
        for run in concurrent.futures.as_completed(runs):
            store.save(out, run.result())
    timing = step_timing(args, out)
    records = [r for r in store.all_records(out) if r["recipe"] == recipe.as_dict()]
    sources = {f"{m.release} release": meta.source(getattr(args, m.release).resolve())
               for m in METHODS.values() if getattr(args, m.release) is not None}
    info = {
        "recipe": recipe.as_dict(), "git_commit": meta.git_commit(), "suite_dirty": meta.suite_dirty(),
        "written": datetime.datetime.now().isoformat(timespec="minutes"), "machine": meta.machine(),
        "sources": sources, "release_python": args.release_python,
        "release_versions": meta.versions(args.release_python) if args.release_python else "not used",
        "ours_python": args.ours_python, "ours_versions": meta.versions(args.ours_python),
        "data": {"source": str(args.tiny_imagenet), "pack": str(data), "resize": manifest["resize"]},
        "benchmark_command": "python -m bench.parity " + " ".join(map(shlex.quote, argv)),
        "release_environment": RELEASE_ENVIRONMENT,
        "margin": args.margin,
        "margin_declared": "the --margin default in bench/parity/__main__.py, committed before the first of these "
                           "runs (each run's record names the commit it ran at: "
                           + ", ".join(sorted({r["git_commit"][:7] for r in records})) + ")",
    }
    path = report.write(out, records, info, timing)
    print(f"[parity] report: {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
