"""`python -m bench.perf.child CASE_JSON ...`: one probe in a fresh process, one JSON line out.

Variables that glibc or OpenMP read only at start-up (MALLOC_*, OMP_WAIT_POLICY) can only be
compared across processes: the allocator and Ray-overhead parts run their probes through here.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MARK = "PERF-PROBE "


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf.child")
    p.add_argument("case", help="the Case as JSON")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--inner", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads first (0: leave)")
    p.add_argument("--in-thread", action="store_true", help="run the step loop in a non-main thread")
    p.add_argument("--nice", type=int, default=0, help="os.nice(N) first, as Ray does to its workers")
    p.add_argument("--cpus", default="", help="pin to these CPUs (e.g. 0,1) before torch loads OpenMP")
    args = p.parse_args(argv)
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})

    from bench.perf.probe import probe, probe_in_thread
    from bench.perf.step import Case

    if args.nice:
        os.nice(args.nice)
    run = probe_in_thread if args.in_thread else probe
    result = run(Case(**json.loads(args.case)), args.repeats, args.warmup, args.inner, args.threads or None)
    print(MARK + json.dumps(result), flush=True)
    return 0


def run_child(case, repeats: int, warmup: int = 1, inner: int = 1, threads: int = 0, in_thread: bool = False,
              nice: int = 0, env: dict | None = None, unset: tuple[str, ...] = (), cpus: str = "",
              timeout: float = 3600) -> dict:
    """Run a probe in a fresh interpreter: this one's environment less `unset`, plus `env`."""
    from dataclasses import asdict

    cmd = [sys.executable, "-m", "bench.perf.child", json.dumps(asdict(case)), "--repeats", str(repeats),
           "--warmup", str(warmup), "--inner", str(inner), "--threads", str(threads), "--nice", str(nice)]
    if in_thread:
        cmd.append("--in-thread")
    if cpus:
        cmd += ["--cpus", cpus]
    from bench.perf.environ import child_env

    full_env = child_env(env, unset)
    done = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise RuntimeError(f"probe {' '.join(cmd[3:])} failed (exit {done.returncode}): {done.stderr.strip()[-800:]}")


if __name__ == "__main__":
    sys.exit(main())
