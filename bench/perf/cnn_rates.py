"""`python -m bench.perf.cnn_rates [--device cuda] [--quick] [--out DIR]`: the CNN baselines' training-step
rates, the figures a sweep prices their trials with (configs/gpu_step_rates.yaml).

Each case is bench.perf.step's step (forward + backward with cross-entropy on the logits and the
auxiliary logits, at the preset's precision and memory layout; no teacher, no optimizer, like the
ViT rates beside them) of a baseline's model after T tasks of 10 classes, in both protocols' presets:
PyCIL's (configs/model/cifar_<method>.yaml) and the DER/DyTox table's (cifar_<method>_der.yaml).
Writes DIR/cnn_rates.json, DIR/cnn_rates.md and DIR/gpu_step_rates.yaml, the measurement blocks
(one a backbone) to add to configs/gpu_step_rates.yaml's `measurements`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from suite.methods import METHODS

REPO = Path(__file__).resolve().parents[2]
PROTOCOLS = ("pycil", "der")  # bench.perf.step.PRESETS of the two protocols


@dataclass(frozen=True)
class Settings:
    tasks: tuple[int, ...]
    batch: int
    repeats: int
    warmup: int
    methods: tuple[str, ...]


BASELINES = tuple(name for name, m in METHODS.items() if m.architecture == "cnn" and m.rerun)
FULL = Settings(tasks=(1, 10, 20, 50), batch=128, repeats=5, warmup=3, methods=BASELINES)
QUICK = Settings(tasks=(1, 2), batch=4, repeats=1, warmup=1, methods=BASELINES)  # the code path, on a CPU


def measure_all(settings: Settings, device, log=print) -> list[dict]:
    """One row per protocol, method and task count: its backbone, precision and images a second."""
    from bench.perf.step import Case, measure, preset_config
    from suite.learner.precision import autocast_dtype

    rows = []
    for protocol in PROTOCOLS:
        for method in settings.methods:
            cfg = preset_config(Case(method, 1, preset=protocol))
            dtype = "fp32" if autocast_dtype(cfg.train.precision, device) is None else "bf16"  # as the learner
            for tasks in settings.tasks:
                case = Case(method, tasks, dtype=dtype, batch=settings.batch, preset=protocol)
                start = time.perf_counter()
                (row,) = measure([case], device, settings.repeats, settings.warmup)
                rows.append({"protocol": protocol, "method": method, "tasks": tasks, "backbone": cfg.model.backbone,
                             "precision": dtype, "channels_last": cfg.train.channels_last,
                             "batch": settings.batch, "images_per_s": row["images_per_s"]["median"],
                             "spread": row["images_per_s"]["spread"], "params": row["params"]})
                log(f"[cnn-rates] {protocol} {method} {tasks} tasks: {rows[-1]['images_per_s']:,.0f} img/s "
                    f"({time.perf_counter() - start:.0f} s)")
    return rows


def rate_blocks(rows: list[dict], device_name: str, source: str) -> list[dict]:
    """configs/gpu_step_rates.yaml's measurement blocks: one a backbone, its methods' rates by task count."""
    blocks = {}
    for r in rows:
        block = blocks.setdefault(r["backbone"], {"device": device_name, "source": source,
                                                  "model": {"image_size": 32, "backbone": r["backbone"]}, "rates": {}})
        rates = block["rates"].setdefault(r["method"], {})
        if r["tasks"] in rates:  # the pricing tells blocks apart by backbone alone
            raise ValueError(f"{r['method']} at {r['tasks']} tasks measured twice on {r['backbone']}: "
                             "the two protocols' presets share that backbone")
        rates[r["tasks"]] = round(r["images_per_s"])
    return list(blocks.values())


def markdown(rows: list[dict], doc: dict) -> str:
    lines = ["# The CNN baselines' training-step rates", "",
             f"`{doc['command']}` on {doc['device']}, {doc['started']}. Each figure: forward + backward of the "
             "model after T tasks of 10 classes, cross-entropy on its logits and auxiliary logits, no teacher and "
             f"no optimizer (bench/perf/step.py), batch {doc['settings']['batch']}, median of "
             f"{doc['settings']['repeats']} samples after {doc['settings']['warmup']} warm-up steps. A sweep prices "
             "the CNN trials with them (configs/gpu_step_rates.yaml, from gpu_step_rates.yaml here).", "",
             "| protocol | method | backbone | precision | tasks | parameters | images/s | spread |",
             "|---|---|---|---|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['protocol']} | {r['method']} | {r['backbone']} | {r['precision']}"
                     f"{' channels-last' if r['channels_last'] else ''} | {r['tasks']} | {r['params'] / 1e6:.2f}M | "
                     f"{r['images_per_s']:,.0f} | {r['spread']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf.cnn_rates", description=__doc__.split(":")[1].strip())
    p.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    p.add_argument("--quick", action="store_true", help="tiny batch and task counts: the code path, on a CPU")
    p.add_argument("--out", type=Path, default=Path("reports/perf/cnn_rates"))
    args = p.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device here (--device cpu --quick runs the code path)", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    settings = QUICK if args.quick else FULL
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = measure_all(settings, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    out = args.out if args.out.is_absolute() else REPO / args.out
    out.mkdir(parents=True, exist_ok=True)
    doc = {"command": "python -m bench.perf.cnn_rates " + " ".join(argv if argv is not None else sys.argv[1:]),
           "device": name, "started": started, "settings": settings.__dict__, "rows": rows}
    (out / "cnn_rates.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "cnn_rates.md").write_text(markdown(rows, doc))
    source = f"{out.relative_to(REPO) if out.is_relative_to(REPO) else out}/cnn_rates.md ({started[:10]})"
    (out / "gpu_step_rates.yaml").write_text(yaml.safe_dump(rate_blocks(rows, name, source), sort_keys=False))
    print(f"[cnn-rates] wrote {out}/cnn_rates.md and gpu_step_rates.yaml", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
