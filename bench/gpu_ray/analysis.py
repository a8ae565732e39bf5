"""The figures of the GPU-through-Ray report, from what the runs print and write. Pure Python.

An epoch of a task trains on the task's new images plus the memory, each item once: repeated
augmentation repeats images within the epoch, it does not lengthen it (suite/data/sampler.py),
and the loader drops the last partial batch whenever the epoch has more than one batch.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

EPOCH = re.compile(r"task (\d+)/(\d+) (train|finetune)\s+epoch (\d+)/(\d+)\s+loss \S+\s+([\d,]+) img/s")


@dataclass(frozen=True)
class Protocol:
    """A class-incremental run's sizes: what an epoch of each task holds."""

    tasks: int
    classes_per_task: int
    train_per_class: int
    test_per_class: int
    memory: int
    epochs: int
    finetune_epochs: int
    batch: int

    def new_images(self) -> int:
        return self.classes_per_task * self.train_per_class

    def memory_after(self, task: int) -> int:
        """Exemplars held after `task` (1-based): a fixed total, split evenly over the classes seen."""
        seen = self.classes_per_task * task
        return min(self.memory // seen, self.train_per_class) * seen

    def main_items(self, task: int) -> int:
        return self.new_images() + (self.memory_after(task - 1) if task > 1 else 0)

    def eval_and_herding_images(self, task: int) -> int:
        """Images a task's herding (its new training images) and evaluation (the test images of
        every class seen) pass through the model once each."""
        return self.new_images() + self.test_per_class * self.classes_per_task * task


# The paper run: CIFAR-100 B0 in 10 tasks of 10 classes, configs/model/cifar_dual.yaml's schedule.
PAPER = Protocol(tasks=10, classes_per_task=10, train_per_class=500, test_per_class=100, memory=2000, epochs=500,
                 finetune_epochs=20, batch=128)


def epoch_images(items: int, batch: int) -> int:
    """Images one worker trains on in an epoch of `items` (the learner's DataLoader, one worker)."""
    return items // batch * batch if items > batch else items


def parse_epochs(lines: list[str]) -> list[dict]:
    """The learner's epoch lines (from any process prefix), each (task, phase, epoch) once."""
    out, seen = [], set()
    for line in lines:
        m = EPOCH.search(line)
        if not m:
            continue
        key = (int(m.group(1)), m.group(3), int(m.group(4)))
        if key in seen:
            continue
        seen.add(key)
        out.append({"task": key[0], "tasks": int(m.group(2)), "phase": key[1], "epoch": key[2],
                    "epochs": int(m.group(5)), "images_per_s": float(m.group(6).replace(",", ""))})
    return out


def steady(rates: list[float]) -> float | None:
    """The epochs' rate once warm: the median after the first epoch (which starts the loader's
    workers, and compiles with train.compile); the first alone when there is no other."""
    if not rates:
        return None
    return statistics.median(rates[1:]) if len(rates) > 1 else rates[0]


def run_figures(epochs: list[dict], per_task_s: list[float], memory_size: list[int], protocol: Protocol) -> dict:
    """Per task: steady main and finetuning rates, epoch times, and the task's time outside its
    epochs (herding, evaluation, checkpoint), from a run of `protocol`'s sizes."""
    tasks = []
    for t in range(1, len(per_task_s) + 1):
        items = protocol.new_images() + (memory_size[t - 2] if t > 1 else 0)
        phases = {}
        epochs_s = 0.0
        for phase, n in (("train", items), ("finetune", memory_size[t - 1] if t > 1 else 0)):
            rates = [e["images_per_s"] for e in epochs if e["task"] == t and e["phase"] == phase]
            images = epoch_images(n, protocol.batch)
            epochs_s += sum(images / r for r in rates if r > 0)
            phases[phase] = {"items": n, "epoch_images": images, "rates": rates, "steady_images_per_s": steady(rates),
                             "warm_epochs": max(len(rates) - 1, 0),
                             "first_epoch_s": images / rates[0] if rates and rates[0] > 0 else None}
        tasks.append({"task": t, "keys": t, **phases, "task_s": per_task_s[t - 1], "epochs_s": epochs_s,
                      "other_s": max(per_task_s[t - 1] - epochs_s, 0.0),
                      "eval_and_herding_images": protocol.eval_and_herding_images(t)})
    return {"tasks": tasks}


def ratio(a, b):
    return a / b if a is not None and b else None


def step_rate_at(step_rates: dict[int, float], keys: int) -> tuple[float, str]:
    """The bare step's images/s at `keys` keys: measured, or interpolated (extrapolated past the
    measured range) linearly in seconds per image, which grow about linearly with the keys."""
    if keys in step_rates:
        return step_rates[keys], "measured"
    known = sorted(step_rates)
    if len(known) < 2:
        raise ValueError("the step rate at other key counts needs at least two measured key counts")
    if keys < known[0]:
        lo, hi = known[0], known[1]
    elif keys > known[-1]:
        lo, hi = known[-2], known[-1]
    else:
        lo, hi = max(k for k in known if k < keys), min(k for k in known if k > keys)
    s_lo, s_hi = 1 / step_rates[lo], 1 / step_rates[hi]
    seconds = s_lo + (s_hi - s_lo) * (keys - lo) / (hi - lo)
    return 1 / seconds, ("interpolated" if known[0] < keys < known[-1] else "extrapolated") + f" from {lo}, {hi} keys"


def project(figures: dict, step_rates: dict[int, float], paper: Protocol = PAPER) -> dict:
    """Wall time of `paper` from a measured run: each task at the rate measured for its regime
    (task 1: no teacher, no ASAM; tasks 2+: teacher and ASAM, as the measured task 2), scaled by
    the bare step's rate at the task's key count over its rate at the measured one; the time
    outside epochs scaled by the images herding and evaluation pass through."""
    rows = []
    for t in range(1, paper.tasks + 1):
        regime = 1 if t == 1 else 2
        measured = figures["tasks"][regime - 1]
        rate_here, how = step_rate_at(step_rates, t)
        scale = rate_here / step_rate_at(step_rates, regime)[0]
        main_rate = measured["train"]["steady_images_per_s"] * scale
        main_images = epoch_images(paper.main_items(t), paper.batch)
        row = {"task": t, "keys": t, "step_scale": scale, "step_rate": how, "main_items": paper.main_items(t),
               "main_epoch_images": main_images, "main_images_per_s": main_rate,
               "main_epoch_s": main_images / main_rate, "main_s": paper.epochs * main_images / main_rate,
               "finetune_s": 0.0, "finetune_epoch_s": None}
        if t > 1 and paper.finetune_epochs:
            ft_rate = measured["finetune"]["steady_images_per_s"] * scale
            ft_images = epoch_images(paper.memory_after(t), paper.batch)
            row.update(finetune_epoch_images=ft_images, finetune_images_per_s=ft_rate,
                       finetune_epoch_s=ft_images / ft_rate, finetune_s=paper.finetune_epochs * ft_images / ft_rate)
        row["other_s"] = measured["other_s"] * paper.eval_and_herding_images(t) / measured["eval_and_herding_images"]
        row["task_s"] = row["main_s"] + row["finetune_s"] + row["other_s"]
        rows.append(row)
    total = sum(r["task_s"] for r in rows)
    return {"protocol": paper.__dict__, "rows": rows, "total_s": total, "total_h": total / 3600}


def projection_lines(p: dict) -> list[str]:
    """The arithmetic of a projection, one line per task, then the sum."""
    lines = []
    for r in p["rows"]:
        ft = (f" + {p['protocol']['finetune_epochs']} × {r['finetune_epoch_images']:,} / {r['finetune_images_per_s']:,.0f}"
              if r["finetune_epoch_s"] is not None else "")
        lines.append(f"task {r['task']:2d}: {p['protocol']['epochs']} × {r['main_epoch_images']:,} / "
                     f"{r['main_images_per_s']:,.0f} img/s{ft} + {r['other_s']:.1f} s = {r['task_s']:,.0f} s")
    terms = " + ".join(f"{r['task_s']:,.0f}" for r in p["rows"])
    lines.append(f"total: {terms} = {p['total_s']:,.0f} s = {p['total_h']:.2f} h")
    return lines
