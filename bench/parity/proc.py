"""Run one command with its output in a log file."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from bench.perf.environ import TUNED_MALLOC

# Both sides run with the same environment. The allocator settings are the suite's (glibc's
# default cost up to 24% of a ViT step here); they must be set before a process starts. One
# compute thread per run: this 2-core machine is shared, and an OpenMP team of 2 beside any other
# busy process spin-waits (measured here: a release step at embed 128 took 5.2 s on 2 threads
# with one core taken, 1.9 s on 1).
ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    **TUNED_MALLOC,
    "HF_HUB_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def run(cmd: list[str], log: Path, cwd: Path) -> tuple[int, float]:
    """(exit code, wall seconds), the command's output in `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **ENV}
    start = time.perf_counter()
    with open(log, "w") as out:
        out.write("$ " + " ".join(cmd) + "\n\n")
        out.flush()
        rc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    return rc, time.perf_counter() - start


def tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.is_file() else ""
