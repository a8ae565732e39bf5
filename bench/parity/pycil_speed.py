"""iCaRL's speed against PyCIL's own, in one process, interleaved: the ResNet-32 training step and
a whole main-phase epoch of iCaRL's second task.

    python -m bench.parity.pycil_speed --pycil CHECKOUT --data PACK_DIR --out reports/perf/pycil_speed

Step: PyCIL's `IncrementalNet` (its CIFAR ResNet-32, grown to 20 classes) with its iCaRL loss
(cross-entropy + its `_KD_loss` against a frozen copy grown to 10) and SGD, against ours
(`IncrementalCNN`, the ICaRL strategy's loss), also in channels-last memory format, on one fixed
batch of 128 random 32x32 images: forward (teacher too), backward, optimizer step.

Epoch: each side's own code end to end on the Tiny-ImageNet pack's first 10 classes (2 tasks of 5,
the second task's 2500 images plus 200 exemplars, batch 128, its own data pipeline with the
brightness jitter, no loader workers): PyCIL's `_update_representation` for one epoch, less the
time of the test-set evaluation it runs every fifth epoch (its `_compute_accuracy`, timed apart);
ours `Learner.train_main`. Both after a first task of one epoch and its herding, as set up by each
side's own code. PyCIL's modules are imported from its checkout (they need torch, torchvision,
numpy, scipy and tqdm, which our venv has).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.parity.meta import machine, machine_line
from bench.parity.pycil_side import keep_first_classes

BATCH, CLASSES, INCREMENT = 128, 10, 5


def pycil_step(checkout: Path):
    sys.path.insert(0, str(checkout))
    from models.icarl import _KD_loss
    from utils.inc_net import IncrementalNet

    torch.manual_seed(0)
    net = IncrementalNet({"convnet_type": "resnet32", "device": ["cpu"]}, False)
    net.update_fc(10)
    teacher = net.copy().freeze()
    net.update_fc(20)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)

    def loss(images, labels):
        logits = net(images)["logits"]
        return F.cross_entropy(logits, labels) + _KD_loss(logits[:, :10], teacher(images)["logits"], 2)
    return net.train(), optimizer, loss


def our_step(channels_last: bool):
    from suite.config import load
    from suite.models.cnn import IncrementalCNN
    from suite.strategies.icarl import ICaRL

    torch.manual_seed(0)
    net = IncrementalCNN("cifar_resnet32", 3)
    net.add_task(10)
    teacher = copy.deepcopy(net).eval().requires_grad_(False)
    net.add_task(10)
    if channels_last:
        net, teacher = (m.to(memory_format=torch.channels_last) for m in (net, teacher))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    strategy = ICaRL(load([], ["method=icarl", "train.loss=ce", "distill.tau=2"]))
    phase = type("Phase", (), {"num_old": 10, "name": "train"})

    def loss(images, labels):
        with torch.no_grad():
            old = teacher(images)
        return strategy.loss(net(images), old, F.one_hot(labels, 20).float(), phase)
    return net.train(), optimizer, loss


def time_steps(sides: dict, repeats: int) -> dict:
    gen = torch.Generator().manual_seed(1)
    images, labels = torch.randn(BATCH, 3, 32, 32, generator=gen), torch.randint(0, 20, (BATCH,), generator=gen)
    inputs = {name: images.contiguous(memory_format=torch.channels_last) if "channels-last" in name else images
              for name in sides}
    times = {name: [] for name in sides}
    for r in range(repeats + 1):  # the first round warms up (allocator, optimizer state)
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            _, optimizer, loss = sides[name]
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss(inputs[name], labels).backward()
            optimizer.step()
            if r:
                times[name].append(time.perf_counter() - start)
    return {name: {"median_ms": 1000 * statistics.median(t), "all_ms": [1000 * x for x in t]}
            for name, t in times.items()}


def pycil_epoch_runner(checkout: Path, data: Path, work: Path):
    """PyCIL's iCaRL at its second task, ready to train one epoch per call (seconds, eval seconds)."""
    import numpy as np
    import torchvision.datasets.cifar as tv_cifar

    tv_cifar.check_integrity = lambda *a, **k: True
    sys.path.insert(0, str(checkout))
    import models.icarl as icarl
    import utils.data
    from utils.data_manager import DataManager

    keep_first_classes(utils.data.iCIFAR100, CLASSES)
    (work / "data").mkdir(parents=True, exist_ok=True)
    if not (work / "data" / "cifar-100-python").exists():
        (work / "data" / "cifar-100-python").symlink_to(data / "cifar-100-python")
    os.chdir(work)
    icarl.init_epoch, icarl.epochs, icarl.num_workers, icarl.batch_size = 1, 1, 0, BATCH
    icarl.DataLoader = lambda *a, **k: torch.utils.data.DataLoader(*a, **{**k, "num_workers": 0})
    import models.base
    models.base.DataLoader = icarl.DataLoader
    torch.manual_seed(0)
    np.random.seed(0)
    args = {"memory_size": 200, "memory_per_class": 20, "fixed_memory": False, "convnet_type": "resnet32",
            "device": [torch.device("cpu")]}
    manager = DataManager("cifar100", False, 0, INCREMENT, INCREMENT)
    learner = icarl.iCaRL(args)
    learner.incremental_train(manager)  # task 1: one epoch, then its herding
    learner.after_task()
    eval_seconds = []
    compute_accuracy = learner._compute_accuracy

    def timed_accuracy(*a, **k):
        start = time.perf_counter()
        out = compute_accuracy(*a, **k)
        eval_seconds.append(time.perf_counter() - start)
        return out

    learner._compute_accuracy = timed_accuracy
    learner.incremental_train(manager)  # task 2 set up by its own code (loaders, teacher): one untimed epoch

    def one_epoch() -> tuple[float, float]:
        optimizer = torch.optim.SGD(learner._network.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [80, 120], gamma=0.1)
        eval_seconds.clear()
        start = time.perf_counter()
        learner._update_representation(learner.train_loader, learner.test_loader, optimizer, scheduler)
        return time.perf_counter() - start - sum(eval_seconds), sum(eval_seconds)
    return one_epoch, len(learner.train_loader.dataset)


def our_epoch_runner(data: Path):
    from suite.config import load
    from suite.learner.learner import Learner
    from suite.learner.progress import Progress
    from suite.run.plan import plan_run

    cfg = load(["configs/model/cifar_icarl.yaml"], [
        "data.name=cifar100", f"data.path={data}", f"data.max_classes={CLASSES}", "data.num_workers=0",
        f"scenario.increment={INCREMENT}", f"scenario.class_order={json.dumps(list(range(CLASSES)))}",
        "memory.size=200", "train.epochs=1", "train.incremental_epochs=1", "train.progress_every=0"])
    plan = plan_run(cfg, Path(cfg.output.basedir))  # its directory unused: data and scenario only
    data_set, scenario = plan.data, plan.scenario
    learner = Learner(cfg, data_set, scenario, log=lambda line: None)
    learner.progress = Progress(1.0)
    learner.history.skipped_batches.append(0)
    learner.begin_task(0)
    learner.train_main(0)
    learner.update_memory(0)
    learner.begin_task(1)

    def one_epoch() -> tuple[float, float]:
        start = time.perf_counter()
        learner.train_main(1)
        return time.perf_counter() - start, 0.0
    return one_epoch


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pycil", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="the parity pack (holds cifar-100-python/)")
    p.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    p.add_argument("--work", type=Path, default=Path("/tmp/pycil_speed"))
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    repo = Path(__file__).resolve().parents[2]
    out = args.out.resolve()
    steps = time_steps({"PyCIL": pycil_step(args.pycil.resolve()), "ours": our_step(False),
                        "ours, channels-last": our_step(True)}, args.repeats)
    os.chdir(repo)
    ours = our_epoch_runner(args.data.resolve())
    theirs, images = pycil_epoch_runner(args.pycil.resolve(), args.data.resolve(), args.work)
    os.chdir(repo)
    epochs = {"PyCIL": [], "ours": []}
    for r in range(args.epochs):
        for name, run in ((("PyCIL", theirs), ("ours", ours)) if r % 2 == 0 else (("ours", ours), ("PyCIL", theirs))):
            epochs[name].append(run())
    result = {
        "steps": steps, "step_ratio_pycil_over_ours": steps["PyCIL"]["median_ms"] / steps["ours"]["median_ms"],
        "epochs": {name: {"median_s": statistics.median(t for t, _ in runs), "all_s": [t for t, _ in runs],
                          "left_out_eval_s": [e for _, e in runs]} for name, runs in epochs.items()},
        "epoch_images": images, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "machine": machine_line(machine()),
    }
    result["epoch_ratio_pycil_over_ours"] = result["epochs"]["PyCIL"]["median_s"] / result["epochs"]["ours"]["median_s"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result, " ".join(["python -m bench.parity.pycil_speed", *argv])))
    print(out.with_suffix(".md").read_text())
    return 0


def markdown(r: dict, command: str) -> str:
    s, e = r["steps"], r["epochs"]
    lines = [
        "# iCaRL against PyCIL: the ResNet-32 step and a whole epoch",
        "",
        f"`{command}` (bench/parity/pycil_speed.py: what is timed, and how). One process, one torch thread, "
        f"the sides interleaved and alternating which goes first; torch {r['torch']}, Python {r['python']}; "
        f"{r['machine']}. A shared machine: read the ratios, not the absolute times.",
        "",
        "| | PyCIL | ours | ours, channels-last | PyCIL / ours | PyCIL / ours, channels-last |",
        "|---|--:|--:|--:|--:|--:|",
        f"| training step, batch {BATCH} (median ms of {len(s['ours']['all_ms'])}) | {s['PyCIL']['median_ms']:.0f} | "
        f"{s['ours']['median_ms']:.0f} | {s['ours, channels-last']['median_ms']:.0f} | "
        f"{r['step_ratio_pycil_over_ours']:.2f} | "
        f"{s['PyCIL']['median_ms'] / s['ours, channels-last']['median_ms']:.2f} |",
        f"| iCaRL epoch, task 2, {r['epoch_images']} images (median s of {len(e['ours']['all_s'])}) | "
        f"{e['PyCIL']['median_s']:.1f} | – | {e['ours']['median_s']:.1f} | – | {r['epoch_ratio_pycil_over_ours']:.2f} |",
        "",
        "Ours runs the epoch as the PyCIL-protocol preset sets it (`train.channels_last: true`): the learner's own "
        "`train_main` with its data pipeline, on the same images, with the same batch and optimizer.",
        "",
        f"PyCIL's epoch leaves out its periodic test evaluation ({', '.join(f'{x:.1f}' for x in e['PyCIL']['left_out_eval_s'])} s"
        " in the timed epochs).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
