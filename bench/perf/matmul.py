"""Part 1, the reference ceiling: dense square matmul throughput per dtype, in GFLOP/s."""
from __future__ import annotations

from typing import Callable

import torch

from bench.perf.markdown import num, span, table
from bench.perf.timing import op_seconds, rates, summary

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_rate(dtype: str, device: torch.device, n: int, repeats: int, inner: int = 1) -> dict:
    """GFLOP/s of an n x n x n matmul (2n^3 FLOPs), `repeats` samples."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=gen).to(DTYPES[dtype])
    b = torch.randn(n, n, device=device, generator=gen).to(DTYPES[dtype])
    out = torch.empty(n, n, device=device, dtype=DTYPES[dtype])
    seconds = op_seconds(lambda: torch.mm(a, b, out=out), repeats, inner)
    return {"dtype": dtype, "device": str(device), "n": n,
            "gflops": summary([r / 1e9 for r in rates(seconds, 2.0 * n ** 3)])}


def ceiling_probe(dtype: str, device: torch.device, n: int, calls: int = 2):
    """A function returning the dense-matmul GFLOP/s of `calls` n x n products, now (for interleaving)."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=gen).to(DTYPES[dtype])
    b = torch.randn(n, n, device=device, generator=gen).to(DTYPES[dtype])
    out = torch.empty(n, n, device=device, dtype=DTYPES[dtype])

    def probe() -> float:
        (seconds,) = op_seconds(lambda: torch.mm(a, b, out=out), 1, calls)
        return 2.0 * n ** 3 / seconds / 1e9

    return probe


def run_part(s, device: torch.device, skip: dict, log: Callable[[str], None]) -> dict:
    dtypes = ("fp32",) if "bf16" in skip else ("fp32", "bf16")
    out = {}
    for dtype in dtypes:
        n = s.matmul_n if dtype == "fp32" or device.type == "cuda" else min(s.matmul_n, 1024)
        out[dtype] = matmul_rate(dtype, device, n, s.matmul_repeats)
        log(f"  matmul {dtype} n={n}: {out[dtype]['gflops']['median']:.1f} GFLOP/s")
    return out


def section(res: dict) -> list[str]:
    if not isinstance(res.get("matmul"), dict):
        return []
    lines = ["## 1. Reference ceiling: dense matmul", ""]
    lines += table(["dtype", "n", "GFLOP/s (median)", "range"],
                   [[r["dtype"], str(r["n"]), num(r["gflops"]["median"]), span(r["gflops"])] for r in res["matmul"].values()])
    return lines + [""]
