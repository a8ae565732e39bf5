"""One training step (forward + backward, no optimiser) of a model in one of the PRESETS.

A case names the model (method, tasks added so far), the dual block's implementation (batched,
as in suite.models, or the per-key `naive` one) and the autocast dtype. FLOPs per step come from
`torch.utils.flop_counter.FlopCounterMode` (CPU flash attention added to its table).
"""
from __future__ import annotations

import statistics
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from bench.perf.naive import naive_block
from bench.perf.timing import rates, summary, sync, time_calls
from suite.config import Config, load
from suite.learner.learner import compiled_forward
from suite.models import build_model
from suite.methods import TRAIN

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Preset:
    config: str  # the model keys come from this file ("{method}" stands for the case's method)
    image_size: int
    channels: int
    classes_per_task: int


PRESETS = {
    # the CIFAR preset: embed 384, depth 5 + 1 task block, 12 heads, patch 4, 32x32
    "cifar": Preset(str(REPO / "configs" / "model" / "cifar_dual.yaml"), 32, 3, 10),
    # the quickstart model on digits-sized input (8x8, 1 channel, 2 classes per task): a small step
    "quickstart": Preset(str(REPO / "configs" / "quickstart.yaml"), 8, 1, 2),
    # a CNN baseline's model in the PyCIL protocol's preset (the CIFAR ResNet-32) and in the DER/DyTox
    # table's (the CIFAR ResNet-18)
    "pycil": Preset(str(REPO / "configs" / "model" / "cifar_{method}.yaml"), 32, 3, 10),
    "der": Preset(str(REPO / "configs" / "model" / "cifar_{method}_der.yaml"), 32, 3, 10),
}

# FlopCounterMode knows the CUDA attention kernels but not the CPU one: add it.
_aten = torch.ops.aten


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                            **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


EXTRA_FLOP_FORMULAS = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop,
}


@dataclass(frozen=True)
class Case:
    method: str  # daformer_m, daformer_s, dytox; a CNN baseline in the pycil and der presets
    tasks: int  # tasks added (daformer_m: = keys)
    impl: str = "batched"  # batched | naive (daformer only; see IMPLS)
    dtype: str = "fp32"  # fp32 | bf16 (autocast)
    batch: int = 128
    preset: str = "cifar"

    @property
    def name(self) -> str:
        keys = {"daformer_m": f"{self.tasks} keys", "daformer_s": f"1 key, {self.tasks} tasks",
                "dytox": f"{self.tasks} task tokens"}.get(self.method, f"{self.tasks} tasks")
        where = "" if self.preset == "cifar" else f" [{self.preset}]"
        return f"{self.method} ({keys}) {self.impl} {self.dtype} b{self.batch}{where}"

    def with_(self, **changes) -> "Case":
        return Case(**{**asdict(self), **changes})


def preset_config(case: Case, sets: tuple[str, ...] = ()) -> Config:
    return load([PRESETS[case.preset].config.format(method=case.method)], [f"method={case.method}", *sets])


def build(case: Case, device: torch.device, sets: tuple[str, ...] = ()) -> torch.nn.Module:
    """The preset model after `case.tasks` tasks of 10 classes, in the main phase of the last one."""
    torch.manual_seed(0)
    preset = PRESETS[case.preset]
    cfg = preset_config(case, sets)
    model = build_model(cfg.method, preset.image_size, preset.channels, case.tasks, **asdict(cfg.model))
    for _ in range(case.tasks):
        model.add_task(preset.classes_per_task)
    if hasattr(model, "dual"):
        with torch.no_grad():  # trained keys are not zero
            for key, bias in zip(model.dual.keys, model.dual.key_biases):
                key.normal_(std=0.02)
                bias.normal_(std=0.02)
    model.set_phase(TRAIN)
    return model.to(device, memory_format=layout(cfg)).train()


def layout(cfg: Config) -> torch.memory_format:
    """The memory layout the learner trains the preset in (train.channels_last)."""
    return torch.channels_last if cfg.train.channels_last else torch.contiguous_format


# How the dual block runs: as suite.models.daformer has it, or the published per-key algorithm.
# Both on the same module and weights. A candidate rewrite is measured by adding it here.
IMPLS = {"batched": lambda block: nullcontext(), "naive": naive_block}


class Step:
    """Callable: one forward + backward of `case` on a fixed random batch."""

    def __init__(self, case: Case, device: torch.device, sets: tuple[str, ...] = (), compiled: bool = False):
        if case.impl not in IMPLS:
            raise ValueError(f"unknown implementation {case.impl!r}; expected one of {', '.join(IMPLS)}")
        self.case, self.device = case, device
        self.model = build(case, device, sets)
        self.forward = compiled_forward(self.model) if compiled else self.model
        if case.impl != "batched" and not hasattr(self.model, "dual"):
            raise ValueError(f"{case.method} has no dual block: no {case.impl} implementation")
        gen = torch.Generator().manual_seed(1)
        size, channels = PRESETS[case.preset].image_size, PRESETS[case.preset].channels
        self.images = torch.randn(case.batch, channels, size, size, generator=gen).to(
            device, memory_format=layout(preset_config(case, sets)))
        self.labels = torch.randint(0, self.model.num_classes, (case.batch,), generator=gen).to(device)
        head = getattr(self.model, "div_head", None)  # the ViTs': LayerNorm + Linear; DER's and FOSTER's: a Linear
        div = (head[-1] if isinstance(head, torch.nn.Sequential) else head).out_features if head is not None else 1
        self.div_labels = torch.randint(0, div, (case.batch,), generator=gen).to(device)

    def _autocast(self):
        if self.case.dtype == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def __call__(self, impl: Optional[str] = None) -> None:
        """One step; `impl` overrides the case's implementation (same model, same batch)."""
        self.model.zero_grad(set_to_none=True)
        impl = impl or self.case.impl
        impl = IMPLS[impl](self.model.dual) if impl != "batched" else nullcontext()
        with impl, self._autocast():
            out = self.forward(self.images)
        loss = F.cross_entropy(out.logits.float(), self.labels)
        if out.div_logits is not None:
            loss = loss + 0.1 * F.cross_entropy(out.div_logits.float(), self.div_labels)
        loss.backward()



def count_flops(case: Case, device: torch.device, sets: tuple[str, ...] = (), batch: int = 2) -> int:
    """FLOPs of one step (forward + backward) as FlopCounterMode counts them.

    Every op of the step is linear in the batch, so they are counted on a batch of `batch`
    (in fp32: the count does not depend on the dtype) and scaled: counting runs op by op in
    Python and would cost more than the step itself.
    """
    small = Step(case.with_(batch=batch, dtype="fp32"), device, sets)
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS) as counter:
        small()
    return int(counter.get_total_flops()) * case.batch // batch


def measure(cases: list[Case], device: torch.device, repeats: int, warmup: int = 1, inner: int = 1,
            peak_gflops: Optional[float] = None, ceiling: Optional[Callable[[], float]] = None,
            sets: tuple[str, ...] = ()) -> list[dict]:
    """Time `cases` (one model: they may differ only in `impl`) interleaved, sample by sample.

    On a shared machine the load drifts over minutes: alternating the implementations makes their
    ratio fair, and `ceiling()` (a short dense-matmul burst, GFLOP/s) measured before every sample
    and after the last gives each sample the machine's rate at that moment. MFU = FLOPs the step
    executes (as counted: the naive block's repeated qkv and attention count too) x steps/s / the
    ceiling; `mfu` uses `peak_gflops` (the part-1 ceiling), `mfu_adjacent` the adjacent bursts.
    """
    base = cases[0]
    if any(c.with_(impl=base.impl) != base for c in cases):
        raise ValueError("interleaved cases must differ only in impl")
    step = Step(base, device, sets)
    for case in cases:
        for _ in range(warmup):
            step(case.impl)
    sync(device)
    seconds = {c: [] for c in cases}
    ceilings = []
    for _ in range(repeats):
        for case in cases:
            if ceiling is not None:
                ceilings.append(ceiling())
            seconds[case] += time_calls(lambda: step(case.impl), 1, warmup=0, device=device, inner=inner)
    if ceiling is not None:
        ceilings.append(ceiling())
    step = None  # frees the model and its activations before the FLOP count builds another
    params = num_params(base, sets)
    out = []
    for i, case in enumerate(cases):
        flops = count_flops(case, device, sets)
        imgs = summary(rates(seconds[case], case.batch))
        row = {**asdict(case), "name": case.name, "device": str(device), "step_s": summary(seconds[case]),
               "images_per_s": imgs, "flops_per_step": flops, "flops_per_image": flops / case.batch,
               "params": params, "interleaved_with": [c.name for c in cases if c != case]}
        achieved = [flops / t / 1e9 for t in seconds[case]]
        row["achieved_gflops"] = statistics.median(achieved)
        row["mfu"] = row["achieved_gflops"] / peak_gflops if peak_gflops else None
        row["mfu_peak_gflops"] = peak_gflops
        row["mfu_adjacent"] = None
        if ceilings and peak_gflops:
            k = len(cases)  # sample r of case i sits between ceilings[r*k + i] and ceilings[r*k + i + 1]
            adjacent = [(ceilings[r * k + i] + ceilings[r * k + i + 1]) / 2 for r in range(repeats)]
            row["adjacent_ceiling_gflops"] = summary(adjacent)
            row["mfu_adjacent"] = summary([a / c for a, c in zip(achieved, adjacent)])
        out.append(row)
    return out


def num_params(case: Case, sets: tuple[str, ...] = ()) -> int:
    return sum(p.numel() for p in build(case, torch.device("cpu"), sets).parameters())
