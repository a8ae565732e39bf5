"""End to end: wall time of the quickstart (`python suite/run.py configs/quickstart.yaml`), Ray start
included, and the same with `--in-process`; each also with extra environment variables (the fix
the Ray investigation points to) so the gain is measured on the real command. The default runs
get this environment without the OpenMP wait-policy and malloc variables: as a user runs it."""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from suite.perf.environ import MALLOC, THREAD_POLICY, child_env

REPO = Path(__file__).resolve().parents[2]
BASE_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1"}


def quickstart_command(output_basedir: str, in_process: bool) -> list[str]:
    cmd = [sys.executable, "suite/run.py", "configs/quickstart.yaml", "--output-basedir", output_basedir]
    return cmd + (["--in-process"] if in_process else [])


def quickstart_wall(in_process: bool, env: dict | None = None, timeout: float = 1800) -> dict:
    """Seconds from launch to exit of one quickstart run in a fresh temporary output directory."""
    with tempfile.TemporaryDirectory(prefix="perf-e2e-") as tmp:
        cmd = quickstart_command(tmp, in_process)
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, env=child_env({**BASE_ENV, **(env or {})}, unset=THREAD_POLICY + MALLOC),
                              capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"quickstart failed (exit {done.returncode}): {done.stderr.strip()[-800:]}")
    shown = " ".join(["python", *cmd[1:3], "--output-basedir", "<tmp>", *cmd[5:]])
    return {"command": shown, "in_process": in_process, "env": env or {}, "wall_s": wall}
