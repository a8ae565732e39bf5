"""PyCIL's side of the CNN parity runs: its own learner of one method (bench/parity/pycil.py lists
them), driven from outside its checkout.

Runs under the release venv's python (torch, torchvision, scipy, tqdm are all PyCIL needs for these
methods): `python pycil_side.py CHECKOUT SETTINGS.json OUT.json`, in a working directory
whose data/cifar-100-python is the Tiny-ImageNet pack (PyCIL reads ./data, hard-coded). Nothing of
PyCIL is copied or edited; what is changed from outside, and why, is PATCHES.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

PATCHES = [
    ("torchvision's CIFAR md5 check is skipped", "the pack is Tiny-ImageNet in CIFAR-100's layout, not CIFAR's own files"),
    ("iCIFAR100.download_data keeps only the benchmark's first classes",
     "PyCIL's class order must name every label it reads, and its length is the class count"),
    ("the methods' module-level hyper-parameters (epochs, milestones, lr, weight decay, batch size, T; PODNet's "
     "finetuning epochs and lr; FOSTER's, which it reads from its args, there) are set to the recipe's", "they are constants in models/icarl.py, wa.py, bic.py, der.py, podnet.py"),
    ("every DataLoader gets the recipe's worker count", "models/base.py hard-codes num_workers=4 for herding"),
    ("torch.manual_seed(seed) and np.random.seed(seed) instead of trainer._set_random's torch.manual_seed(1)",
     "PyCIL seeds its weights with 1 whatever the seed; the comparison needs one run per seed"),
    ("device [-1] (the CPU)", "no GPU here"),
    ("evaluation at top-1 (topk 1); _evaluate's result also names it top5",
     "FOSTER's compression logs a top-5 figure for its student, which top-1 evaluation does not compute"),
]


def main(checkout: str, settings_path: str, out_path: str) -> None:
    settings = json.loads(Path(settings_path).read_text())
    sys.path.insert(0, checkout)
    import numpy as np
    import torch
    import torchvision.datasets.cifar as tv_cifar

    tv_cifar.check_integrity = lambda *args, **kwargs: True

    import models.base
    import utils.data
    from trainer import _set_device
    from utils import factory
    from utils.data_manager import DataManager

    keep_first_classes(utils.data.iCIFAR100, settings["classes"])
    evaluate = models.base.BaseLearner._evaluate
    models.base.BaseLearner._evaluate = lambda self, y_pred, y_true: {"top5": None, **evaluate(self, y_pred, y_true)}

    module = __import__(f"models.{settings['model_name']}", fromlist=["_"])
    by_args = settings.get("by_args", False)
    for name, value in ({} if by_args else settings["hyper_parameters"]).items():
        if not hasattr(module, name):
            raise SystemExit(f"models/{settings['model_name']}.py has no {name}: another PyCIL version?")
        setattr(module, name, value)
    module.num_workers = settings["num_workers"]
    loader = torch.utils.data.DataLoader
    models.base.DataLoader = lambda *a, **k: loader(*a, **{**k, "num_workers": settings["num_workers"]})

    torch.manual_seed(settings["seed"])
    np.random.seed(settings["seed"])
    args = {"prefix": "parity", "dataset": "cifar100", "memory_size": settings["memory"], "memory_per_class": 20,
            "fixed_memory": False, "shuffle": False, "init_cls": settings["increment"],
            "increment": settings["increment"], "model_name": settings["model_name"], "convnet_type": settings.get("convnet", "resnet32"),
            "device": [-1], "seed": settings["seed"], **(settings["hyper_parameters"] if by_args else {})}
    _set_device(args)
    data = DataManager(args["dataset"], args["shuffle"], args["seed"], args["init_cls"], args["increment"])
    learner = factory.get_model(args["model_name"], args)
    learner.topk = 1
    tasks = []
    for task in range(data.nb_tasks):
        learner.incremental_train(data)
        cnn, truth = learner._eval_cnn(learner.test_loader)
        nme = learner._eval_nme(learner.test_loader, learner._class_means)[0] if learner._class_means is not None \
            else None
        learner.after_task()
        tasks.append({"cnn": accuracy_row(cnn[:, 0], truth, settings["increment"], task),
                      "nme": None if nme is None else accuracy_row(nme[:, 0], truth, settings["increment"], task)})
        print(f"[pycil] task {task + 1}/{data.nb_tasks}: cnn {tasks[-1]['cnn']['top1']:.2f}"
              + ("" if nme is None else f", nme {tasks[-1]['nme']['top1']:.2f}"), flush=True)
    Path(out_path).write_text(json.dumps({"tasks": tasks, "patches": PATCHES}, indent=1))


def keep_first_classes(dataset, classes: int) -> None:
    """PyCIL's CIFAR-100 reader (utils.data.iCIFAR100) reading only labels 0..classes-1, in that order."""
    download = dataset.download_data

    def download_first_classes(self):
        download(self)
        train, test = self.train_targets < classes, self.test_targets < classes
        self.train_data, self.train_targets = self.train_data[train], self.train_targets[train]
        self.test_data, self.test_targets = self.test_data[test], self.test_targets[test]

    dataset.download_data = download_first_classes
    dataset.class_order = list(range(classes))


def accuracy_row(predicted, truth, increment: int, task: int) -> dict:
    """Top-1 on all classes seen, and on each task's classes (labels are positions in the class order)."""
    hits = predicted == truth
    of_task = truth // increment
    return {"top1": float(100 * hits.mean()),
            "row": [float(100 * hits[of_task == t].mean()) for t in range(task + 1)]}


if __name__ == "__main__":
    main(*sys.argv[1:4])
