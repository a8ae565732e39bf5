"""Part 2: the step cases of one run, their images/s and MFU, and the batched/naive ratios.

fp32 always; bf16 autocast in full where bf16 is fast (a GPU, or a CPU whose bf16 matmul is not
far slower than fp32). On a CPU without native bf16 (no AMX / AVX512-BF16: bf16 matmuls are
emulated, tens of times slower) only a probe runs: daformer_m at 10 keys, batched and naive, at
a small batch, with fp32 at the same batch beside it. On a GPU daformer_m at 10 keys also runs at
`Settings.large_batch` (at batch 128 bf16 ran barely faster than fp32 on an H200).

Its targets: fp32 MFU, batched ÷ naive at 10 and 50 keys, bf16 batched ÷ fp32 naive at 10 keys.
"""
from __future__ import annotations

import gc
from pathlib import Path
from typing import Callable, Optional

import torch

from bench.perf.markdown import num, span, table
from bench.perf.matmul import ceiling_probe
from bench.perf.settings import Settings
from bench.perf.step import IMPLS, Case, measure
from bench.perf.timing import summary
from bench.perf.verdict import figures, target
from suite.methods import METHODS

# Peak resident memory of a batch-128 CIFAR step grows by about 2.5 MB per key per image (the
# per-key activations of the dual block, naive slightly more than batched): measured 18 GB at
# 50 keys. Cases that would not fit in the memory available now run at a smaller batch.
BYTES_PER_KEY_IMAGE = 2.7e6
COMPARISONS = (("batched", "naive"),)
BASE_BYTES = 2.5e9


def available_bytes(device: torch.device) -> float:
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return float(line.split()[1]) * 1024
    return float("inf")


def fitting_batch(case: Case, device: torch.device) -> tuple[int, str | None]:
    keys = METHODS[case.method].num_keys(None, case.tasks) or 1
    batch = case.batch
    while batch > 1 and BASE_BYTES + BYTES_PER_KEY_IMAGE * keys * batch > 0.85 * available_bytes(device):
        batch //= 2
    if batch == case.batch:
        return batch, None
    return batch, (f"batch {case.batch} would need about {(BASE_BYTES + BYTES_PER_KEY_IMAGE * keys * case.batch) / 1e9:.0f} GB; "
                   f"{available_bytes(device) / 1e9:.0f} GB available: measured at batch {batch}")


def groups(s: Settings, dtype: str, batch: int) -> list[list[Case]]:
    """Cases measured together: daformer_m batched and naive on one model, interleaved."""
    out = [[Case("daformer_m", keys, impl, dtype, batch) for impl in IMPLS] for keys in s.keys]
    out += [[Case("daformer_s", s.tasks_fixed, "batched", dtype, batch)], [Case("dytox", s.tasks_fixed, "batched", dtype, batch)]]
    return out


def bf16_is_fast(matmul: dict, device: torch.device) -> bool:
    if device.type == "cuda":
        return True
    fp32, bf16 = matmul.get("fp32"), matmul.get("bf16")
    return bool(fp32 and bf16 and bf16["gflops"]["median"] >= 0.5 * fp32["gflops"]["median"])


def run_part(s: Settings, device: torch.device, peaks: dict[str, float], res: dict, skip: dict,
             log: Callable[[str], None]) -> dict:
    """`peaks`: the matmul part's GFLOP/s by dtype; `res`: the run so far (its matmul part says whether bf16 is fast)."""
    matmul = res.get("matmul") if isinstance(res.get("matmul"), dict) else {}
    return run_steps(s, device, peaks, with_bf16="bf16" not in skip, bf16_fast=bf16_is_fast(matmul, device), log=log)


def run_steps(s: Settings, device: torch.device, peaks: dict[str, float], with_bf16: bool, bf16_fast: bool,
              log: Callable[[str], None]) -> dict:
    def repeats_of(group):
        return s.heavy_repeats if group[0].tasks >= 50 else s.repeats

    plan = [(g, repeats_of(g)) for g in groups(s, "fp32", s.batch)]
    bf16_note = None
    if with_bf16 and bf16_fast:
        plan += [(g, repeats_of(g)) for g in groups(s, "bf16", s.batch)]
    elif with_bf16:
        b = s.bf16_probe_batch
        bf16_note = (f"bf16 is emulated on this CPU (no AMX / AVX512-BF16; bf16 matmul far below fp32): "
                     f"bf16 measured only as a probe, daformer_m 10 keys at batch {b}, with fp32 at batch {b} beside it")
        for dtype in ("fp32", "bf16"):
            plan.append(([Case("daformer_m", 10, impl, dtype, b) for impl in ("batched", "naive")], s.bf16_probe_repeats))
    if s.large_batch:
        dtypes = ("fp32", "bf16") if with_bf16 and bf16_fast else ("fp32",)
        plan += [([Case("daformer_m", 10, impl, dtype, s.large_batch) for impl in IMPLS], s.repeats) for dtype in dtypes]
    probes = {}
    rows = []
    for group, repeats in plan:
        batch, note = fitting_batch(group[-1], device)
        if note:
            group = [c.with_(batch=batch) for c in group]
        dtype = group[0].dtype
        # an emulated bf16 has no meaningful ceiling (autocast keeps part of the step in fp32)
        peak = peaks.get(dtype) if dtype == "fp32" or bf16_fast else None
        if peak and dtype not in probes:
            probes[dtype] = ceiling_probe(dtype, device, s.matmul_n)
        log(f"step: {' | '.join(c.name for c in group)} ({repeats} repeats, interleaved)")
        measured = measure(group, device, repeats, warmup=s.warmup, inner=s.inner, peak_gflops=peak,
                           ceiling=probes.get(dtype) if peak else None)
        for row in measured:
            notes = [n for n in (note, None if peak else "no MFU: bf16 emulated") if n]
            row["note"] = "; ".join(notes) or None
            rows.append(row)
            adj = row["mfu_adjacent"]
            log(f"  {row['name']}: {row['images_per_s']['median']:.2f} img/s (spread {row['images_per_s']['spread']:.0%}), "
                f"MFU {_r(row['mfu'])}, adjacent-ceiling MFU {_r(adj and adj['median'])}")
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"rows": rows, "ratios": ratios(rows), "bf16_note": bf16_note}


def _r(x):
    return None if x is None else round(x, 3)


def ratios(rows: list[dict]) -> list[dict]:
    """a / b images/s for every (keys, dtype, batch) measured both ways, for each of COMPARISONS.

    The r-th samples of implementations measured together were taken next to each other, so
    their ratios are paired: `paired` is the median and range of those."""
    by = {(r["method"], r["tasks"], r["impl"], r["dtype"], r["batch"]): r for r in rows}
    out = []
    for a, b in COMPARISONS:
        for (method, keys, impl, dtype, batch), row in by.items():
            other = by.get((method, keys, b, dtype, batch))
            if impl != a or other is None:
                continue
            x, y = row["images_per_s"], other["images_per_s"]
            paired = summary([p / q for p, q in zip(x["samples"], y["samples"])])
            out.append({"a": a, "b": b, "keys": keys, "dtype": dtype, "batch": batch, "a_images_per_s": x["median"],
                        "b_images_per_s": y["median"], "ratio": x["median"] / y["median"], "paired": paired,
                        "ratio_min": paired["min"], "ratio_max": paired["max"],
                        "flops_b_over_a": other["flops_per_image"] / row["flops_per_image"]})
    return out


def section(res: dict) -> list[str]:
    steps, st = res.get("step"), res["settings"]
    if not isinstance(steps, dict):
        return []
    lines = ["## 2. Training step (forward + backward, no optimiser)", "",
             "CIFAR preset (configs/model/cifar_dual.yaml: embed 384, 5 GPSA blocks + 1 task block, 12 heads, "
             "patch 4, 32×32), 10 classes per task, `set_phase('main')` after the last task added. daformer_s "
             f"and dytox after {st['tasks_fixed']} tasks. daformer_m's batched and naive blocks run on the same "
             "model and batch, their samples interleaved. FLOPs counted by FlopCounterMode (naive rows count "
             "their repeated work). MFU = achieved FLOP/s ÷ the part-1 matmul rate of the same dtype; "
             "'MFU (adjacent)' divides each sample by a matmul burst timed right before and after it "
             "(median over samples): on a shared machine it follows the load.", ""]
    lines += table(["case", "batch", "images/s", "range", "GFLOP/image", "GFLOP/s", "MFU", "MFU (adjacent)", "note"],
                   [[r["name"], str(r["batch"]), num(r["images_per_s"]["median"], 2), span(r["images_per_s"], 2),
                     num(r["flops_per_image"] / 1e9, 2), num(r["achieved_gflops"]), num(r["mfu"], 3),
                     (f"{r['mfu_adjacent']['median']:.3f} ({r['mfu_adjacent']['min']:.2f}–{r['mfu_adjacent']['max']:.2f})"
                      if r.get("mfu_adjacent") else "—"), r.get("note") or ""]
                    for r in steps["rows"]])
    lines += ["", "Dual-block implementations on the same model: `batched` = suite.models.daformer as it is, "
              "`naive` = the published per-key block (bench.perf.naive). 'paired' = median and range of the ratios of "
              "adjacent samples; 'FLOPs b / a' = how much more work b does (the speed-up a rewrite can reach at "
              "equal efficiency).", ""]
    lines += table(["a / b", "keys", "dtype", "batch", "a img/s", "b img/s", "ratio of medians", "paired ratio",
                    "FLOPs b / a"],
                   [[f"{r['a']} / {r['b']}", str(r["keys"]), r["dtype"], str(r["batch"]), num(r["a_images_per_s"], 2),
                     num(r["b_images_per_s"], 2), f"{r['ratio']:.2f}×",
                     f"{r['paired']['median']:.2f}× ({r['ratio_min']:.2f}–{r['ratio_max']:.2f})",
                     f"{r['flops_b_over_a']:.2f}"] for r in steps["ratios"]])
    if steps.get("bf16_note"):
        lines += ["", f"bf16: {steps['bf16_note']}."]
    return lines + [""]


def _row(rows, method, tasks, impl, dtype, batch=None) -> Optional[dict]:
    for r in rows:
        if (r["method"], r["tasks"], r["impl"], r["dtype"]) == (method, tasks, impl, dtype) and \
                (batch is None or r["batch"] == batch):
            return r
    return None


def targets(results: dict) -> list[dict]:
    out = []
    machine = results["machine"]
    steps = figures(results, "step")
    rows = steps.get("rows", [])
    main_batch = results["settings"]["batch"]

    fp32 = [r for r in rows if r["dtype"] == "fp32" and r["batch"] == main_batch and r.get("mfu") is not None]
    if fp32:
        ref = _row(rows, "daformer_m", 10, "batched", "fp32", main_batch) or fp32[0]
        adj = ref.get("mfu_adjacent")
        # on a shared machine the part-1 ceiling is one moment's; the adjacent bursts follow the load
        value = adj["median"] if adj else ref["mfu"]
        how = (f"against the matmul bursts adjacent to each sample ({adj['min']:.2f}–{adj['max']:.2f}); "
               f"against the part-1 ceiling {ref['mfu']:.2f}") if adj else "against the part-1 ceiling"
        others = ", ".join(f"{r['method']} {r['tasks']}{'' if r['impl'] == 'batched' else ' ' + r['impl']}: "
                           f"{(r.get('mfu_adjacent') or {}).get('median', r['mfu']):.2f}" for r in fp32 if r is not ref)
        out.append(target("fp32 MFU", "≥ 0.65", value, 0.65, f"{ref['name']}, {how}. Other rows: {others}"))
    else:
        out.append(target("fp32 MFU", "≥ 0.65", None, 0.65, "no fp32 step measured"))

    ratio = {(r["keys"], r["dtype"], r["batch"]): r for r in steps.get("ratios", [])
             if (r["a"], r["b"]) == ("batched", "naive")}
    for keys, threshold in ((10, 1.2), (50, 1.3)):
        r = next((v for (k, d, b), v in ratio.items() if k == keys and d == "fp32" and b == main_batch), None)
        r = r or next((v for (k, d, b), v in ratio.items() if k == keys and d == "fp32"), None)
        note = "" if r is None else (f"batch {r['batch']}; ratio of medians {r['ratio']:.2f}, paired samples "
                                     f"{r['ratio_min']:.2f}–{r['ratio_max']:.2f}")
        out.append(target(f"batched / naive, {keys} keys, fp32", f"≥ {threshold}×", r and r["paired"]["median"], threshold,
                          note or f"{keys} keys not measured in this mode"))

    bf16_fast = machine.get("amx_bf16") or machine["device"].startswith("cuda")
    pairs = {}  # batch -> bf16 batched ÷ fp32 naive at 10 keys
    for r in rows:
        if (r["method"], r["tasks"], r["impl"], r["dtype"]) != ("daformer_m", 10, "batched", "bf16"):
            continue
        naive = _row(rows, "daformer_m", 10, "naive", "fp32", r["batch"])
        if naive:
            pairs[r["batch"]] = r["images_per_s"]["median"] / naive["images_per_s"]["median"]
    # on a GPU the largest batch measured (at batch 128 bf16 barely beats fp32 there); on a CPU the main one
    batch = max(pairs) if machine["device"].startswith("cuda") and pairs else \
        next((b for b in (main_batch, results["settings"]["bf16_probe_batch"]) if b in pairs), None)
    why = "" if bf16_fast else ("not applicable: this CPU has no amx_bf16 in /proc/cpuinfo "
                                "(bf16 is emulated here; the value is shown for the record)")
    measured = "; ".join(f"batch {b}: {v:.2f}×" for b, v in sorted(pairs.items())) or "not measured"
    out.append(target("bf16 batched / fp32 naive, 10 keys", "≥ 3× (AMX CPUs and GPUs only)",
                      pairs.get(batch), 3.0, " ".join(x for x in (f"{measured}.", why) if x),
                      applicable=bool(bf16_fast)))
    return out
