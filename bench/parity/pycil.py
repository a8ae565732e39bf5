"""The classic baselines against PyCIL (LAMDA-CL/PyCIL): one scaled-down recipe, both sides.

PyCIL runs its own iCaRL, WA, BiC, DER or PODNet (bench/parity/pycil_side.py, in the release venv); ours runs
the same method from the PyCIL-protocol preset (configs/model/cifar_<method>.yaml) with the
recipe's keys. Both read the Tiny-ImageNet pack (bench/parity/pack.py) and learn its first
`classes` labels in label order.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.parity import proc

SIDE = Path(__file__).with_name("pycil_side.py")
REPO = Path(__file__).resolve().parents[2]


class ClassSplit:
    """What a recipe with `classes`, `increment` and `milestones` fields shares: its task count, its
    record form, its check."""

    @property
    def tasks(self) -> int:
        return self.classes // self.increment

    def as_dict(self) -> dict:
        return {**asdict(self), "milestones": list(self.milestones), "tasks": self.tasks}

    def check(self) -> str | None:
        if not 2 <= self.classes <= 100 or self.classes % self.increment or self.tasks < 2:
            return f"{self.classes} classes must be a multiple of the increment {self.increment} giving 2+ tasks"
        return None


@dataclass(frozen=True)
class CnnRecipe(ClassSplit):
    """What both sides run: the ResNet-32, SGD 0.9 at batch `batch_size` and an unscaled lr, the
    same multistep schedule in every task (PyCIL's first-task and later schedules both set to it),
    `memory` exemplars in total by greedy herding on clean images, crop + flip + brightness jitter.

    The default budget is one where the ResNet-32 learns on 2 CPU cores, chosen by runs of ours
    before the comparison (first task's top-1, logits / nearest mean; chance 1 / increment): 5 classes
    a task, batch 128, lr 0.1, 15 epochs: 28 / 34% (chance 20%); batch 32, lr 0.05, 12 epochs: 44 /
    40%; 10 classes a task, batch 32, lr 0.05, 10 epochs: 40 / 37% (chance 10%), about 8 minutes a
    run of 2 tasks at one thread."""

    classes: int = 20
    increment: int = 10
    epochs: int = 10
    milestones: tuple[int, ...] = (7, 9)
    lr: float = 0.05
    weight_decay: float = 5e-4  # first task; later tasks incremental_weight_decay (PyCIL's 5e-4 / 2e-4)
    incremental_weight_decay: float = 2e-4
    batch_size: int = 32
    memory: int = 400  # 20 per class over 20 classes, as 2000 over CIFAR-100's 100
    temperature: float = 2.0
    num_workers: int = 2


QUICK_CNN = CnnRecipe(classes=4, increment=2, epochs=1, milestones=(), batch_size=32, memory=40)  # BiC: 2 held out


@dataclass(frozen=True)
class Baseline:
    name: str  # as the report names it
    model_name: str  # PyCIL's
    ours_method: str
    classifier: str  # the method's headline classifier, compared first ("cnn" or "nme")
    convnet: str = "resnet32"  # PyCIL's convnet_type
    by_args: bool = False  # PyCIL reads the method's hyper-parameters from its args (FOSTER), not module constants


# PODNet's balanced finetuning, scaled like its main phase: PyCIL's 20 epochs after 160 at a twentieth
# of the lr become FINETUNE_EPOCHS after the recipe's epochs at a twentieth of its lr
FINETUNE_EPOCHS = 2
# FOSTER's compression, scaled like its boosting: PyCIL's 130 epochs after 170 become 8 after the recipe's 10
COMPRESSION_EPOCHS = 8

BASELINES = {b.name: b for b in (
    Baseline("iCaRL", "icarl", "icarl", "nme"),
    Baseline("WA", "wa", "wa", "cnn"),
    Baseline("BiC", "bic", "bic", "cnn"),
    Baseline("DER", "der", "der", "cnn"),
    Baseline("PODNet", "podnet", "podnet", "cnn", convnet="cosine_resnet32"),
    Baseline("FOSTER", "foster", "foster", "cnn", by_args=True),
)}


def pycil_hyper_parameters(baseline: Baseline, recipe: CnnRecipe) -> dict:
    """PyCIL's module-level constants of the method (FOSTER: its args), set to the recipe's."""
    if baseline.model_name == "foster":  # one cosine schedule (per epoch) and weight decay for every task
        return {"init_epochs": recipe.epochs, "init_lr": recipe.lr, "init_weight_decay": recipe.weight_decay,
                "boosting_epochs": recipe.epochs, "compression_epochs": COMPRESSION_EPOCHS, "lr": recipe.lr,
                "weight_decay": recipe.weight_decay, "batch_size": recipe.batch_size, "T": recipe.temperature,
                "beta1": 0.96, "beta2": 0.97, "oofc": "ft", "is_teacher_wa": False, "is_student_wa": False,
                "lambda_okd": 1, "wa_value": 1, "num_workers": recipe.num_workers}
    if baseline.model_name == "podnet":  # one cosine schedule (per epoch) and weight decay for every task
        return {"epochs": recipe.epochs, "lrate": recipe.lr, "batch_size": recipe.batch_size,
                "weight_decay": recipe.weight_decay, "ft_epochs": FINETUNE_EPOCHS, "ft_lrate": recipe.lr / 20}
    later = {"epochs": recipe.epochs, "lrate": recipe.lr, "milestones": list(recipe.milestones),
             "lrate_decay": 0.1, "batch_size": recipe.batch_size, "T": recipe.temperature}
    if baseline.model_name == "bic":  # one schedule for every task, and one weight decay
        return {**later, "weight_decay": recipe.incremental_weight_decay}
    return {**later, "weight_decay": recipe.incremental_weight_decay, "init_epoch": recipe.epochs,
            "init_lr": recipe.lr, "init_milestones": list(recipe.milestones), "init_lr_decay": 0.1,
            "init_weight_decay": recipe.weight_decay}


def ours_sets(baseline: Baseline, recipe: CnnRecipe, seed: int) -> list[str]:
    """Every key ours sets on top of the method's PyCIL-protocol preset."""
    first_decay = recipe.incremental_weight_decay if baseline.model_name == "bic" else recipe.weight_decay
    later_decay = recipe.weight_decay if baseline.model_name in ("podnet", "foster") else recipe.incremental_weight_decay
    own = {"podnet": [f"finetune.epochs={FINETUNE_EPOCHS}", f"finetune.lr={recipe.lr / 20}"],
           "foster": [f"distill.compress_epochs={COMPRESSION_EPOCHS}", f"distill.compress_lr={recipe.lr}"]}
    return [*own.get(baseline.model_name, []),
        "data.name=cifar100", f"data.num_workers={recipe.num_workers}", f"data.max_classes={recipe.classes}",
        f"scenario.increment={recipe.increment}", "scenario.initial_increment=0",
        f"scenario.class_order={json.dumps(list(range(recipe.classes)))}",
        f"memory.size={recipe.memory}", f"train.batch_size={recipe.batch_size}",
        f"train.epochs={recipe.epochs}", f"train.incremental_epochs={recipe.epochs}",
        f"train.milestones={json.dumps(list(recipe.milestones))}",
        f"train.incremental_milestones={json.dumps(list(recipe.milestones))}",
        f"train.lr={recipe.lr}", f"train.incremental_lr={recipe.lr}",
        f"train.weight_decay={first_decay}", f"train.incremental_weight_decay={later_decay}",
        f"distill.tau={recipe.temperature}", "ray.num_workers=1", f"seed={seed}",
    ]


def run_pycil(baseline: Baseline, recipe: CnnRecipe, seed: int, checkout: Path, python: str, data: Path,
              work: Path) -> dict:
    """One PyCIL run in `work` (its ./data the pack); the record's fields."""
    settings = {"model_name": baseline.model_name, "convnet": baseline.convnet, "by_args": baseline.by_args,
                "classes": recipe.classes, "increment": recipe.increment,
                "memory": recipe.memory, "seed": seed, "num_workers": recipe.num_workers,
                "hyper_parameters": pycil_hyper_parameters(baseline, recipe)}
    record = run_release_side(SIDE, settings, checkout, python, data, work)
    return finish(record, baseline.classifier, recipe.tasks, work)


def run_release_side(side: Path, settings: dict, checkout: Path, python: str, data: Path, work: Path) -> dict:
    """Run a release's side (`python SIDE CHECKOUT settings.json accuracies.json`) in a fresh `work`
    whose ./data is the pack; the record: the command, its settings, exit code and wall time, and each
    classifier's accuracies (and the class order, where the side names it)."""
    if work.exists():
        shutil.rmtree(work)
    (work / "data").mkdir(parents=True)
    (work / "data" / "cifar-100-python").symlink_to(data / "cifar-100-python")
    (work / "settings.json").write_text(json.dumps(settings, indent=1))
    cmd = [python, str(side), str(checkout), str(work / "settings.json"), str(work / "accuracies.json")]
    rc, wall = proc.run(cmd, work / "stdout.txt", cwd=work)
    record = {"command": cmd, "settings": settings, "wall_s": wall, "rc": rc}
    out = work / "accuracies.json"
    if out.is_file():
        doc = json.loads(out.read_text())
        for name in ("cnn", "nme"):
            if all(t[name] for t in doc["tasks"]):
                record[name] = summary([t[name]["top1"] for t in doc["tasks"]], [t[name]["row"] for t in doc["tasks"]])
        if "class_order" in doc:
            record["class_order"] = doc["class_order"]
    return record


def run_ours(baseline: Baseline, recipe: CnnRecipe, seed: int, python: str, data: Path, work: Path) -> dict:
    record = run_suite(f"configs/model/cifar_{baseline.ours_method}.yaml", ours_sets(baseline, recipe, seed),
                       python, data, work)
    return finish(record, baseline.classifier, recipe.tasks, work)


def run_suite(preset: str, sets: list[str], python: str, data: Path, work: Path) -> dict:
    """Our suite in process from `preset` with `sets`, in a fresh `work`; the record: the command, exit
    code and wall time, each classifier's accuracies, the memory's size after each task."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    cmd = [python, "suite/run.py", preset, "--in-process", "--data-path", str(data), "--output-basedir", str(work),
           "--name", "run"]
    for item in [*sets, "report.at_end=false"]:  # the comparison reads results.json only
        cmd += ["--set", item]
    rc, wall = proc.run(cmd, work / "stdout.txt", cwd=REPO)
    record = {"command": cmd, "config_file": preset, "wall_s": wall, "rc": rc}
    results = work / "run" / "results.json"
    if results.is_file():
        doc = json.loads(results.read_text())
        by_name = doc.get("classifiers") or {doc.get("classifier", "cnn"): doc}
        for name, numbers in by_name.items():
            record[name] = summary(numbers["acc"], numbers["acc_matrix"])
        record["memory_size"] = doc.get("memory_size")
        record["class_order"] = doc.get("class_order")
    return record


def summary(acc: list[float], matrix: list[list[float]]) -> dict:
    return {"acc": acc, "acc_matrix": matrix, "avg_incremental_accuracy": sum(acc) / len(acc),
            "last_accuracy": acc[-1]}


def finish(record: dict, classifier: str, tasks: int, work: Path) -> dict:
    """The headline classifier's numbers at the record's top level (what the comparison reads)."""
    headline = record.get(classifier)
    done = record["rc"] == 0 and headline is not None and len(headline["acc"]) == tasks
    record["status"] = "finished" if done else "failed"
    if done:
        record.update({k: headline[k] for k in ("acc", "acc_matrix", "avg_incremental_accuracy", "last_accuracy")})
    else:
        record["log_tail"] = proc.tail(work / "stdout.txt")
    return record


def checkout_problem(checkout: Path | None, python: str | None) -> str | None:
    if checkout is None or not (checkout / "models" / "icarl.py").is_file():
        return f"--pycil {checkout}: expected PyCIL's checkout (models/icarl.py, utils/, convs/)"
    if not python or not Path(python).is_file():
        return f"--release-python {python}: no such interpreter (a venv with torch, torchvision, scipy, tqdm)"
    return None
