"""perf.json (everything, samples included) and perf.md (the tables), both written atomically."""
from __future__ import annotations

import statistics
from pathlib import Path

from suite.atomic import write_json, write_text


def _f(x, digits=1) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _range(s: dict, digits=1) -> str:
    return f"{_f(s['min'], digits)}–{_f(s['max'], digits)} (±{s['spread'] * 50:.0f}%, n={s['n']})"


def _met(t: dict) -> str:
    return {True: "**met**", False: "**not met**", None: "n/a"}[t["met"]]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def markdown(res: dict) -> str:
    m, st = res["machine"], res["settings"]
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
    lines += _table(["target", "goal", "measured", "verdict", "note"],
                    [[t["name"], t["goal"], _f(t["value"], 2), _met(t), t["note"]] for t in res["targets"]])
    lines.append("")

    if isinstance(res.get("matmul"), dict):
        lines += ["## 1. Reference ceiling: dense matmul", ""]
        lines += _table(["dtype", "n", "GFLOP/s (median)", "range"],
                        [[r["dtype"], str(r["n"]), _f(r["gflops"]["median"]), _range(r["gflops"])] for r in res["matmul"].values()])
        lines.append("")

    steps = res.get("step")
    if isinstance(steps, dict):
        lines += ["## 2. Training step (forward + backward, no optimiser)", "",
                  "CIFAR preset (configs/model/cifar_dual.yaml: embed 384, 5 GPSA blocks + 1 task block, 12 heads, "
                  "patch 4, 32×32), 10 classes per task, `set_phase('main')` after the last task added. daformer_s "
                  f"and dytox after {st['tasks_fixed']} tasks. daformer_m's batched and naive blocks run on the same "
                  "model and batch, their samples interleaved. FLOPs counted by FlopCounterMode (naive rows count "
                  "their repeated work). MFU = achieved FLOP/s ÷ the part-1 matmul rate of the same dtype; "
                  "'MFU (adjacent)' divides each sample by a matmul burst timed right before and after it "
                  "(median over samples): on a shared machine it follows the load.", ""]
        lines += _table(["case", "batch", "images/s", "range", "GFLOP/image", "GFLOP/s", "MFU", "MFU (adjacent)", "note"],
                        [[r["name"], str(r["batch"]), _f(r["images_per_s"]["median"], 2), _range(r["images_per_s"], 2),
                          _f(r["flops_per_image"] / 1e9, 2), _f(r["achieved_gflops"]), _f(r["mfu"], 3),
                          (f"{r['mfu_adjacent']['median']:.3f} ({r['mfu_adjacent']['min']:.2f}–{r['mfu_adjacent']['max']:.2f})"
                           if r.get("mfu_adjacent") else "—"), r.get("note") or ""]
                         for r in steps["rows"]])
        lines += ["", "Dual-block implementations on the same model: `batched` = suite.models.daformer as it is, "
                  "`naive` = the published per-key block (bench.perf.naive). 'paired' = median and range of the ratios of "
                  "adjacent samples; 'FLOPs b / a' = how much more work b does (the speed-up a rewrite can reach at "
                  "equal efficiency).", ""]
        lines += _table(["a / b", "keys", "dtype", "batch", "a img/s", "b img/s", "ratio of medians", "paired ratio",
                         "FLOPs b / a"],
                        [[f"{r['a']} / {r['b']}", str(r["keys"]), r["dtype"], str(r["batch"]), _f(r["a_images_per_s"], 2),
                          _f(r["b_images_per_s"], 2), f"{r['ratio']:.2f}×",
                          f"{r['paired']['median']:.2f}× ({r['ratio_min']:.2f}–{r['ratio_max']:.2f})",
                          f"{r['flops_b_over_a']:.2f}"] for r in steps["ratios"]])
        if steps.get("bf16_note"):
            lines += ["", f"bf16: {steps['bf16_note']}."]
        lines.append("")

    lines += _compile_section(res.get("compile"))
    ray = res.get("ray")
    lines += ["## 3. Ray Train overhead", ""]
    for name in ("matmul", "step"):
        if not isinstance(res.get(name), dict) and res.get(name):
            lines[-2:-2] = [f"Part {name}: {res[name]}", ""]
    if isinstance(ray, dict) and ray.get("small"):
        lines += ["Each row is a fresh process. `TorchTrainer` rows: a private local Ray started as "
                  "`suite.distributed.cluster.init_ray` does (dashboard on, the suite's WORKER_ENV), 1 worker with "
                  f"all {ray['cpus']} CPUs, the step timed inside Ray Train's TrainingThread after "
                  "`torch.set_num_threads(cpus)` as suite/distributed/train.py does. In-process rows: the same "
                  "environment (WORKER_ENV + the variant's), no Ray. Variants: `nice0` = `RAY_worker_niceness=0` "
                  "for the raylet (Ray starts workers at nice 15 otherwise); `passive` = `OMP_WAIT_POLICY=PASSIVE` "
                  "in the worker; `threads1` = `torch.set_num_threads(1)`.", ""]
        for part in ("small", "cifar"):
            block = ray.get(part)
            if not block:
                continue
            lines += [f"Step: {block['case']}", ""]
            lines += _table(["where", "images/s", "range", "÷ in-process default", "thread", "nice", "threads", "OMP env"],
                            [[r["where"], _f(r["images_per_s"]["median"]), _range(r["images_per_s"]),
                              f"{r['vs_in_process_default']:.2f}", r["context"]["thread"].split("(")[0],
                              str(r["context"]["niceness"]), str(r["context"]["torch_threads"]),
                              " ".join(f"{k}={v}" for k, v in r["context"]["env"].items() if k.startswith(("OMP", "GOMP")))]
                             for r in block["rows"]])
            lines.append("")
        lines += findings(ray)
        lines += _background(ray.get("background"))
    else:
        lines += [f"Not measured: {ray or 'skipped'}", ""]

    cont = res.get("contention")
    if isinstance(cont, dict) and cont.get("rows"):
        lines += [f"### OpenMP wait policy under a controlled competitor ({cont['case']})", "",
                  f"Fresh processes pinned to CPUs {cont['cpus']} (host: {cont['host_cpus']} CPUs); 'competitor' = "
                  "one busy-looping process (nice 0) pinned to the second of those CPUs.", ""]
        lines += _table(["competitor", "OMP_WAIT_POLICY", "thread", "intra-op threads", "malloc", "nice",
                         "images/s", "range"],
                        [["yes" if r["competitor"] else "no", r["omp_wait_policy"],
                          "non-main" if r["in_thread"] else "main", str(r.get("threads", 2)),
                          r.get("malloc", "glibc default"), str(r.get("nice", 0)), _f(r["images_per_s"]["median"]),
                          _range(r["images_per_s"])] for r in cont["rows"]])
        lines.append("")
    elif cont:
        lines += [f"OpenMP contention test: {cont}", ""]

    loader = res.get("loader")
    lines += ["## 4. Data pipeline", ""]
    if isinstance(loader, dict) and loader.get("runs"):
        lines += [f"IndexedImages + the CIFAR preset's train transform ({', '.join(loader['runs'][0]['transform'])}) "
                  f"on synthetic 32×32 images, batch {loader['runs'][0]['batch']}, timed alone. "
                  f"Step rate compared: {loader['step_case']} = {_f(loader['step_images_per_s']['median'], 2)} images/s.", ""]
        lines += _table(["num_workers", "images/s", "range", "÷ step rate", "first batch (s)"],
                        [[str(r["num_workers"]), _f(r["images_per_s"]["median"]), _range(r["images_per_s"]),
                          f"{r['images_per_s']['median'] / loader['step_images_per_s']['median']:.1f}×",
                          _f(r["first_batch_s"]["median"], 2)] for r in loader["runs"]])
        lines.append("")
    else:
        lines += [f"Not measured: {loader or 'skipped'}", ""]

    sweep = res.get("sweep")
    lines += ["## 5. Sweep packing", ""]
    if isinstance(sweep, dict):
        first = sweep["runs"][0]
        lines += [f"The real sweep command (`python suite/run.py --sweep FILE`, Ray start included) on quickstart's "
                  f"model and data, axis `seed` ({first['trials']} trials), {first['epochs']} epochs per task and 1 "
                  "finetuning epoch; one trial at a time against several at once (bench/perf/packing.py).", ""]
        lines += _table(["trials at once", "resources per trial", "wall (s)", "trials/hour"],
                        [[str(r["concurrency"]), ", ".join(f"{k.split('.')[-1]} {v:g}" for k, v in r["set"].items()
                                                          if k.startswith("ray.") and not isinstance(v, bool)),
                          _f(r["wall_s"]), _f(r["trials_per_hour"])] for r in sweep["runs"]])
        lines += ["", f"Trials per hour, {sweep['runs'][-1]['concurrency']} at once ÷ 1 at a time: "
                      f"{sweep['ratio']:.2f}×", ""]
    else:
        lines += [f"Not measured: {sweep or 'skipped'}", ""]

    e2e = res.get("e2e")
    lines += ["## 6. End to end: quickstart", ""]
    if isinstance(e2e, dict) and e2e.get("runs"):
        lines += ["Each row one run, in launch order. 'first epoch line': seconds from launch until the learner's "
                  "first epoch line arrives (imports, data, Ray and the trainer starting, one epoch); 'after last "
                  "accuracy': seconds from the last task's accuracy line to exit (report, summary, shutdown); "
                  "img/s: medians of the learner's own per-epoch figures.", ""]
        lines += _table(["command", "extra environment", "wall (s)", "first epoch line (s)", "train img/s",
                         "finetune img/s", "after last accuracy (s)"],
                        [[f"`{r['command']}`", " ".join(f"{k}={v}" for k, v in r["env"].items()) or "—", _f(r["wall_s"]),
                          _f(r.get("first_epoch_line_s")), _f(r.get("train_images_per_s_median"), 0),
                          _f(r.get("finetune_images_per_s_median"), 0),
                          _f(r["wall_s"] - r["last_accuracy_line_s"]) if r.get("last_accuracy_line_s") else "—"]
                         for r in e2e["runs"]])
        by = {}
        for r in e2e["runs"]:
            by.setdefault((r["in_process"], tuple(sorted(r["env"].items()))), []).append(r["wall_s"])
        lines += ["", "Medians: " + "; ".join(
            f"{'--in-process' if k[0] else 'Ray'}{' ' + ' '.join(f'{a}={b}' for a, b in k[1]) if k[1] else ''}: "
            f"{statistics.median(v):.1f} s (n={len(v)})" for k, v in by.items())]
        lines.append("")
    else:
        lines += [f"Not measured: {e2e or 'skipped'}", ""]

    alloc = res.get("allocator")
    lines += ["## 7. Allocator", ""]
    if isinstance(alloc, dict) and alloc.get("default"):
        lines += [f"Step: {alloc['case']}, fresh processes alternated ({alloc['rounds']} rounds); tuned = "
                  + " ".join(f"`{k}={v}`" for k, v in alloc["tuned_env"].items()), ""]
        lines += _table(["allocator", "images/s", "range"],
                        [[k, _f(alloc[k]["images_per_s"]["median"], 2), _range(alloc[k]["images_per_s"], 2)]
                         for k in ("default", "tuned")])
        lines += ["", f"tuned / default: {alloc['speedup']:.2f}×", ""]
    else:
        lines += [f"Not measured: {alloc or 'skipped'}", ""]

    lines += _accuracy_section(res.get("accuracy"))
    if res.get("errors"):
        lines += ["## Errors", ""] + [f"- {k}: {v}" for k, v in res["errors"].items()] + [""]
    return "\n".join(lines)


def _accuracy_section(part) -> list[str]:
    lines = ["## 8. bf16 against fp32: quickstart accuracy", ""]
    if not isinstance(part, dict) or not part.get("runs"):
        return lines + [f"Not measured: {part or 'skipped'}", ""]
    lines += [f"`{part['command']}`, seeds {', '.join(map(str, part['seeds']))}, in launch order; accuracies in %.", ""]
    lines += _table(["seed", "precision", "avg incremental accuracy", "last accuracy", "wall (s)"],
                    [[str(r["seed"]), r["precision"], _f(r["avg_incremental_accuracy"], 2), _f(r["last_accuracy"], 2),
                      _f(r["wall_s"])] for r in part["runs"]])
    lines.append("")
    for metric, label in (("avg_incremental_accuracy", "Average incremental accuracy"), ("last_accuracy", "Last accuracy")):
        m = part["summary"][metric]
        lines.append(f"- {label}: fp32 mean {m['fp32']['mean']:.2f}, bf16 mean {m['bf16']['mean']:.2f}; bf16 − fp32 "
                     f"{m['difference']:+.2f} points (per seed: {', '.join(f'{d:+.2f}' for d in m['paired'])}); "
                     f"seed range (run-to-run noise) {m['noise']:.2f}")
    return lines + [""]


def _background(bg) -> list[str]:
    if not bg:
        return []
    top = ", ".join(f"{t['process']} {t['cores'] * 100:.1f}%" for t in bg["top"])
    return [f"Ray's own CPU use with nothing to train (a 1-worker TorchTrainer whose worker sleeps, every "
            f"process on the machine sampled for {bg['window_s']:.0f} s): **{bg['cores_used'] * 100:.0f}% of one core** "
            f"({bg['cores_used'] / bg['cpus']:.0%} of the machine's {bg['cpus']} CPUs), spread over {bg['processes']} "
            f"processes; the busiest: {top}. On a machine this small that share is taken from training whatever "
            "the worker does.", ""]


def _compile_section(part) -> list[str]:
    lines = ["### torch.compile on and off (`train.compile`)", ""]
    if not isinstance(part, dict):
        return lines + [f"Not measured: {part or 'failed (see Errors)'}", ""]
    lines += ["The same step eager and compiled (inductor, `fallback_random`), samples interleaved. "
              "'first call' = the compiled step's first call, compiling into an empty inductor cache: a "
              "run pays it once per model shape (every task that adds a key or a head recompiles).", ""]
    lines += _table(["case", "eager img/s", "compiled img/s", "compiled / eager (paired)", "first call (s)",
                     "MFU eager", "MFU compiled"],
                    [[r["case"], f"{_f(r['eager']['median'])} ({_range(r['eager'])})", f"{_f(r['compiled']['median'])} ({_range(r['compiled'])})",
                      f"{r['paired']['median']:.2f}× ({r['paired']['min']:.2f}–{r['paired']['max']:.2f})",
                      _f(r["first_call_s"]), _f(r.get("mfu_eager"), 3), _f(r.get("mfu_compiled"), 3)]
                     for r in part["rows"]])
    return lines + [""]


def findings(ray: dict) -> list[str]:
    """Ratios the investigation rests on, computed from the small-step rows."""
    rows = {r["where"]: r["images_per_s"]["median"] for r in ray["small"]["rows"]}

    def ratio(a, b):
        return f"{rows[a] / rows[b]:.2f}" if a in rows and b in rows else "—"

    d, p = "in-process default", "in-process passive"
    out = ["Ratios on the quickstart-size step (medians):", "",
           f"- non-main thread ÷ main thread, default OpenMP: {ratio(d + ', non-main thread', d + ', main thread')}; "
           f"with OMP_WAIT_POLICY=PASSIVE: {ratio(p + ', non-main thread', p + ', main thread')}",
           f"- nice 15 ÷ nice 0 (non-main thread), default: {ratio(d + ', non-main thread, nice 15', d + ', non-main thread')}; "
           f"passive: {ratio(p + ', non-main thread, nice 15', p + ', non-main thread')}",
           f"- OMP_WAIT_POLICY=PASSIVE ÷ default, main thread: {ratio(p + ', main thread', d + ', main thread')}",
           f"- 1 intra-op thread ÷ {ray['cpus']} threads, main thread: {ratio('in-process threads1, main thread', d + ', main thread')}",
           f"- TorchTrainer: nice0 ÷ default {ratio('TorchTrainer nice0', 'TorchTrainer default')}, passive ÷ default "
           f"{ratio('TorchTrainer passive', 'TorchTrainer default')}, nice0+passive ÷ default "
           f"{ratio('TorchTrainer nice0+passive', 'TorchTrainer default')}", ""]
    return out


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
