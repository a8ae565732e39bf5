"""How much each mode measures: the full benchmark, `--quick`, and the GPU variant of either."""
from __future__ import annotations

from dataclasses import dataclass, replace

PARTS = ("matmul", "step", "bf16", "compile", "ray", "contention", "loader", "sweep", "e2e", "allocator", "accuracy")


@dataclass(frozen=True)
class Settings:
    batch: int = 128
    repeats: int = 3  # timed samples per step case (after `warmup`)
    heavy_repeats: int = 2  # for the 50-key cases (a batch-128 step takes minutes on 2 cores)
    warmup: int = 1
    inner: int = 1  # steps per timed sample
    keys: tuple[int, ...] = (1, 10, 50)  # daformer_m keys (= tasks added)
    tasks_fixed: int = 10  # tasks of daformer_s and dytox
    matmul_n: int = 2048
    matmul_repeats: int = 7
    # bf16 on a CPU without native bf16 (no AMX / AVX512-BF16): only a probe at a small batch
    bf16_probe_batch: int = 4
    bf16_probe_repeats: int = 2
    # torch.compile on and off: the quickstart step always (these repeats, these steps per
    # sample), the CIFAR 10-key step in full (the step part's repeats and inner)
    compile_repeats: int = 5
    compile_inner: int = 10
    compile_keys: int = 5  # keys of the quickstart case (--quick: 1, the code path)
    compile_cifar: bool = True
    compile_dtype: str = "fp32"  # of the CIFAR compile case
    # GPU only: a batch that fills the device (at batch 128 bf16 ran barely faster than fp32 on an H200);
    # daformer_m at 10 keys runs at it in the step part, and the CIFAR compile case uses it
    large_batch: int | None = None
    # Ray overhead
    ray_small_repeats: int = 5
    ray_small_inner: int = 10
    ray_variants: tuple[str, ...] = ("default", "nice0", "passive", "nice0+passive", "threads1")
    ray_cifar: bool = True  # also the 1-key CIFAR step through Ray (default and the fixed variant)
    ray_cifar_repeats: int = 2
    ray_background_s: float = 20  # seconds of Ray's own CPU use sampled, the worker asleep
    # OpenMP wait policy under a controlled competitor
    contention_repeats: int = 5
    contention_inner: int = 10
    # loader
    loader_batches: int = 10
    loader_repeats: int = 3
    # sweep packing: trials of the sweep, epochs per task of each
    sweep_trials: int = 4
    sweep_epochs: int = 2
    # end to end
    e2e_repeats: int = 2
    # allocator
    alloc_keys: int = 10
    alloc_rounds: int = 2
    alloc_repeats: int = 2
    # bf16 against fp32 on the quickstart's accuracy: seeds, and config overrides of every run
    accuracy_seeds: tuple[int, ...] = (0, 1, 2)
    accuracy_sets: tuple[str, ...] = ()


FULL = Settings()

QUICK = Settings(batch=4, repeats=2, heavy_repeats=1, keys=(1, 10), matmul_n=1024, matmul_repeats=3,
                 bf16_probe_batch=2, bf16_probe_repeats=1, ray_small_repeats=3, ray_small_inner=5,
                 ray_variants=("default", "passive"), ray_cifar=False, compile_repeats=3, compile_keys=1,
                 compile_cifar=False, ray_background_s=10, contention_repeats=3, contention_inner=5, loader_batches=3,
                 loader_repeats=2, sweep_trials=2, sweep_epochs=1, e2e_repeats=1, alloc_rounds=1, alloc_repeats=2,
                 accuracy_seeds=(0, 1), accuracy_sets=("train.epochs=1", "finetune.epochs=1", "data.max_classes=4"))

# On a GPU a step is milliseconds: more samples, several steps each.
GPU_FULL = replace(FULL, repeats=10, heavy_repeats=10, warmup=3, inner=5, matmul_n=8192, matmul_repeats=10,
                   large_batch=1024, compile_dtype="bf16")
GPU_QUICK = replace(QUICK, batch=8, repeats=5, heavy_repeats=5, warmup=2, inner=3, matmul_n=4096, large_batch=256,
                    compile_dtype="bf16")


def settings_for(quick: bool, cuda: bool) -> Settings:
    if cuda:
        return GPU_QUICK if quick else GPU_FULL
    return QUICK if quick else FULL
