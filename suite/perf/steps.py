"""Part 2: the step cases of one run, their images/s and MFU, and the batched/naive ratios.

fp32 always; bf16 autocast in full where bf16 is fast (a GPU, or a CPU whose bf16 matmul is not
far slower than fp32). On a CPU without native bf16 (no AMX / AVX512-BF16: bf16 matmuls are
emulated, tens of times slower) only a probe runs: daformer_m at 10 keys, batched and naive, at
a small batch, with fp32 at the same batch beside it.
"""
from __future__ import annotations

import gc
from pathlib import Path
from typing import Callable

import torch

from suite.perf.settings import Settings
from suite.perf.step import Case, measure

# Peak resident memory of a batch-128 CIFAR step grows by about 2.5 MB per key per image (the
# per-key activations of the dual block, naive slightly more than batched): measured 18 GB at
# 50 keys. Cases that would not fit in the memory available now run at a smaller batch.
BYTES_PER_KEY_IMAGE = 2.7e6
BASE_BYTES = 2.5e9


def available_bytes(device: torch.device) -> float:
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return float(line.split()[1]) * 1024
    return float("inf")


def fitting_batch(case: Case, device: torch.device) -> tuple[int, str | None]:
    keys = case.tasks if case.method == "daformer_m" else 1
    batch = case.batch
    while batch > 1 and BASE_BYTES + BYTES_PER_KEY_IMAGE * keys * batch > 0.85 * available_bytes(device):
        batch //= 2
    if batch == case.batch:
        return batch, None
    return batch, (f"batch {case.batch} would need about {(BASE_BYTES + BYTES_PER_KEY_IMAGE * keys * case.batch) / 1e9:.0f} GB; "
                   f"{available_bytes(device) / 1e9:.0f} GB available: measured at batch {batch}")


def cases(s: Settings, dtype: str, batch: int) -> list[Case]:
    out = []
    for keys in s.keys:
        out += [Case("daformer_m", keys, "batched", dtype, batch), Case("daformer_m", keys, "naive", dtype, batch)]
    out += [Case("daformer_s", s.tasks_fixed, "batched", dtype, batch), Case("dytox", s.tasks_fixed, "batched", dtype, batch)]
    return out


def bf16_is_fast(matmul: dict, device: torch.device) -> bool:
    if device.type == "cuda":
        return True
    fp32, bf16 = matmul.get("fp32"), matmul.get("bf16")
    return bool(fp32 and bf16 and bf16["gflops"]["median"] >= 0.5 * fp32["gflops"]["median"])


def run_steps(s: Settings, device: torch.device, peaks: dict[str, float], with_bf16: bool, bf16_fast: bool,
              log: Callable[[str], None]) -> dict:
    plan = [(c, s.heavy_repeats if c.tasks >= 50 else s.repeats) for c in cases(s, "fp32", s.batch)]
    bf16_note = None
    if with_bf16 and bf16_fast:
        plan += [(c, s.heavy_repeats if c.tasks >= 50 else s.repeats) for c in cases(s, "bf16", s.batch)]
    elif with_bf16:
        b = s.bf16_probe_batch
        bf16_note = (f"bf16 is emulated on this CPU (no AMX / AVX512-BF16; bf16 matmul far below fp32): "
                     f"bf16 measured only as a probe, daformer_m 10 keys at batch {b}, with fp32 at batch {b} beside it")
        for dtype in ("fp32", "bf16"):
            for impl in ("batched", "naive"):
                plan.append((Case("daformer_m", 10, impl, dtype, b), s.bf16_probe_repeats))
    rows = []
    for case, repeats in plan:
        batch, note = fitting_batch(case, device)
        if note:
            case = case.with_(batch=batch)
        log(f"step: {case.name} ({repeats} repeats)")
        row = measure(case, device, repeats, warmup=s.warmup, inner=s.inner, peak_gflops=peaks.get(case.dtype))
        row["note"] = note
        rows.append(row)
        log(f"  {row['images_per_s']['median']:.1f} img/s (spread {row['images_per_s']['spread']:.0%}), "
            f"MFU {row['mfu'] if row['mfu'] is None else round(row['mfu'], 3)}")
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"rows": rows, "ratios": ratios(rows), "bf16_note": bf16_note}


def ratios(rows: list[dict]) -> list[dict]:
    """batched / naive images/s for every (keys, dtype, batch) measured both ways."""
    by = {(r["method"], r["tasks"], r["impl"], r["dtype"], r["batch"]): r for r in rows}
    out = []
    for (method, keys, impl, dtype, batch), row in by.items():
        naive = by.get((method, keys, "naive", dtype, batch))
        if impl == "batched" and naive:
            b, n = row["images_per_s"], naive["images_per_s"]
            out.append({"keys": keys, "dtype": dtype, "batch": batch, "batched": b["median"], "naive": n["median"],
                        "ratio": b["median"] / n["median"],
                        # the ratio's range if the two medians were each at the ends of their spreads
                        "ratio_min": b["min"] / n["max"], "ratio_max": b["max"] / n["min"]})
    return out
