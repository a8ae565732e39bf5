"""UCIR's release's side of its parity runs: its own CIFAR-100 script, run as its `run.sh` runs it.

Runs under the release venv's python (torch, torchvision, scipy, scikit-learn): `python
ucir_side.py CHECKOUT SETTINGS.json OUT.json`, in a working directory whose data/cifar-100-python is
the Tiny-ImageNet pack (the script reads ./data and writes ./checkpoint). The script
(cifar100-class-incremental/class_incremental_cosine_cifar100.py) is executed as its own __main__
with the command-line flags of run.sh's last (full UCIR) command; nothing of it is copied or edited.
What is changed from outside, and why, is PATCHES. Its accuracies are read back from the confusion
matrices it saves after each task (rows: the classes' positions in its class order), which give
each task's accuracy as well as the total the script prints.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import runpy
import sys
from pathlib import Path

SCRIPT = "cifar100-class-incremental/class_incremental_cosine_cifar100.py"
PREFIX = "parity"

PATCHES = [
    ("torchvision's CIFAR-100 reader keeps the attributes the script reads and writes (train_data, "
     "train_labels, test_data, test_labels) and serves its images from them",
     "the script was written for torchvision < 0.2.2, whose reader had those names; today's reads .data / .targets"),
    ("torchvision's CIFAR md5 check is skipped", "the pack is Tiny-ImageNet in CIFAR-100's layout, not CIFAR's own files"),
    ("the script's lr milestones [80, 120] (for 160 epochs) are replaced by the recipe's, each + 1",
     "the recipe scales the schedule down; the script steps its scheduler at the start of each epoch "
     "(PyTorch 0.4's convention), which today's PyTorch counts one epoch ahead, so + 1 keeps the decay at "
     "the epoch the release meant"),
    ("torch.manual_seed(seed) before the script runs", "the script seeds numpy (its class order) but not torch"),
    ("torch.nn.functional.margin_ranking_loss reshapes the script's (N,) target to its (N, 1) scores",
     "today's PyTorch refuses inputs of different dimensions, where PyTorch 0.4 broadcast them to N x N; with the "
     "script's all-ones target each row of that is one sample's loss, so the mean is the same"),
    ("CUDA_VISIBLE_DEVICES is empty: the CPU", "the script takes cuda:0 where it sees a GPU, and its numpy calls "
     "on the features would then meet CUDA tensors; ours runs on the CPU too"),
    ("os.popen('stty size') answers 24 80", "utils_pytorch.py reads the terminal's size at import, and the runs have "
     "no terminal"),
]


def main(checkout: str, settings_path: str, out_path: str) -> None:
    settings = json.loads(Path(settings_path).read_text())
    scripts = Path(checkout) / Path(SCRIPT).parent
    sys.path.insert(0, str(scripts))  # its modules (modified_resnet_cifar, utils_incremental, ...) import by name
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch loads CUDA
    import numpy as np
    import torch
    import torchvision
    import torchvision.datasets.cifar as tv_cifar

    tv_cifar.check_integrity = lambda *args, **kwargs: True
    torchvision.datasets.CIFAR100 = legacy_cifar100(tv_cifar.CIFAR100)
    torch.optim.lr_scheduler.MultiStepLR = with_milestones(torch.optim.lr_scheduler.MultiStepLR,
                                                           release_milestones(settings["milestones"]))
    ranking = torch.nn.functional.margin_ranking_loss
    torch.nn.functional.margin_ranking_loss = lambda first, second, target, *args, **kwargs: ranking(
        first, second, target.view_as(first), *args, **kwargs)
    torch.manual_seed(settings["seed"])
    popen = os.popen
    os.popen = lambda command, *args, **kwargs: io.StringIO("24 80\n") if command == "stty size" else \
        popen(command, *args, **kwargs)
    sys.argv = [SCRIPT, *flags(settings)]
    runpy.run_path(str(Path(checkout) / SCRIPT), run_name="__main__")

    order = [int(c) for c in np.asarray(pickle.loads(
        Path(f"checkpoint/seed_{settings['seed']}_cifar100_order_run_0.pkl").read_bytes()))]
    tasks = []
    for task in range(settings["classes"] // settings["increment"]):
        with open(f"checkpoint/{prefix(settings)}_run_0_iteration_{task}_confusion_matrix.pth", "rb") as f:
            matrices = pickle.load(f)  # (CNN, iCaRL's nearest mean, NCM) x true x predicted
        tasks.append({"cnn": accuracy_row(matrices[0], settings["increment"]),
                      "nme": accuracy_row(matrices[1], settings["increment"])})
        print(f"[ucir] task {task + 1}: cnn {tasks[-1]['cnn']['top1']:.2f}, nme {tasks[-1]['nme']['top1']:.2f}",
              flush=True)
    Path(out_path).write_text(json.dumps({"tasks": tasks, "class_order": order, "patches": PATCHES}, indent=1))


def flags(settings: dict) -> list[str]:
    """run.sh's full-UCIR flags (imprinting, adaptive less-forget, margin ranking), at the recipe's size."""
    return ["--nb_cl_fg", str(settings["increment"]), "--nb_cl", str(settings["increment"]),
            "--num_classes", str(settings["classes"]), "--nb_protos", str(settings["per_class"]),
            "--epochs", str(settings["epochs"]), "--rs_ratio", "0.0", "--imprint_weights",
            "--less_forget", "--lamda", "5", "--adapt_lamda", "--random_seed", str(settings["seed"]),
            "--mr_loss", "--dist", "0.5", "--K", "2", "--lw_mr", "1", "--ckp_prefix", PREFIX]


def prefix(settings: dict) -> str:
    """The checkpoint prefix the script builds from --ckp_prefix and its class counts."""
    return f"{PREFIX}_nb_cl_fg_{settings['increment']}_nb_cl_{settings['increment']}_nb_protos_{settings['per_class']}"


def legacy_cifar100(base):
    """torchvision's CIFAR100 with the old attribute names, which the script assigns to re-point a
    dataset at other images (train_data / train_labels, or test_data / test_labels)."""
    from PIL import Image

    class LegacyCIFAR100(base):
        def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
            super().__init__(root, train=train, transform=transform, target_transform=target_transform)
            self.split = "train" if train else "test"
            setattr(self, f"{self.split}_data", self.data)
            setattr(self, f"{self.split}_labels", self.targets)

        def __len__(self):
            return len(getattr(self, f"{self.split}_data"))

        def __getitem__(self, index):
            image = Image.fromarray(getattr(self, f"{self.split}_data")[index])
            label = getattr(self, f"{self.split}_labels")[index]
            return (self.transform(image) if self.transform else image), label

    return LegacyCIFAR100


def release_milestones(milestones: list[int]) -> list[int]:
    """The milestones to give the script's scheduler for a decay at the start of each of `milestones`
    (epochs counted from 0): it steps the scheduler before each epoch, PyTorch 0.4's convention, which
    today's PyTorch counts one epoch ahead."""
    return [m + 1 for m in milestones]


def with_milestones(scheduler, recipe_milestones: list[int]):
    """MultiStepLR decaying at `recipe_milestones` whatever milestones it is given."""
    class RecipeMultiStepLR(scheduler):
        def __init__(self, optimizer, milestones=None, gamma=0.1, **kwargs):
            super().__init__(optimizer, recipe_milestones, gamma, **kwargs)

    return RecipeMultiStepLR


def accuracy_row(matrix, increment: int) -> dict:
    """Top-1 on all classes seen, and on each task's classes, from a confusion matrix over positions."""
    import numpy as np

    hits, totals = np.diag(matrix), matrix.sum(axis=1)
    of_task = np.arange(len(matrix)) // increment
    return {"top1": float(100 * hits.sum() / totals.sum()),
            "row": [float(100 * hits[of_task == t].sum() / totals[of_task == t].sum())
                    for t in range(of_task.max() + 1)]}


if __name__ == "__main__":
    main(*sys.argv[1:4])
