"""glibc's allocator: the training step with the default malloc against the tuned one.

The tuned settings (`TUNED_MALLOC`: the suite's WORKER_ENV) keep freed memory in the heap instead of
returning it (and page-faulting it back in) every step. glibc reads these at start-up only, so
each setting is measured in fresh processes, alternated to spread the drift of a shared machine.
OpenMP's wait policy is this process's (recorded in each probe's context).
"""
from __future__ import annotations

from bench.perf.child import run_child
from bench.perf.environ import TUNED_MALLOC
from bench.perf.markdown import num, part_section, span, table
from bench.perf.step import Case
from bench.perf.timing import summary


def compare(case, rounds: int, repeats: int, warmup: int = 1) -> dict:
    runs = {"default": [], "tuned": []}
    for _ in range(rounds):
        for name, env in (("default", {}), ("tuned", TUNED_MALLOC)):
            runs[name].append(run_child(case, repeats, warmup, env=env, unset=tuple(TUNED_MALLOC)))
    out = {"case": case.name, "tuned_env": TUNED_MALLOC, "rounds": rounds}
    for name, probes in runs.items():
        samples = [s for p in probes for s in p["images_per_s"]["samples"]]
        out[name] = {"images_per_s": summary(samples), "probes": probes}
    out["speedup"] = out["tuned"]["images_per_s"]["median"] / out["default"]["images_per_s"]["median"]
    return out


def run_part(s) -> dict:
    return compare(Case("daformer_m", s.alloc_keys, batch=s.batch), s.alloc_rounds, s.alloc_repeats)


def section(res: dict) -> list[str]:
    return part_section("## 7. Allocator", res.get("allocator"), _body, key="default")


def _body(alloc: dict) -> list[str]:
    lines = [f"Step: {alloc['case']}, fresh processes alternated ({alloc['rounds']} rounds); tuned = "
             + " ".join(f"`{k}={v}`" for k, v in alloc["tuned_env"].items()), ""]
    lines += table(["allocator", "images/s", "range"],
                   [[k, num(alloc[k]["images_per_s"]["median"], 2), span(alloc[k]["images_per_s"], 2)]
                    for k in ("default", "tuned")])
    return lines + ["", f"tuned / default: {alloc['speedup']:.2f}×", ""]
