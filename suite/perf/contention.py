"""A controlled test of what the Ray investigation found: OpenMP's wait policy under CPU contention.

The quickstart-size step runs pinned to two CPUs with two intra-op threads, in the main thread
and in a non-main thread, with OpenMP's default wait policy and with OMP_WAIT_POLICY=PASSIVE;
first with nothing else on those CPUs, then with one busy-looping process pinned to one of them
(what Ray's own processes, or a colleague's job, are to a worker). Meaningful where the two CPUs
are otherwise idle (the device machine); on a shared 2-core machine "no competitor" is not idle.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from suite.perf.child import run_child
from suite.perf.environ import MALLOC, THREAD_POLICY
from suite.perf.step import Case

CASE = Case("daformer_m", 5, batch=16, preset="quickstart")
BUSY = "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass"


def run(repeats: int, inner: int, log) -> dict:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return {"skipped": "fewer than 2 CPUs"}
    pinned = f"{cpus[0]},{cpus[1]}"
    rows = []
    for competitor in (False, True):
        busy = None
        if competitor:
            busy = subprocess.Popen([sys.executable, "-c", BUSY, str(cpus[1])])
            time.sleep(0.5)
        try:
            for policy in ("default", "PASSIVE"):
                for in_thread in (False, True):
                    env = {} if policy == "default" else {"OMP_WAIT_POLICY": policy}
                    log(f"contention: competitor={competitor} policy={policy} in_thread={in_thread}")
                    r = run_child(CASE, repeats, 1, inner, threads=2, in_thread=in_thread, env=env,
                                  unset=THREAD_POLICY + MALLOC, cpus=pinned)
                    rows.append({"competitor": competitor, "omp_wait_policy": policy, "in_thread": in_thread,
                                 "images_per_s": r["images_per_s"], "context": r["context"]})
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    return {"case": CASE.name, "cpus": pinned, "host_cpus": os.cpu_count(), "rows": rows}
