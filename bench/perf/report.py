"""perf.json (everything, samples included) and perf.md (the tables), both written atomically.

perf.md opens with the machine and the targets; each part's module writes its own section.
"""
from __future__ import annotations

from pathlib import Path

from bench.perf import (accuracy, allocator, compiled, contention, e2e, loader, matmul, packing, ray_overhead,
                        steps)
from bench.perf.markdown import num, table
from suite.atomic import write_json, write_text

# in the order of perf.md (compile's and contention's sections are subsections of the step and Ray parts)
BEFORE_RAY = (matmul, steps, compiled)
FROM_RAY = (ray_overhead, contention, loader, packing, e2e, allocator, accuracy)


def _met(t: dict) -> str:
    return {True: "**met**", False: "**not met**", None: "n/a"}[t["met"]]


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"# Speed benchmarks ({'quick' if res['quick'] else 'full'})", "",
             f"Produced by: `{res['command']}`  ", f"Started {res['started']}, took {res['elapsed_s'] / 60:.1f} min.", ""]
    lines += ["## Machine", "",
              f"- CPU: {m['cpu_model']}, {m['cores']} cores; torch {m['torch']} ({m['torch_threads']} intra-op threads), "
              f"Python {m['python']}",
              f"- AMX (amx_bf16 in /proc/cpuinfo): {'yes' if m['amx_bf16'] else 'no'}; AVX512-BF16: "
              f"{'yes' if m['avx512_bf16'] else 'no'}; AVX-512F: {'yes' if m['avx512f'] else 'no'}; AVX2: {'yes' if m['avx2'] else 'no'}",
              f"- Device of the steps: {m['device']}" + (f" ({m['gpu']}, CUDA {m['cuda']})" if m.get("gpu") else ""),
              "- Environment of this process (steps, loader): "
              + (", ".join(f"`{k}={v}`" for k, v in m["env"].items()) or "no OpenMP / malloc variables set"),
              f"- Load average (1, 5, 15 min) at start {m['load_average_at_start']}, at end {res.get('load_average_at_end')}"]
    if res.get("note"):
        lines.append(f"- Note: {res['note']}")
    lines += ["", "Figures are medians of repeated samples; the spread is (max − min) / median, shown as ±half of it, "
              "with n the number of samples. Every sample is in perf.json.", ""]

    lines += ["## Targets", ""]
    lines += table(["target", "goal", "measured", "verdict", "note"],
                   [[t["name"], t["goal"], num(t["value"], 2), _met(t), t["note"]] for t in res["targets"]])
    lines.append("")

    for part in BEFORE_RAY:
        lines += part.section(res)
    for name in ("matmul", "step"):  # sections only where they measured: a skip or failure is said here
        if not isinstance(res.get(name), dict) and res.get(name):
            lines += [f"Part {name}: {res[name]}", ""]
    for part in FROM_RAY:
        lines += part.section(res)
    if res.get("errors"):
        lines += ["## Errors", ""] + [f"- {k}: {v}" for k, v in res["errors"].items()] + [""]
    return "\n".join(lines)


def write(out_dir: Path, results: dict) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    return write_json(out_dir / "perf.json", results), write_text(out_dir / "perf.md", markdown(results))


def main(argv=None) -> int:
    """`python -m bench.perf.report DIR`: judge the targets again and rewrite DIR/perf.md from DIR/perf.json
    (after a change to the report's layout; no figure is measured or changed)."""
    import json
    import sys

    from bench.perf import targets

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.perf.report DIR", file=sys.stderr)
        return 2
    out = Path(args[0])
    results = json.loads((out / "perf.json").read_text())
    results["targets"] = targets.judge(results)
    write(out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
