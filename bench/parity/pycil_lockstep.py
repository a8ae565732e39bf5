"""PyCIL and ours step by step: `python -m bench.parity pycil-lockstep --pycil DIR --release-python PY`.

For iCaRL, PODNet and FOSTER, PyCIL's own network, loss and optimizer train a second task for a few
steps on random batches from random weights (bench/parity/pycil_lockstep_release.py, in the release
venv); ours loads the same weights into its model (suite/models), trains the same batches with its
method's strategy loss (suite/strategies) and optimizer (suite/learner/optim.py), and the losses of
every step and the weights after the last are compared. Writes reports/parity/pycil_lockstep.md.
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.parity import meta, proc
from bench.parity.pycil_lockstep_release import COUNTS, DECAY, LR, NEW, OLD
from suite.config import load
from suite.learner.optim import make_optimizer
from suite.methods import TRAIN
from suite.models.cnn import IncrementalCNN
from suite.models.cosine import CosineCNN
from suite.models.foster import FOSTERNet
from suite.strategies import strategy_for

RELEASE_SIDE = Path(__file__).with_name("pycil_lockstep_release.py")
REPO = Path(__file__).resolve().parents[2]
METHODS = ("icarl", "podnet", "foster")
PRESETS = {"icarl": "cifar_icarl.yaml", "podnet": "cifar_podnet.yaml", "foster": "cifar_foster.yaml"}


def backbone_pairs(ours: list[str], theirs: dict, prefix: str) -> dict:
    """Our backbone's keys against PyCIL's convnet's (`prefix`), in order (the same layers, other
    names); PyCIL's ResNet-32 carries an unused `fc` of its own, left out."""
    values = [v for k, v in theirs.items() if k.startswith(prefix) and ".fc." not in k]
    if len(values) != len(ours):
        raise SystemExit(f"{prefix}: {len(values)} tensors in PyCIL's backbone, {len(ours)} in ours")
    return dict(zip(ours, values))


def ours_of(method: str, state: dict, teacher: dict | None):
    """Our model and teacher with PyCIL's weights."""
    if method == "icarl":
        model, old = IncrementalCNN("cifar_resnet32", 3), IncrementalCNN("cifar_resnet32", 3)
        heads = {"heads.0.weight": state["fc.weight"][:OLD], "heads.0.bias": state["fc.bias"][:OLD],
                 "heads.1.weight": state["fc.weight"][OLD:], "heads.1.bias": state["fc.bias"][OLD:]}
        old_heads = {"heads.0.weight": teacher["fc.weight"], "heads.0.bias": teacher["fc.bias"]}
    elif method == "podnet":
        model, old = CosineCNN("cifar_resnet32_cosine", 3, 10), CosineCNN("cifar_resnet32_cosine", 3, 10)
        heads = {"heads.0.weight": state["fc.fc1.weight"], "heads.1.weight": state["fc.fc2.weight"],
                 "sigma": state["fc.sigma"]}
        old_heads = {"heads.0.weight": teacher["fc.weight"], "sigma": teacher["fc.sigma"]}
    else:
        model, old = FOSTERNet("cifar_resnet32", 3), None
        heads = {"heads.0.weight": state["fc.weight"][:OLD, :], "heads.0.bias": state["fc.bias"][:OLD],
                 "heads.1.weight": state["fc.weight"][OLD:, :], "heads.1.bias": state["fc.bias"][OLD:],
                 "div_head.weight": state["fe_fc.weight"], "div_head.bias": state["fe_fc.bias"],
                 "old_heads.0.weight": state["oldfc.weight"], "old_heads.0.bias": state["oldfc.bias"]}
    model.add_task(OLD)
    model.add_task(NEW)
    mine = model.state_dict()
    mapped = dict(heads)
    if method == "foster":
        for i in (0, 1):
            mapped.update(backbone_pairs([k for k in mine if k.startswith(f"backbones.{i}.")], state, f"convnets.{i}."))
        mapped.update({k: v for k, v in mine.items() if k.startswith("student.")})  # not trained in these steps
    else:
        mapped.update(backbone_pairs([k for k in mine if k.startswith("backbone.")], state, "convnet."))
    model.load_state_dict(mapped)
    if old is not None:
        old.add_task(OLD)
        old_mapped = dict(old_heads)
        old_mapped.update(backbone_pairs([k for k in old.state_dict() if k.startswith("backbone.")], teacher, "convnet."))
        old.load_state_dict(old_mapped)
        old.eval().requires_grad_(False)
    return model, old, {id(v): k for k, v in mapped.items()}, mapped


class Phase:
    name, num_old, images_per_class = TRAIN, OLD, tuple(COUNTS)


def ours_steps(method: str, record: dict) -> tuple[list[float], float]:
    """Our losses on PyCIL's batches from PyCIL's weights, and the largest difference of the weights
    after the steps from PyCIL's, relative to the tensor's largest value (every tensor, mapped)."""
    cfg = load([REPO / "configs" / "model" / PRESETS[method]])
    strategy = strategy_for(cfg)
    model, old, _, mapped = ours_of(method, record["initial"], record["teacher"])
    model.set_phase(TRAIN)
    optimizer, _ = make_optimizer(model, cfg.train, LR, DECAY, None, 0, [])
    losses = []
    for x, y in record["batches"]:
        model.train()
        out = model(x)
        teacher_out = old(x) if old is not None else None
        loss = strategy.loss(out, teacher_out, F.one_hot(y, OLD + NEW).float(), Phase)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    _, _, _, expected = ours_of(method, record["final"], record["teacher"])
    now = model.state_dict()
    gap = max(float((now[k].float() - v.float()).abs().max() / v.float().abs().max().clamp_min(1e-12))
              for k, v in expected.items() if not k.startswith("student.") and not k.endswith("num_batches_tracked"))
    return losses, gap


def main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.parity pycil-lockstep", description=__doc__.splitlines()[0])
    p.add_argument("--pycil", type=Path, required=True, help="PyCIL's checkout")
    p.add_argument("--release-python", required=True, help="a python with torch for PyCIL")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--work-dir", type=Path, default=Path("/work/parity-work/pycil-lockstep"))
    p.add_argument("--out", type=Path, default=REPO / "reports" / "parity" / "pycil_lockstep.md")
    args = p.parse_args(argv)
    if not (args.pycil / "models" / "podnet.py").is_file():
        print(f"error: --pycil {args.pycil}: expected PyCIL's checkout (models/podnet.py)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    rows = []
    for method in METHODS:
        for seed in args.seeds:
            out = args.work_dir / f"{method}-{seed}.pt"
            rc, _ = proc.run([args.release_python, str(RELEASE_SIDE), str(args.pycil.resolve()), method, str(seed),
                              str(out)], out.with_suffix(".log"), cwd=REPO)
            if rc:
                print(f"error: PyCIL's side of {method}, seed {seed}, failed: {proc.tail(out.with_suffix('.log'))}",
                      file=sys.stderr)
                return 1
            record = torch.load(out, weights_only=False)
            losses, gap = ours_steps(method, record)
            worst = max(abs(a - b) for a, b in zip(losses, record["losses"]))
            rows.append((method, seed, record["losses"], losses, worst, gap))
            print(f"[pycil-lockstep] {method} seed {seed}: loss gap {worst:.2e}, weights gap {gap:.2e}", flush=True)
    write(args, rows)
    return 0


def write(args, rows) -> None:
    lines = [
        "# PyCIL and ours, step by step: iCaRL, PODNet, FOSTER",
        "",
        f"Built by `python -m bench.parity pycil-lockstep` (bench/parity/pycil_lockstep*.py), our commit "
        f"`{meta.git_commit()}`, written {datetime.datetime.now().isoformat(timespec='minutes')}; PyCIL "
        f"`{meta.source(args.pycil.resolve()).get('commit') or args.pycil}`. Machine: {meta.machine_line(meta.machine())}.",
        "",
        "A second task (10 old classes, 10 new) on PyCIL's own network of each method, from random weights and "
        "BatchNorm statistics, with its old network (FOSTER: its frozen old part): PyCIL's loss functions, SGD "
        "parameter groups (SGD, momentum 0.9, weight decay 5e-4, lr 0.001: a hundredth of the recipes', as random "
        "weights give large first gradients) and train/eval modes train it on random batches of 16 images; ours loads the same weights into its model, trains the same batches with its "
        "method's strategy loss and optimizer (the PyCIL-protocol preset's hyper-parameters), and the losses of "
        "every step and the weights after the last are compared (the largest absolute loss difference; the "
        "largest difference of any weight or BatchNorm statistic relative to its tensor's largest value, every "
        "tensor of PyCIL's network mapped to ours). Everything in float32 on the CPU.",
        "",
        "| method | seed | PyCIL's losses | ours | largest loss gap | largest relative weight gap after the steps |",
        "|---|--:|---|---|--:|--:|",
    ]
    for method, seed, theirs, mine, worst, gap in rows:
        fmt = lambda xs: " ".join(f"{x:.6f}" for x in xs)  # noqa: E731
        lines.append(f"| {method} | {seed} | {fmt(theirs)} | {fmt(mine)} | {worst:.2e} | {gap:.2e} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"[pycil-lockstep] report: {args.out}", flush=True)
