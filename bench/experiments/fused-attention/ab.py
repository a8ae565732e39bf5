"""A/B of suite.models.attention: the same step with timm's GPSA (op by op) and the fused one.

`python bench/experiments/fused-attention/ab.py --device cuda --out DIR [--repeats N] [--inner N] CASE...`
with CASE = keys:dtype:batch (daformer_m, batched dual block). Samples interleaved; writes DIR/ab.json
and DIR/ab.md. The 'timm' step is built with fuse_attention patched out of the encoder.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import suite.models.encoder as encoder  # noqa: E402
from bench.perf.machine import describe  # noqa: E402
from bench.perf.matmul import matmul_rate  # noqa: E402
from bench.perf.step import Case, Step, count_flops  # noqa: E402
from bench.perf.timing import summary, time_calls  # noqa: E402


def ab(case: Case, device: torch.device, repeats: int, inner: int, peak: float) -> dict:
    fused = Step(case, device)
    with mock.patch.object(encoder, "fuse_attention", lambda m: m):
        timm = Step(case, device)
    steps = {"timm": timm, "fused": fused}
    for step in steps.values():
        time_calls(step, 2, warmup=1, device=device)
    seconds = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            seconds[name] += time_calls(step, 1, warmup=0, device=device, inner=inner)
    steps = timm = fused = None
    flops = {"fused": count_flops(case, device) / case.batch}
    with mock.patch.object(encoder, "fuse_attention", lambda m: m):
        flops["timm"] = count_flops(case, device) / case.batch
    out = {"case": case.name, "peak_gflops": peak}
    for name, s in seconds.items():
        ips = summary([case.batch / x for x in s])
        out[name] = {"images_per_s": ips, "flops_per_image": flops[name],
                     "mfu": flops[name] * ips["median"] / 1e9 / peak}
    out["paired"] = summary([t / f for t, f in zip(seconds["timm"], seconds["fused"])])
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--inner", type=int, default=5)
    p.add_argument("cases", nargs="+")
    args = p.parse_args()
    device = torch.device(args.device)
    dtypes = sorted({spec.split(":")[1] for spec in args.cases})
    peaks = {d: matmul_rate(d, device, 8192 if device.type == "cuda" else 1024, 5)["gflops"]["median"] for d in dtypes}
    rows = []
    for spec in args.cases:
        keys, dtype, batch = spec.split(":")
        rows.append(ab(Case("daformer_m", int(keys), dtype=dtype, batch=int(batch)), device, args.repeats,
                       args.inner, peaks[dtype]))
        r = rows[-1]
        print(f"{r['case']}: timm {r['timm']['images_per_s']['median']:.1f} img/s, fused "
              f"{r['fused']['images_per_s']['median']:.1f} img/s, fused / timm {r['paired']['median']:.2f}x", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"command": " ".join(sys.argv), "machine": describe(device), "peaks_gflops": peaks, "rows": rows}
    (out / "ab.json").write_text(json.dumps(res, indent=1))
    lines = [f"# timm GPSA vs fused GPSA ({res['machine'].get('gpu') or res['machine']['cpu_model']})", "",
             f"`{res['command']}`; medians of {args.repeats} interleaved samples of {args.inner} steps; "
             "MFU against the dense matmul rate of the dtype measured in the same run "
             f"({', '.join(f'{k} {v:,.0f} GFLOP/s' for k, v in peaks.items())}).", "",
             "| case | timm img/s | fused img/s | fused / timm (paired) | MFU timm | MFU fused |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['timm']['images_per_s']['median']:,.1f} | {r['fused']['images_per_s']['median']:,.1f} | "
              f"{r['paired']['median']:.2f}× ({r['paired']['min']:.2f}–{r['paired']['max']:.2f}) | "
              f"{r['timm']['mfu']:.3f} | {r['fused']['mfu']:.3f} |" for r in rows]
    (out / "ab.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
