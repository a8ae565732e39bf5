"""python -m bench.parity ucir: UCIR against its authors' release (hshustc/CVPR19_Incremental_Learning;
PyCIL has no UCIR), seed by seed on the same images, then reports/parity/ucir/README.md with the
equivalence verdict.

The release runs its own CIFAR-100 script (bench/parity/ucir_side.py, in the release venv) with
run.sh's full-UCIR flags; ours runs configs/model/cifar_ucir.yaml with the release's data pipeline,
memory and schedule. Both read the Tiny-ImageNet pack (bench/parity/pack.py) and learn its first
`classes` labels in the class order the release draws from the seed.
"""
from __future__ import annotations

import argparse
import functools
import json
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench.parity import meta, pycil, report, store
from bench.parity.pycil_command import (
    by_classifier, prepared, recorded, run_info, runs_and_verdicts, shared_arguments,
)
from bench.parity.ucir_side import PATCHES, SCRIPT, flags

SIDE = Path(__file__).with_name("ucir_side.py")
METHOD, HEADLINE = "UCIR", "cnn"  # the release's paper reports its CNN (logits) accuracy

# Declared before the first runs of this comparison (2026-12-06), in points of top-1 accuracy: the
# margin of the PyCIL comparisons, for a budget of the same kind.
MARGIN = 3.0

# The release's script constants (not flags), which ours is given too: batch 128, lr 0.1, SGD momentum
# 0.9, weight decay 5e-4 in every task; crop (pad 4) and flip, no colour jitter.
BATCH_SIZE, LR, WEIGHT_DECAY = 128, 0.1, 5e-4


@dataclass(frozen=True)
class UcirRecipe(pycil.ClassSplit):
    """What both sides run beside the release's constants: its schedule (160 epochs, x0.1 at 80 and
    120) scaled to `epochs` with the milestones at the same fractions, and its memory: `per_class`
    exemplars of every class seen (a growing memory, not a fixed total), by iCaRL's herding."""

    classes: int = 20
    increment: int = 10
    epochs: int = 16
    milestones: tuple[int, ...] = (8, 12)
    per_class: int = 20
    num_workers: int = 2  # the release's loaders hard-code 2


QUICK = UcirRecipe(classes=4, increment=2, epochs=1, milestones=())


def class_order(seed: int, classes: int) -> list[int]:
    """The release's class order: numpy seeded with --random_seed, then np.random.shuffle(arange)."""
    order = np.arange(classes)
    np.random.RandomState(seed).shuffle(order)
    return order.tolist()


def ours_sets(recipe: UcirRecipe, seed: int) -> list[str]:
    """Every key ours sets on top of configs/model/cifar_ucir.yaml."""
    milestones = json.dumps(list(recipe.milestones))
    return [
        "data.name=cifar100", f"data.num_workers={recipe.num_workers}", f"data.max_classes={recipe.classes}",
        "data.color_jitter=0.0", f"scenario.increment={recipe.increment}", "scenario.initial_increment=0",
        f"scenario.class_order={json.dumps(class_order(seed, recipe.classes))}",
        f"memory.per_class={recipe.per_class}", "memory.selection=herding", "memory.herding_images=clean",
        f"train.batch_size={BATCH_SIZE}", f"train.lr={LR}", f"train.incremental_lr={LR}",
        f"train.epochs={recipe.epochs}", f"train.incremental_epochs={recipe.epochs}",
        f"train.milestones={milestones}", f"train.incremental_milestones={milestones}",
        f"train.weight_decay={WEIGHT_DECAY}", f"train.incremental_weight_decay={WEIGHT_DECAY}",
        "ray.num_workers=1", f"seed={seed}",
    ]


def release_settings(recipe: UcirRecipe, seed: int) -> dict:
    return {"classes": recipe.classes, "increment": recipe.increment, "epochs": recipe.epochs,
            "milestones": list(recipe.milestones), "per_class": recipe.per_class, "seed": seed}


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.parity ucir", description=__doc__.split(":")[1].strip())
    p.add_argument("--ucir", type=Path, required=True, help=f"the release's checkout ({SCRIPT}, utils_incremental/)")
    p.add_argument("--release-python", required=True, help="python of a venv with torch, torchvision, scipy, scikit-learn")
    shared_arguments(p, "ucir", MARGIN)
    return p.parse_args(argv)


def build_recipe(args) -> UcirRecipe:
    base = QUICK if args.quick else UcirRecipe()
    changes = {k: v for k, v in (("epochs", args.epochs),
                                 ("milestones", None if args.milestones is None else tuple(args.milestones)))
               if v is not None}
    return replace(base, **changes)


def checkout_problem(checkout: Path, python: str) -> str | None:
    if not (checkout / SCRIPT).is_file() or not (checkout / "utils_incremental").is_dir():
        return f"--ucir {checkout}: expected UCIR's release checkout ({SCRIPT}, utils_incremental/)"
    if not Path(python).is_file():
        return f"--release-python {python}: no such interpreter (a venv with torch, torchvision, scipy, scikit-learn)"
    return None


def run_one(args, recipe: UcirRecipe, impl: str, seed: int, data: Path) -> dict:
    key = ("quick-" if args.quick else "") + store.key(METHOD, impl, seed)
    work = args.work_dir.resolve() / key
    print(f"[ucir] {key}: running", flush=True)
    if impl == "release":
        fields = pycil.run_release_side(SIDE, release_settings(recipe, seed), args.ucir.resolve(),
                                        args.release_python, data, work)
    else:
        fields = pycil.run_suite("configs/model/cifar_ucir.yaml", ours_sets(recipe, seed), args.ours_python, data, work)
    return recorded("ucir", key, METHOD, impl, seed, recipe, pycil.finish(fields, HEADLINE, recipe.tasks, work))


def order_mismatches(records: list[dict]) -> list[str]:
    """Runs whose class order is not the one the harness gave ours for their seed."""
    return [r["key"] for r in records
            if r.get("class_order") and r["class_order"] != class_order(r["seed"], r["recipe"]["classes"])]


def write_report(out: Path, records: list[dict], info: dict) -> Path:
    rows = report.compare(by_classifier(records, {METHOD: HEADLINE}), info["margin"])
    (out / "runs.json").write_text(json.dumps({"meta": info, "comparison": rows, "runs": records}, indent=1) + "\n")
    recipe, mismatched = info["recipe"], order_mismatches(records)
    text = [
        "# UCIR parity: its authors' release beside ours",
        "",
        f"Built by `python -m bench.parity ucir` (bench/parity/ucir*.py) from the run records in `runs/`; every "
        f"number below is in `runs.json`. Our repository at commit `{info['git_commit']}`; written {info['written']}. "
        "In the tables, \"release\" is UCIR's (hshustc/CVPR19_Incremental_Learning; PyCIL has no UCIR).",
        "",
        f"Machine: {meta.machine_line(info['machine'])}; shared with other work, wall times indicative.",
        "",
        f"The release: `{info['source']['path']}`"
        + (f", commit `{info['source']['commit']}`" if info["source"].get("commit") else "")
        + f", content sha256 `{info['source']['tree_sha256'][:16]}`; its venv "
        f"`{info['release_python']}` ({info['release_versions']}); ours `{info['ours_python']}` ({info['ours_versions']}).",
        "",
        "## Recipe (identical on both sides)",
        "",
        f"Tiny-ImageNet-100 resized once to 32x32 in CIFAR-100's layout (`{info['data']}`), its first "
        f"{recipe['classes']} classes, {recipe['tasks']} tasks of {recipe['increment']} (B0), in the order the "
        f"release draws from the seed (`np.random.seed(seed)`, then a shuffle; ours is given the same order"
        + (f"; **runs whose order differs: {', '.join(mismatched)}**" if mismatched else ", checked run by run")
        + f"). The release's cosine ResNet-32 (no last ReLU) and full UCIR (run.sh's last command: imprinted "
        f"weights, less-forget at 5 x sqrt(old / new), margin ranking K 2, margin 0.5); {recipe['epochs']} epochs "
        f"a task, x0.1 at epochs {recipe['milestones']} (the release's 160 epochs and [80, 120], scaled); its "
        f"constants: batch {BATCH_SIZE}, lr {LR}, SGD momentum 0.9, weight decay {WEIGHT_DECAY} in every task; "
        f"crop (pad 4) and flip; {recipe['per_class']} exemplars of every class seen by iCaRL's herding on clean "
        "images, class means over each exemplar and its copy with the colour channels reversed (the script's "
        f"\"flipped version\"); {recipe['num_workers']} loader workers a side, one compute thread a run. Ours: "
        "`configs/model/cifar_ucir.yaml` with the recipe's keys (each run's "
        f"command in its record). Headline classifier: {HEADLINE} (logits), as the paper reports; nme is the "
        "release's \"iCaRL\" figure (nearest mean of exemplars).",
        "",
        "Known difference, not changed: the release normalises by the std (0.2009, 0.1984, 0.2023), ours by "
        "CIFAR-100's (0.2675, 0.2565, 0.2761). The first convolution has no bias and feeds a BatchNorm, which "
        "undoes an input scale common to the channels; the two differ by a factor of 1.29-1.36 across channels.",
        "",
        "## How the release is driven",
        "",
        "bench/parity/ucir_side.py executes the release's script as its own `__main__` with the flags "
        f"`{' '.join(flags({'seed': 'SEED', **{k: recipe[k] for k in ('classes', 'increment', 'epochs', 'per_class')}}))}` "
        "and reads the confusion matrices it saves after each task. Changed from outside, nothing of the release "
        "copied or edited:",
        "",
        *runs_and_verdicts(records, rows, info, PATCHES, "UCIR's release"),
    ]
    path = out / "README.md"
    path.write_text("\n".join(text))
    return path


def main(argv) -> int:
    args = parse(argv)
    recipe = build_recipe(args)
    places = prepared(args, recipe, checkout_problem(args.ucir, args.release_python))
    if places is None:
        return 2
    out, data = places
    prefix = "quick-" if args.quick else ""
    pending = [functools.partial(run_one, args, recipe, impl, seed, data)
               for seed in ([] if args.report_only else args.seeds) for impl in args.impl
               if not store.finished(store.load(out, prefix + store.key(METHOD, impl, seed)), recipe.as_dict())]
    store.run_pending(out, args.jobs, pending)
    records = [r for r in store.all_records(out) if r["recipe"] == recipe.as_dict()]
    info = run_info(args, recipe, records, args.ucir.resolve(),
                    "python -m bench.parity ucir " + " ".join(map(shlex.quote, argv)), "bench/parity/ucir.py")
    print(f"[ucir] report: {write_report(out, records, info)}", flush=True)
    return 0
