"""What the figures were measured on: CPU model, cores, AMX, torch version, the device."""
from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

import torch

from bench.perf.environ import recorded


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def describe(device: torch.device) -> dict:
    flags = cpu_flags()
    info = {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "amx_bf16": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "avx512f": "avx512f" in flags,
        "avx2": "avx2" in flags,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "load_average_at_start": load_average(),
        "env": recorded(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["fp32_matmul_precision"] = torch.get_float32_matmul_precision()  # 'highest': no TF32
    return info
