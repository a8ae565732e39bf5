"""A controlled test of what the Ray investigation found: CPU contention, OpenMP's wait policy,
non-main threads, niceness and the malloc arena.

The quickstart-size step runs in fresh processes pinned to two CPUs, in the main thread or in a
non-main thread (as Ray Train V2 runs the user function), with OpenMP's default wait policy or
OMP_WAIT_POLICY=PASSIVE, with or without one busy-looping process pinned to one of those CPUs
(what Ray's own processes, or a colleague's job, are to a worker), at nice 0 or 15 (Ray's worker
niceness), and with glibc malloc as it comes, with one arena, or tuned. Meaningful where the two
CPUs are otherwise idle (the device machine); on a shared 2-core machine nothing is idle.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from bench.perf.child import run_child
from bench.perf.environ import MALLOC, THREAD_POLICY, TUNED_MALLOC
from bench.perf.markdown import num, span, table
from bench.perf.step import Case

CASE = Case("daformer_m", 5, batch=16, preset="quickstart")
BUSY = "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass"
MALLOC_ENVS = {"glibc default": {}, "MALLOC_ARENA_MAX=1": {"MALLOC_ARENA_MAX": "1"},
               "tuned (WORKER_ENV)": TUNED_MALLOC}


@dataclass(frozen=True)
class Config:
    competitor: bool
    policy: str  # "default" | "PASSIVE"
    in_thread: bool
    threads: int = 2
    malloc: str = "glibc default"
    nice: int = 0


def configs(extended: bool) -> list[Config]:
    out = [Config(comp, pol, th) for comp in (False, True) for pol in ("default", "PASSIVE") for th in (False, True)]
    if extended:  # what makes a non-main thread slower on an idle machine, and what niceness costs
        out += [Config(False, "default", th, threads=1) for th in (False, True)]
        out += [Config(False, "default", th, malloc=m) for m in list(MALLOC_ENVS)[1:] for th in (False, True)]
        out += [Config(True, "PASSIVE", False, nice=15), Config(True, "PASSIVE", True, nice=15)]
    return out


def run_part(s, log, extended: bool = True) -> dict:
    repeats, inner = s.contention_repeats, s.contention_inner
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return {"skipped": "fewer than 2 CPUs"}
    pinned = f"{cpus[0]},{cpus[1]}"
    rows = []
    plan = configs(extended)
    for competitor in (False, True):
        busy = None
        if competitor:
            busy = subprocess.Popen([sys.executable, "-c", BUSY, str(cpus[1])])
            time.sleep(0.5)
        try:
            for cfg in (c for c in plan if c.competitor == competitor):
                env = {**MALLOC_ENVS[cfg.malloc], **({} if cfg.policy == "default" else {"OMP_WAIT_POLICY": cfg.policy})}
                # the default policy under contention runs ~100x slower: one step per sample
                n_inner = 1 if competitor and cfg.policy == "default" and cfg.threads > 1 else inner
                log(f"contention: {cfg}")
                r = run_child(CASE, repeats, 1, n_inner, threads=cfg.threads, in_thread=cfg.in_thread, nice=cfg.nice,
                              env=env, unset=THREAD_POLICY + MALLOC, cpus=pinned)
                rows.append({**asdict(cfg), "omp_wait_policy": cfg.policy, "images_per_s": r["images_per_s"],
                             "context": r["context"]})
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    return {"case": CASE.name, "cpus": pinned, "host_cpus": os.cpu_count(), "rows": rows}


def section(res: dict) -> list[str]:
    cont = res.get("contention")
    if isinstance(cont, dict) and cont.get("rows"):
        lines = [f"### OpenMP wait policy under a controlled competitor ({cont['case']})", "",
                 f"Fresh processes pinned to CPUs {cont['cpus']} (host: {cont['host_cpus']} CPUs); 'competitor' = "
                 "one busy-looping process (nice 0) pinned to the second of those CPUs.", ""]
        lines += table(["competitor", "OMP_WAIT_POLICY", "thread", "intra-op threads", "malloc", "nice",
                        "images/s", "range"],
                       [["yes" if r["competitor"] else "no", r["omp_wait_policy"],
                         "non-main" if r["in_thread"] else "main", str(r.get("threads", 2)),
                         r.get("malloc", "glibc default"), str(r.get("nice", 0)), num(r["images_per_s"]["median"]),
                         span(r["images_per_s"])] for r in cont["rows"]])
        return lines + [""]
    return [f"OpenMP contention test: {cont}", ""] if cont else []
