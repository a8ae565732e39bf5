"""Compiled CIFAR step under inductor options: the suite's (`fallback_random`), plus coordinate-descent
tuning of the generated kernels, plus max-autotune (GEMM templates benchmarked). Eager for scale.

`python bench/experiments/inductor-options/ab.py --device cuda --out DIR [--case keys:dtype:batch]`;
writes DIR/ab.json and DIR/ab.md as each variant finishes (compiling can take minutes).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench.perf.machine import describe  # noqa: E402
from bench.perf.matmul import matmul_rate  # noqa: E402
from bench.perf.step import Case, Step, count_flops  # noqa: E402
from bench.perf.timing import summary, time_calls  # noqa: E402

VARIANTS = {
    "eager": None,
    "suite": {"fallback_random": True},
    "coordinate descent": {"fallback_random": True, "coordinate_descent_tuning": True},
    "max-autotune": {"fallback_random": True, "max_autotune": True, "coordinate_descent_tuning": True},
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", required=True)
    p.add_argument("--case", default="10:bf16:1024")
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--inner", type=int, default=5)
    args = p.parse_args()
    device = torch.device(args.device)
    keys, dtype, batch = args.case.split(":")
    case = Case("daformer_m", int(keys), dtype=dtype, batch=int(batch))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    peak = matmul_rate(dtype, device, 8192 if device.type == "cuda" else 1024, 5)["gflops"]["median"]
    flops = count_flops(case, device) / case.batch
    res = {"command": " ".join(sys.argv), "machine": describe(device), "case": case.name, "peak_gflops": peak,
           "gflop_per_image": flops / 1e9, "rows": []}
    for name, options in VARIANTS.items():
        step = Step(case, device)
        if options is not None:
            step.forward = torch.compile(step.model, options=options)
        start = time.perf_counter()
        step()
        first = time.perf_counter() - start
        s = time_calls(step, args.repeats, warmup=2, device=device, inner=args.inner)
        ips = summary([case.batch / x for x in s])
        res["rows"].append({"variant": name, "options": options, "first_call_s": first, "images_per_s": ips,
                            "mfu": flops * ips["median"] / 1e9 / peak})
        print(f"{name}: first call {first:.1f}s, {ips['median']:,.0f} img/s, MFU {res['rows'][-1]['mfu']:.3f}", flush=True)
        (out / "ab.json").write_text(json.dumps(res, indent=1))
        lines = [f"# Inductor options, {case.name} ({res['machine'].get('gpu') or res['machine']['cpu_model']})", "",
                 f"`{res['command']}`; median of {args.repeats} samples of {args.inner} steps each (not interleaved: "
                 "one compiled model at a time); MFU against the dense matmul rate measured in the same run "
                 f"({peak:,.0f} GFLOP/s).", "",
                 "| variant | inductor options | first call (s) | img/s | MFU |", "|---|---|---|---|---|"]
        lines += [f"| {r['variant']} | {r['options']} | {r['first_call_s']:.1f} | {r['images_per_s']['median']:,.0f} "
                  f"({r['images_per_s']['min']:,.0f}–{r['images_per_s']['max']:,.0f}) | {r['mfu']:.3f} |" for r in res["rows"]]
        (out / "ab.md").write_text("\n".join(lines) + "\n")
        del step
        torch.cuda.empty_cache() if device.type == "cuda" else None


if __name__ == "__main__":
    main()
