"""PyCIL's side of the step-by-step comparison (bench/parity/pycil_lockstep.py), in the release venv:
`python pycil_lockstep_release.py CHECKOUT METHOD SEED OUT.pt`.

Builds PyCIL's own network of METHOD for a second task (10 old classes, 10 new) with its old network
or frozen old part, draws random BatchNorm statistics and weights (so that nothing starts at a
default), then trains STEPS steps on random batches with PyCIL's own loss functions, its SGD
parameter groups and its train/eval modes, as its learner's epoch loop does. Saves the weights
before the steps, the batches, each step's loss and the weights after. Nothing of PyCIL is copied:
its modules are imported from the checkout.
"""
from __future__ import annotations

import math
import sys

STEPS, BATCH, OLD, NEW = 3, 16, 10, 10
LR, MOMENTUM, DECAY = 0.001, 0.9, 5e-4  # a hundredth of the recipes' lr: random weights give large first gradients
COUNTS = [40] * OLD + [500] * NEW  # FOSTER's images per class: memory // old classes, a CIFAR class's


def randomised(module, torch) -> None:
    """Every BatchNorm's statistics and affine parameters drawn at random, in place."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)


def main(checkout: str, method: str, seed: str, out: str) -> None:
    sys.path.insert(0, checkout)
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import optim

    torch.manual_seed(int(seed))
    args = {"convnet_type": "cosine_resnet32" if method == "podnet" else "resnet32", "dataset": "cifar100"}
    batches = [(torch.randn(BATCH, 3, 32, 32), torch.randint(0, OLD + NEW, (BATCH,))) for _ in range(STEPS)]
    if method == "icarl":
        from models.icarl import _KD_loss
        from utils.inc_net import IncrementalNet

        net = IncrementalNet(args, False)
        net.update_fc(OLD)
        randomised(net, torch)
        old = net.copy().freeze()
        net.update_fc(OLD + NEW)
        params = net.parameters()

        def loss_of(x, y):
            logits = net(x)["logits"]
            return F.cross_entropy(logits, y) + _KD_loss(logits[:, :OLD], old(x)["logits"], 2)
    elif method == "podnet":
        from models.podnet import nca, pod_spatial_loss
        from utils.inc_net import CosineIncrementalNet

        net = CosineIncrementalNet(args, False, nb_proxy=10)
        net.update_fc(OLD, 0)
        randomised(net, torch)
        net.fc.sigma.data.fill_(4.0)
        old = net.copy().freeze()
        net.update_fc(OLD + NEW, 1)
        factor = math.sqrt((OLD + NEW) / NEW)
        ignored = list(map(id, net.fc.fc1.parameters()))
        params = [{"params": [p for p in net.parameters() if id(p) not in ignored], "lr": LR, "weight_decay": DECAY},
                  {"params": net.fc.fc1.parameters(), "lr": 0, "weight_decay": 0}]

        def loss_of(x, y):
            out = net(x)
            with torch.no_grad():
                before = old(x)
            flat = F.cosine_embedding_loss(out["features"], before["features"], torch.ones(len(x))) * factor
            return nca(out["logits"], y) + flat + pod_spatial_loss(out["fmaps"], before["fmaps"]) * factor * 5
    elif method == "foster":
        from models.foster import _KD_loss
        from utils.inc_net import FOSTERNet

        net = FOSTERNet(args, False)
        net.update_fc(OLD)
        randomised(net, torch)
        net.update_fc(OLD + NEW)
        for p in [*net.convnets[0].parameters(), *net.oldfc.parameters()]:
            p.requires_grad = False
        effective = 1.0 - np.power(0.96, COUNTS)
        weights = (1.0 - 0.96) / np.array(effective)
        weights = torch.FloatTensor(weights / np.sum(weights) * len(COUNTS))
        params = filter(lambda p: p.requires_grad, net.parameters())

        def loss_of(x, y):
            out = net(x)
            return (F.cross_entropy(out["logits"] / weights, y) + F.cross_entropy(out["fe_logits"], y)
                    + _KD_loss(out["logits"][:, :OLD], out["old_logits"].detach(), 2))
    else:
        raise SystemExit(f"unknown method {method}")
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    teacher = {k: v.clone() for k, v in old.state_dict().items()} if method != "foster" else None
    optimizer = optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=DECAY)
    losses = []
    for x, y in batches:
        net.train()
        if method == "foster":  # its learner's train(): the old backbone in eval mode
            net.convnets[0].eval()
        loss = loss_of(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    torch.save({"method": method, "initial": initial, "teacher": teacher, "batches": batches, "losses": losses,
                "final": net.state_dict(), "weights_in_loss": COUNTS}, out)


if __name__ == "__main__":
    main(*sys.argv[1:5])
