"""python -m bench.parity pycil: iCaRL, WA, BiC and DER, PyCIL's own beside ours, seed by seed, then
reports/parity/pycil/README.md with the equivalence verdict of each method and classifier."""
from __future__ import annotations

import argparse
import datetime
import functools
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from bench.parity import meta, pack, pycil, report, store
from bench.parity.pycil_side import PATCHES

# Declared before the first runs of this comparison (2026-12-06), in points of top-1 accuracy: the
# DAFormer/DyTox comparison's margin, for a budget of the same kind.
MARGIN = 3.0


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.parity pycil", description=__doc__.split(":")[1].strip())
    p.add_argument("--pycil", type=Path, required=True, help="PyCIL checkout (models/, utils/, convs/, trainer.py)")
    p.add_argument("--release-python", required=True, help="python of a venv with torch, torchvision, scipy, tqdm")
    p.add_argument("--methods", nargs="+", choices=sorted(pycil.BASELINES), default=["iCaRL", "WA"])
    p.add_argument("--classes", type=int)
    p.add_argument("--increment", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    shared_arguments(p, "pycil", MARGIN)
    return p.parse_args(argv)


def shared_arguments(p: argparse.ArgumentParser, name: str, margin: float) -> None:
    """The options every side-by-side comparison of a classic baseline takes (`name`: its report's folder)."""
    p.add_argument("--tiny-imagenet", type=Path, required=True, help="Tiny-ImageNet-100 in Stanford's layout")
    p.add_argument("--ours-python", default=sys.executable)
    p.add_argument("--out", type=Path, default=Path(f"reports/parity/{name}"))
    p.add_argument("--data-dir", type=Path, default=Path("/work/parity-data"), help="where the CIFAR-layout pack goes")
    p.add_argument("--work-dir", type=Path, default=Path(f"/work/parity-work/{name}"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--impl", nargs="+", choices=["release", "ours"], default=["release", "ours"])
    p.add_argument("--epochs", type=int)
    p.add_argument("--milestones", type=int, nargs="*", help="epochs at which the lr decays x0.1, every task")
    p.add_argument("--quick", action="store_true", help="a tiny recipe (4 classes, 2 tasks, 1 epoch)")
    p.add_argument("--margin", type=float, default=margin)
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (each with one compute thread)")
    p.add_argument("--report-only", action="store_true")


def build_recipe(args) -> pycil.CnnRecipe:
    base = pycil.QUICK_CNN if args.quick else pycil.CnnRecipe()
    changes = {k: v for k, v in (("classes", args.classes), ("increment", args.increment), ("epochs", args.epochs),
                                 ("milestones", None if args.milestones is None else tuple(args.milestones)),
                                 ("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}
    return replace(base, **changes)


def run_one(args, recipe: pycil.CnnRecipe, name: str, impl: str, seed: int, data: Path) -> dict:
    baseline = pycil.BASELINES[name]
    key = ("quick-" if args.quick else "") + store.key(name, impl, seed)
    work = args.work_dir.resolve() / key
    print(f"[pycil] {key}: running", flush=True)
    if impl == "release":
        fields = pycil.run_pycil(baseline, recipe, seed, args.pycil.resolve(), args.release_python, data, work)
    else:
        fields = pycil.run_ours(baseline, recipe, seed, args.ours_python, data, work)
    return recorded("pycil", key, name, impl, seed, recipe, fields)


def recorded(tag: str, key: str, method: str, impl: str, seed: int, recipe, fields: dict) -> dict:
    """A run's record (its identity, recipe, our commit, when it ended, what the run gave), its line printed."""
    record = {"key": key, "method": method, "impl": impl, "seed": seed, "recipe": recipe.as_dict(),
              "git_commit": meta.git_commit(), "suite_dirty": meta.suite_dirty(),
              "finished_at": datetime.datetime.now().isoformat(timespec="seconds"), **fields}
    print(f"[{tag}] {key}: {record['status']} avg {record.get('avg_incremental_accuracy')} "
          f"last {record.get('last_accuracy')} in {record['wall_s']:.0f} s", flush=True)
    return record


def by_classifier(records: list[dict], headlines: dict[str, str]) -> list[dict]:
    """The records as the comparison reads them: each method under its headline classifier
    (`headlines[method]`), and under its other classifier as 'METHOD (name)' where both sides measured it."""
    rows = []
    for r in records:
        headline = headlines[r["method"]]
        rows.append(r)
        for name in ("cnn", "nme"):
            if name != headline and r.get(name):
                rows.append({**r, "method": f"{r['method']} ({name})", **{
                    k: r[name][k] for k in ("acc", "avg_incremental_accuracy", "last_accuracy")}})
    return rows


def write_report(out: Path, records: list[dict], info: dict) -> Path:
    rows = report.compare(by_classifier(records, {b.name: b.classifier for b in pycil.BASELINES.values()}),
                          info["margin"])
    (out / "runs.json").write_text(json.dumps({"meta": info, "comparison": rows, "runs": records}, indent=1) + "\n")
    recipe = info["recipe"]
    headline = ", ".join(f"{b.name}: {b.classifier}" for b in pycil.BASELINES.values())
    text = [
        "# PyCIL parity: the classic baselines, PyCIL's own beside ours",
        "",
        f"Built by `python -m bench.parity pycil` (bench/parity/pycil*.py) from the run records in `runs/`; "
        f"every number below is in `runs.json`. Our repository at commit `{info['git_commit']}`; written "
        f"{info['written']}. In the tables, \"release\" is PyCIL.",
        "",
        f"Machine: {meta.machine_line(info['machine'])}; shared with other work, wall times indicative.",
        "",
        f"PyCIL: `{info['source']['path']}`"
        + (f", commit `{info['source']['commit']}`" if info["source"].get("commit") else "")
        + f", content sha256 `{info['source']['tree_sha256'][:16]}`; its venv `{info['release_python']}` "
        f"({info['release_versions']}); ours `{info['ours_python']}` ({info['ours_versions']}).",
        "",
        "## Recipe (identical on both sides)",
        "",
        f"Tiny-ImageNet-100 resized once to 32x32 in CIFAR-100's layout (`{info['data']}`), its first "
        f"{recipe['classes']} classes in label order, {recipe['tasks']} tasks of {recipe['increment']} (B0); "
        f"PyCIL's CIFAR ResNet-32; {recipe['epochs']} epochs a task, SGD momentum 0.9, batch "
        f"{recipe['batch_size']}, lr {recipe['lr']} (unscaled) x0.1 at epochs {recipe['milestones']} in every "
        f"task, weight decay {recipe['weight_decay']} in the first task and {recipe['incremental_weight_decay']} "
        f"after (BiC: {recipe['incremental_weight_decay']} throughout, as PyCIL); distillation at T = "
        f"{recipe['temperature']}; {recipe['memory']} exemplars in total by PyCIL's greedy herding on clean "
        f"images; random crop (pad 4), flip, brightness jitter 63/255; {recipe['num_workers']} loader workers "
        f"a side, one compute thread a run. PODNet and FOSTER follow PyCIL's own schedule for them: a cosine "
        f"stepped per epoch (no milestones) with weight decay {recipe['weight_decay']} in every task; PODNet "
        f"on PyCIL's cosine ResNet-32, its balanced finetuning {pycil.FINETUNE_EPOCHS} epochs at lr / 20; "
        f"FOSTER's compression {pycil.COMPRESSION_EPOCHS} epochs at lr, no weight decay. Ours: "
        f"`configs/model/cifar_<method>.yaml` with the recipe's keys "
        f"(each run's command in its record). Headline classifiers: {headline}.",
        "",
        "## How PyCIL is driven",
        "",
        "bench/parity/pycil_side.py imports PyCIL from its checkout and runs its learner's own "
        "`incremental_train`, then evaluates with its `_eval_cnn` and `_eval_nme` and calls `after_task`, "
        "as its trainer does. Changed from outside, nothing of PyCIL copied or edited:",
        "",
        *runs_and_verdicts(records, rows, info, PATCHES, "PyCIL"),
    ]
    path = out / "README.md"
    path.write_text("\n".join(text))
    return path


def runs_and_verdicts(records: list[dict], rows: list[dict], info: dict, patches: list[tuple[str, str]],
                      release: str) -> list[str]:
    """A report's lines from the patches made to the release on: the command, the runs, the verdicts."""
    return [
        *[f"- {what}: {why}" for what, why in patches],
        "",
        "```",
        info["benchmark_command"],
        "```",
        "",
        "## Runs",
        "",
        *report._run_table(records),
        "",
        f"## {release} against ours",
        "",
        f"Mean ± standard deviation over seeds (top-1 %). Equivalence: the 90% Welch interval of ours − {release} "
        f"inside ± {info['margin']} points, declared before the runs ({info['margin_declared']}).",
        "",
        *report._compare_table(rows),
        "",
    ]


def run_info(args, recipe, records: list[dict], source: Path, command: str, margin_where: str) -> dict:
    """What a report names besides the runs: the recipe, our commit, the machine, the release's source and
    both venvs' versions, the data, the margin and where it was declared, the command."""
    return {"recipe": recipe.as_dict(), "git_commit": meta.git_commit(),
            "written": datetime.datetime.now().isoformat(timespec="minutes"), "machine": meta.machine(),
            "source": meta.source(source), "release_python": args.release_python,
            "release_versions": meta.versions(args.release_python), "ours_python": args.ours_python,
            "ours_versions": meta.versions(args.ours_python), "data": str(args.data_dir.resolve()),
            "margin": args.margin,
            "margin_declared": f"the --margin default in {margin_where}, committed before the runs "
                               "(each run's record names its commit: "
                               + ", ".join(sorted({r["git_commit"][:7] for r in records})) + ")",
            "benchmark_command": command}


def prepared(args, recipe, checkout_problem: str | None) -> tuple[Path, Path] | None:
    """The report's folder and the pack, made; None, with one line on stderr, when an input is wrong
    (`checkout_problem`: the release checkout's, which counts when the release runs)."""
    problem = recipe.check() or pack.check_source(args.tiny_imagenet) or (
        checkout_problem if "release" in args.impl else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return None
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    pack.pack(args.tiny_imagenet, args.data_dir)
    return out, args.data_dir.resolve()


def main(argv) -> int:
    args = parse(argv)
    recipe = build_recipe(args)
    places = prepared(args, recipe, pycil.checkout_problem(args.pycil, args.release_python))
    if places is None:
        return 2
    out, data = places
    pending = [(name, impl, seed) for seed in ([] if args.report_only else args.seeds) for name in args.methods
               for impl in args.impl
               if not store.finished(store.load(out, ("quick-" if args.quick else "") + store.key(name, impl, seed)),
                                     recipe.as_dict())]
    store.run_pending(out, args.jobs, [functools.partial(run_one, args, recipe, *item, data) for item in pending])
    records = [r for r in store.all_records(out) if r["recipe"] == recipe.as_dict()]
    info = run_info(args, recipe, records, args.pycil.resolve(),
                    "python -m bench.parity pycil " + " ".join(map(shlex.quote, argv)), "bench/parity/pycil_command.py")
    print(f"[pycil] report: {write_report(out, records, info)}", flush=True)
    return 0
