"""The input pipeline: images/s out of the learner's DataLoader on synthetic 32x32 data.

The same pieces the learner uses (`IndexedImages` + `build_transform(train=True)` with the CIFAR
preset's data keys: random crop, flip, RandAugment), batch 128, shuffled, with
`data.num_workers` 0 and 2. The loader is timed alone: on a machine where the workers share
cores with the training step it can only be slower than this. Its target: the loader at least twice
the step rate (the step part's daformer_m 10-key fp32 step, or measured here without it).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from bench.perf.markdown import num, part_section, span, table
from bench.perf.step import PRESETS, Case, measure, preset_config
from bench.perf.timing import summary
from bench.perf.verdict import figures, target
from suite.config import apply
from suite.data.dataset import IndexedImages, build_transform
from suite.data.registry import load_dataset


def loader_rate(num_workers: int, batch: int, batches: int, repeats: int, per_class: int = 500) -> dict:
    """images/s over `batches` batches (after the first, which pays for worker start-up), `repeats` times."""
    cfg = preset_config_for_data(per_class)
    data = load_dataset(cfg.data)
    indices = np.arange(len(data.train))
    dataset = IndexedImages(data.train, indices, {c: c for c in range(data.num_classes)},
                            build_transform(data, cfg.data, train=True))
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=num_workers,
                        persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(0))
    samples, startup = [], []
    # timed by hand: the calls advance one iterator, whose first batch (worker start-up) is timed apart
    for _ in range(repeats):
        it = iter(loader)
        start = time.perf_counter()
        next(it)
        startup.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        samples.append(batch * batches / (time.perf_counter() - start))
        del it
    return {"num_workers": num_workers, "batch": batch, "batches": batches,
            "transform": [type(t).__name__ for t in dataset.transform.transforms],
            "images_per_s": summary(samples), "first_batch_s": summary(startup)}


def preset_config_for_data(per_class: int):
    """The CIFAR preset's data keys, on 10 synthetic classes of 32x32 images."""
    cfg = preset_config(Case("daformer_m", 1))
    size = PRESETS["cifar"].image_size
    return apply(cfg, {"data.name": "synthetic", "data.image_size": size, "data.num_classes": 10,
                       "data.train_per_class": per_class, "data.test_per_class": 1}, "perf")


def run_part(s, res: dict, log) -> dict:
    """num_workers 0 and 2, against the step part's reference step (measured here if that part did not run)."""
    runs = []
    for workers in (0, 2):
        log(f"  loader num_workers={workers}")
        runs.append(loader_rate(workers, s.batch, s.loader_batches, s.loader_repeats))
    rows = figures(res, "step").get("rows", [])
    ref = next((r for r in rows if (r["method"], r["tasks"], r["impl"], r["dtype"], r["batch"]) ==
                ("daformer_m", 10, "batched", "fp32", s.batch)), None)
    if ref is None:
        ref = measure([Case("daformer_m", 10, batch=s.batch)], torch.device("cpu"), s.repeats)[0]
    return {"runs": runs, "step_case": ref["name"], "step_images_per_s": ref["images_per_s"]}


def section(res: dict) -> list[str]:
    return part_section("## 4. Data pipeline", res.get("loader"), _body, key="runs")


def _body(loader: dict) -> list[str]:
    lines = [f"IndexedImages + the CIFAR preset's train transform ({', '.join(loader['runs'][0]['transform'])}) "
             f"on synthetic 32×32 images, batch {loader['runs'][0]['batch']}, timed alone. "
             f"Step rate compared: {loader['step_case']} = {num(loader['step_images_per_s']['median'], 2)} images/s.", ""]
    lines += table(["num_workers", "images/s", "range", "÷ step rate", "first batch (s)"],
                   [[str(r["num_workers"]), num(r["images_per_s"]["median"]), span(r["images_per_s"]),
                     f"{r['images_per_s']['median'] / loader['step_images_per_s']['median']:.1f}×",
                     num(r["first_batch_s"]["median"], 2)] for r in loader["runs"]])
    return lines + [""]


def targets(results: dict) -> list[dict]:
    loader = figures(results, "loader")
    step_rate = (loader.get("step_images_per_s") or {}).get("median")
    out = []
    for run in loader.get("runs", []):
        v = run["images_per_s"]["median"] / step_rate if step_rate else None
        out.append(target(f"loader (num_workers {run['num_workers']}) / step rate", "≥ 2×", v, 2.0,
                          f"step: {loader.get('step_case')}"))
    return out
