"""One training step of the release's DAFormer model against ours, interleaved in one process.

    python -m bench.parity.steptime --daformer CHECKOUT --out FILE.json [--quick]

The CIFAR preset model (embed 384, 5 GPSA blocks + 1 dual block, 12 heads, patch 4, 32x32,
drop-path 0.1) after K tasks of 10 classes, in the main phase of task K: old keys and heads
frozen, the divergence head present from K = 2 on. A step is forward + backward + AdamW step in
fp32 on a fixed batch: cross-entropy on the logits + 0.1 x cross-entropy on the divergence
logits, the same for both. The release keeps one key per task and re-runs its whole dual block
per key; ours (suite.models via bench.perf.step.build, `model.out_proj: false` as the release
behaves) computes what does not depend on the key once.

The release's model is imported in our venv (timm 1.0.31 still exposes `timm.models.layers`,
the only timm names DualVit.py/dual.py use: DropPath, to_2tuple, trunc_normal_). Its package
`continual/__init__.py` imports continual/vit.py, which needs timm 0.4's helpers, so the package
is set up as an empty namespace over the checkout's folder and only DualVit.py and dual.py load.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

KEYS = (1, 10, 50)
CLASSES_PER_TASK = 10
PRESET = dict(img_size=32, patch_size=4, embed_dim=384, depth=6, num_heads=12, local_up_to_layer=5,
              drop_path_rate=0.1, locality_strength=1.0)  # options/model/cifar_dual.yaml via factory.get_backbone


def release_model(checkout: Path, keys: int) -> torch.nn.Module:
    torch.nn.Module.cuda = lambda self, device=None: self  # dual.py moves every new module with .cuda()
    if "continual" not in sys.modules:
        pkg = types.ModuleType("continual")
        pkg.__path__ = [str(checkout / "continual")]
        sys.modules["continual"] = pkg
    from continual import DualVit, dual

    torch.manual_seed(0)
    vit = DualVit.DualVit(**PRESET)
    model = dual.Dual(vit, nb_classes=CLASSES_PER_TASK, individual_classifier="1-1", head_div=True, head_div_mode="tr")
    for _ in range(keys - 1):
        model.add_model(CLASSES_PER_TASK)  # as factory.update_dual at each new task
    if keys > 1:
        model.freeze(["old_key", "old_heads"])  # the preset's freeze_task
    return model.train()


def our_model(keys: int) -> torch.nn.Module:
    from bench.perf.step import Case, build

    return build(Case("daformer_m", keys), torch.device("cpu"), sets=("model.out_proj=false",))


class Stepper:
    def __init__(self, model, outputs, batch: int):
        self.model, self.outputs = model, outputs
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-6)
        gen = torch.Generator().manual_seed(1)
        self.images = torch.randn(batch, 3, 32, 32, generator=gen)
        self.labels = torch.randint(0, CLASSES_PER_TASK, (batch,), generator=gen)
        self.div_labels = torch.randint(0, CLASSES_PER_TASK + 1, (batch,), generator=gen)

    def __call__(self) -> float:
        start = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        logits, div = self.outputs(self.model(self.images))
        loss = F.cross_entropy(logits, self.labels)
        if div is not None:
            loss = loss + 0.1 * F.cross_entropy(div, self.div_labels)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - start


def measure(checkout: Path, keys: int, batch: int, repeats: int) -> dict:
    release = Stepper(release_model(checkout, keys), lambda o: (o["logits"], o["div"]), batch)
    ours = Stepper(our_model(keys), lambda o: (o.logits, o.div_logits), batch)
    release(), ours()  # warm-up: allocator, optimizer state
    times = {"release": [], "ours": []}
    for r in range(repeats):  # alternate, and alternate who goes first
        order = (("release", release), ("ours", ours)) if r % 2 == 0 else (("ours", ours), ("release", release))
        for name, step in order:
            times[name].append(step())
    rel, our = statistics.median(times["release"]), statistics.median(times["ours"])
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {
        "keys": keys, "batch": batch, "repeats": repeats,
        "release_ms": 1000 * rel, "ours_ms": 1000 * our, "ratio_release_over_ours": rel / our,
        "release_all_ms": [1000 * t for t in times["release"]], "ours_all_ms": [1000 * t for t in times["ours"]],
        "release_params": count(release.model), "ours_params": count(ours.model),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--daformer", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quick", action="store_true", help="keys 1 and 2, batch 8, 2 repeats")
    args = p.parse_args(argv)
    plan = [(1, 8, 2), (2, 8, 2)] if args.quick else [(1, 128, 7), (10, 128, 5), (50, 128, 3)]
    rows = []
    for keys, batch, repeats in plan:
        rows.append(measure(args.daformer, keys, batch, repeats))
        print(json.dumps({k: v for k, v in rows[-1].items() if not k.endswith("_all_ms")}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "rows": rows, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "one_process": True,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
