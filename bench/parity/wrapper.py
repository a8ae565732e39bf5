"""Run a release's entry script on the CPU with runtime patches; no file of theirs is edited.

Run in the release's venv, under torch.distributed with world size 1 as their train.sh does:

    python -m torch.distributed.run --standalone --nproc_per_node=1 wrapper.py RELEASE_DIR ENTRY.py ARGS...

Kept free of imports from this project: it runs in another venv.
"""
import sys

if __name__ == "__main__":
    # sys.path[0] is this file's folder: replace it with the release's before anything else is
    # imported, so that the modules beside this file never shadow one the release imports.
    sys.path[0] = sys.argv[1]

import os  # noqa: E402
import runpy  # noqa: E402

import torch  # noqa: E402
import torch.distributed  # noqa: E402
import torchvision.datasets.cifar  # noqa: E402

# (what, why): printed at start-up, and copied into the report by the benchmark.
PATCHES = [
    ("torch.nn.Module.cuda and torch.Tensor.cuda return self",
     "the releases move every module and batch with .cuda() (dual.py/dytox.py, rehearsal.py)"),
    ("torch.cuda.synchronize and torch.cuda.set_device are no-ops",
     "called once per step (engine.py) and at start-up (utils.init_distributed_mode)"),
    ("torch.distributed.init_process_group uses backend 'gloo'",
     "utils.init_distributed_mode hard-codes 'nccl', which needs a GPU"),
    ("torch.nn.parallel.DistributedDataParallel drops device_ids for a CPU module",
     "main.py/mainDual.py wrap with device_ids=[args.gpu], which DDP refuses for CPU modules"),
    ("torch.tensor and torch.full build on the CPU when asked for device 'cuda'",
     "continual.mixup.one_hot defaults to device='cuda'; utils.SmoothedValue.synchronize_between_processes "
     "all-reduces a tensor made on 'cuda'"),
    ("continual.samplers.RASampler.set_epoch adds 1000 x --seed to the epoch",
     "the release seeds each epoch's sample order with the epoch alone, so every seed read the images in "
     "the same order; ours varies the order with the run's seed, and now both do"),
    ("torchvision's CIFAR md5 check becomes a file-exists check",
     "the data are Tiny-ImageNet repacked in CIFAR-100's layout, whose files have other checksums; "
     "nothing is downloaded"),
]


def _cpu(kwargs):
    if str(kwargs.get("device", "")).startswith("cuda"):
        kwargs["device"] = "cpu"
    return kwargs


def _on_cpu(factory):
    def build(*args, **kwargs):
        return factory(*args, **_cpu(kwargs))
    return build


class _CpuDDP(torch.nn.parallel.DistributedDataParallel):
    def __init__(self, module, device_ids=None, *args, **kwargs):
        on_cpu = all(p.device.type == "cpu" for p in module.parameters())
        super().__init__(module, None if on_cpu else device_ids, *args, **kwargs)


def _gloo(init):
    def init_process_group(*args, **kwargs):
        kwargs["backend"] = "gloo"
        return init(*args[1:], **kwargs) if args else init(**kwargs)
    return init_process_group


def apply():
    torch.nn.Module.cuda = lambda self, device=None: self
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.cuda.synchronize = lambda device=None: None
    torch.cuda.set_device = lambda device: None
    torch.distributed.init_process_group = _gloo(torch.distributed.init_process_group)
    torch.nn.parallel.DistributedDataParallel = _CpuDDP
    torch.tensor = _on_cpu(torch.tensor)
    torch.full = _on_cpu(torch.full)
    torchvision.datasets.cifar.check_integrity = lambda fpath, md5=None: os.path.isfile(fpath)


def seed_sample_order(args: list[str]) -> None:
    """RASampler's per-epoch generator seeded by the epoch and --seed (see PATCHES)."""
    from continual import samplers

    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 0
    set_epoch = samplers.RASampler.set_epoch
    samplers.RASampler.set_epoch = lambda self, epoch: set_epoch(self, epoch + 1000 * seed)


def main():
    release_dir, entry, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    apply()
    seed_sample_order(args)
    print("parity wrapper patches:", *(f"  - {what}" for what, _ in PATCHES), sep="\n", flush=True)
    sys.argv = [os.path.join(release_dir, entry)] + args
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
