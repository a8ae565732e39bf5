"""Which autocast dtype to train in: bf16 where the hardware makes it fast, else fp32."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

import torch


@lru_cache(maxsize=1)
def cpu_has_amx() -> bool:
    """AMX (bf16 tile matmuls) from the kernel's CPU flags; False where they cannot be read."""
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """None means plain fp32 (autocast off)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    fast = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_amx()
    return torch.bfloat16 if fast else None
