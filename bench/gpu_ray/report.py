"""report.json's summary and report.md, from the measurements run.py recorded. Pure Python.

Every figure says where it comes from; one that a failed or skipped measurement leaves without
its inputs is reported as not measured, with the reason, and the others stand.
"""
from __future__ import annotations

import statistics
from dataclasses import replace

from bench.gpu_ray import analysis

PAIRS = (("ray-fp32-small", "inproc-fp32-small"), ("ray-bf16-large", "inproc-bf16-large"))


def _median(summary) -> float | None:
    return summary["median"] if isinstance(summary, dict) else None


def _probe(doc: dict, part: str = "probe") -> dict:
    return (doc["measurements"].get(part) or {}).get("probe") or {}


def step_rate(doc: dict, keys: int, dtype: str, batch: int, compiled: bool = False) -> float | None:
    """The bare step's median images/s for that case, if the probe measured it."""
    probe = _probe(doc, "step-compiled" if compiled else "probe")
    return next((_median(r["images_per_s"]) for r in probe.get("steps", [])
                 if (r["keys"], r["dtype"], r["batch"], r["compiled"]) == (keys, dtype, batch, compiled)), None)


def _runs(doc: dict):
    for part, rec in doc["measurements"].items():
        if "variant" in rec:
            yield part, rec


def pipeline_rows(doc: dict) -> list[dict]:
    rows = []
    for part, rec in _runs(doc):
        v = rec["variant"]
        for task in (rec.get("figures") or {}).get("tasks", []):
            main = task["train"]["steady_images_per_s"]
            eager = step_rate(doc, task["keys"], v["precision"], rec["batch"])
            row = {"part": part, "path": "in-process" if v["in_process"] else "Ray Train", "precision": v["precision"],
                   "compile": v["compile"], "batch": rec["batch"], "task": task["task"], "keys": task["keys"],
                   "warm_epochs": task["train"]["warm_epochs"], "first_epoch_s": task["train"].get("first_epoch_s"),
                   "steady_epoch_s": analysis.ratio(task["train"].get("epoch_images"), main),
                   "pipeline_images_per_s": main,
                   "step_images_per_s": eager, "pipeline_per_step": analysis.ratio(main, eager),
                   "finetune_images_per_s": task["finetune"]["steady_images_per_s"], "task_s": task["task_s"],
                   "other_s": task["other_s"]}
            if v["compile"]:
                compiled = step_rate(doc, task["keys"], v["precision"], rec["batch"], compiled=True)
                row.update(compiled_step_images_per_s=compiled, pipeline_per_compiled_step=analysis.ratio(main, compiled))
            rows.append(row)
    return rows


def ray_vs_in_process(doc: dict) -> list[dict]:
    out = []
    m = doc["measurements"]
    for ray_part, local_part in PAIRS:
        ray, local = m.get(ray_part) or {}, m.get(local_part) or {}
        if "figures" not in ray or "figures" not in local:
            continue
        for a, b in zip(ray["figures"]["tasks"], local["figures"]["tasks"]):
            r, i = a["train"]["steady_images_per_s"], b["train"]["steady_images_per_s"]
            out.append({"ray": ray_part, "in_process": local_part, "task": a["task"], "ray_images_per_s": r,
                        "in_process_images_per_s": i, "ratio": analysis.ratio(r, i),
                        "ray_task_s": a["task_s"], "in_process_task_s": b["task_s"],
                        "wall_s": (ray["wall_s"], local["wall_s"]),
                        "first_epoch_line_s": (ray.get("first_epoch_line_s"), local.get("first_epoch_line_s"))})
    return out


def packing(doc: dict) -> dict | None:
    m = doc["measurements"]
    runs = {k: m.get(k) or {} for k in ("pack-concurrent", "pack-sequential")}
    if not all(r.get("status") == "ok" for r in runs.values()):
        return None
    out = {}
    for k, r in runs.items():
        done = [t for t in r["trials"] if t["status"] == "finished"]
        out[k] = {"trials": len(done), "concurrency": r["spec"]["max_concurrent_trials"], "wall_s": r["wall_s"],
                  "trials_per_hour": len(done) * 3600 / r["wall_s"],
                  "median_learner_s": statistics.median(t["total_s"] for t in done) if done else None}
    c, s = out["pack-concurrent"], out["pack-sequential"]
    out["ratio"] = analysis.ratio(c["trials_per_hour"], s["trials_per_hour"])
    # long trials: throughput ~ trials sharing the GPU x how much slower each trains while sharing
    out["learner_time_ratio"] = analysis.ratio(c["concurrency"] * (s["median_learner_s"] or 0), c["median_learner_s"])
    return out


def loader(doc: dict) -> list[dict]:
    probe = _probe(doc)
    eager = [r for r in probe.get("steps", []) if not r["compiled"]]
    fastest = max(eager, key=lambda r: _median(r["images_per_s"]), default=None)
    paper = next((r for r in eager if (r["keys"], r["dtype"], r["batch"]) ==
                  (2, "fp32", doc["sizes"]["small_batch"])), None)
    rows = []
    for r in probe.get("loader", []):
        rate = _median(r["images_per_s"])
        rows.append({"num_workers": r["num_workers"], "batch": r["batch"], "images_per_s": rate,
                     "fastest_step": fastest and fastest["name"],
                     "per_fastest_step": analysis.ratio(rate, fastest and _median(fastest["images_per_s"])),
                     "paper_step": paper and paper["name"],
                     "per_paper_step": analysis.ratio(rate, paper and _median(paper["images_per_s"]))})
    return rows


def projections(doc: dict) -> dict:
    """The paper run from the fp32 batch-128 Ray run (its recipe), and from the bf16 large-batch
    one (another recipe: bf16, and the learning rate scales with the batch)."""
    out = {}
    sizes = doc["sizes"]
    for part, dtype in (("ray-fp32-small", "fp32"), ("ray-bf16-large", "bf16")):
        rec = doc["measurements"].get(part) or {}
        if len((rec.get("figures") or {}).get("tasks", [])) < 2:
            out[part] = {"error": f"{part}: no two measured tasks ({rec.get('status', 'not run')})"}
            continue
        batch = rec["batch"]
        keys = sizes["step_keys"] if batch == sizes["small_batch"] and dtype == "fp32" else (1, 2)
        rates = {k: step_rate(doc, k, dtype, batch) for k in keys}
        rates = {k: v for k, v in rates.items() if v}
        try:
            p = analysis.project(rec["figures"], rates, replace(analysis.PAPER, batch=batch))
        except (ValueError, KeyError, TypeError, ZeroDivisionError) as e:
            out[part] = {"error": f"{part}: {type(e).__name__}: {e} (step rates at {sorted(rates)} keys)"}
            continue
        out[part] = {**p, "step_rates": rates, "lines": analysis.projection_lines(p)}
    return out


def _met(value, goal) -> bool | None:
    return None if value is None else value >= goal


def targets(summary: dict) -> list[dict]:
    out = []
    for r in summary["ray_vs_in_process"]:
        out.append({"what": f"Ray Train ÷ in-process, {r['ray']} task {r['task']}", "goal": "≥ 0.95",
                    "value": r["ratio"], "met": _met(r["ratio"], 0.95)})
    pack = summary["packing"]
    out.append({"what": "Tune packing, trials/hour concurrent ÷ one at a time", "goal": "≥ 2.5×",
                "value": pack and pack["ratio"], "met": _met(pack and pack["ratio"], 2.5)})
    for r in summary["loader"]:
        out.append({"what": f"loader, {r['num_workers']} workers ÷ fastest bare step", "goal": "≥ 2×",
                    "value": r["per_fastest_step"], "met": _met(r["per_fastest_step"], 2.0)})
    return out


def summarize(doc: dict) -> dict:
    summary = {"pipeline": pipeline_rows(doc), "ray_vs_in_process": ray_vs_in_process(doc),
               "packing": packing(doc), "loader": loader(doc), "projection": projections(doc),
               "large_batch": _probe(doc).get("large_batch"), "max_batch": _probe(doc).get("max_batch")}
    summary["targets"] = targets(summary)
    return summary


def _f(x, fmt=",.0f", none="—") -> str:
    return none if x is None else format(x, fmt)


def markdown(doc: dict) -> str:
    s, env, sizes = doc["summary"], doc["environment"], doc["sizes"]
    out = ["# Ray on the GPU: the suite's pipeline, measured", "",
           f"Produced by: `{doc['command']}` ({doc['mode']}), started {doc['started']}, "
           f"{_f(doc.get('elapsed_s'), '.0f')} s.", "",
           "## Machine", "",
           f"- GPU: {env['gpu'] or 'none'}; {env['cores']} cores; Python {env['python']} ({env['executable']}); "
           f"load average at start {env['load_average']}; commit {env['git_commit']}",
           "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
           "- the probe's process: " + ", ".join(f"{k} {v}" for k, v in (_probe(doc).get("machine") or {}).items()
                                                if k in ("cpu_model", "torch", "torch_threads", "gpu", "cuda",
                                                         "fp32_matmul_precision")),
           "- Ray's requirements (core, default, train, tune) unmet here: "
           + ("; ".join(env["unmet_ray_requirements"]) or "none"),
           "- `pip check`: " + ("; ".join(env.get("pip_check") or []) or "nothing"), "",
           "## What ran", "",
           f"DAFormer-M, `{doc['preset']}` (embed 384, 5 ConViT blocks + 1 dual block), on synthetic 32×32 images: "
           f"{sizes['tasks']} tasks of {sizes['classes_per_task']} classes, {sizes['train_per_class']} training and "
           f"{sizes['test_per_class']} test images per class, memory {sizes['memory']}, {sizes['epochs']} epochs a "
           f"task + {sizes['finetune_epochs']} finetuning, data.num_workers {sizes['loader_workers']}, one worker. "
           f"Rates are the learner's epoch lines after each task's first epoch (it starts the loader's workers and "
           f"compiles); task 2 trains with the teacher and ASAM. Large batch: {s['large_batch']} "
           f"(cap {sizes['large_batch_cap']}; largest that fits: "
           f"{(s['max_batch'] or {}).get('batch', 'not probed')}).", "",
           "| measurement | status | wall s | budget s | command |", "|---|---|---|---|---|"]
    for part, rec in doc["measurements"].items():
        out.append(f"| {part} | {rec['status']}{': ' + rec['note'] if rec.get('note') else ''} | "
                   f"{_f(rec.get('wall_s'), '.0f')} | {_f(rec.get('budget_s'), '.0f')} | "
                   f"`{rec.get('command', '')[:160]}` |")
    out += ["", "## Targets", "", "| what | goal | measured | met |", "|---|---|---|---|"]
    out += [f"| {t['what']} | {t['goal']} | {_f(t['value'], '.2f')} | { {True: 'yes', False: 'no', None: 'not measured'}[t['met']] } |"
            for t in s["targets"]]
    out += ["", "## 1. Pipeline against the bare step", "",
            "| run | path | dtype | compile | batch | task (keys) | pipeline img/s | bare step img/s | ratio | "
            "compiled step img/s | finetune img/s | first / steady epoch s | task s | outside epochs s |",
            "|" + "---|" * 14]
    for r in s["pipeline"]:
        out.append(f"| {r['part']} | {r['path']} | {r['precision']} | {r['compile']} | {r['batch']} | {r['task']} | "
                   f"{_f(r['pipeline_images_per_s'])} (median of {r['warm_epochs']} epochs) | "
                   f"{_f(r['step_images_per_s'])} | {_f(r['pipeline_per_step'], '.2f')} | "
                   f"{_f(r.get('compiled_step_images_per_s'))} | {_f(r['finetune_images_per_s'])} | "
                   f"{_f(r['first_epoch_s'], '.2f')} / {_f(r['steady_epoch_s'], '.2f')} | "
                   f"{_f(r['task_s'], '.1f')} | {_f(r['other_s'], '.1f')} |")
    out += ["", "The bare step (bench/perf/step.py) is one forward and backward, no optimiser, no loader; the "
            "pipeline adds the loader, MixUp, AdamW, and from task 2 the teacher's forward and ASAM's second "
            "forward and backward. The first epoch's excess over a steady one is start-up: the loader's workers, "
            "and with train.compile the compilation.", "", "## 2. Ray Train ÷ in-process", "",
            "| pair | task | Ray img/s | in-process img/s | ratio | task s (Ray / in-process) | "
            "launch → first epoch s | wall s |", "|" + "---|" * 8]
    for r in s["ray_vs_in_process"]:
        out.append(f"| {r['ray']} / {r['in_process']} | {r['task']} | {_f(r['ray_images_per_s'])} | "
                   f"{_f(r['in_process_images_per_s'])} | {_f(r['ratio'], '.3f')} | "
                   f"{_f(r['ray_task_s'], '.1f')} / {_f(r['in_process_task_s'], '.1f')} | "
                   f"{' / '.join(_f(x, '.1f') for x in r['first_epoch_line_s'])} | "
                   f"{' / '.join(_f(x, '.0f') for x in r['wall_s'])} |")
    out += ["", "## 3. Tune packing", ""]
    p = s["packing"]
    if p:
        for k in ("pack-concurrent", "pack-sequential"):
            out.append(f"- {k}: {p[k]['trials']} trials, {p[k]['concurrency']} at a time: {p[k]['wall_s']:.0f} s, "
                       f"{p[k]['trials_per_hour']:.0f} trials/hour; median learner time {_f(p[k]['median_learner_s'], '.1f')} s")
        out += [f"- trials/hour, concurrent ÷ one at a time: **{_f(p['ratio'], '.2f')}×** (start-up included: "
                f"these trials are short)",
                f"- long-trial estimate, concurrency × learner time alone ÷ learner time shared: "
                f"{_f(p['learner_time_ratio'], '.2f')}× (assumes the trials overlapped while they trained)"]
    else:
        out.append("Not measured: " + "; ".join(f"{k} {(doc['measurements'].get(k) or {}).get('status', 'not run')}"
                                                for k in ("pack-concurrent", "pack-sequential")))
    out += ["", "## 4. The loader alone against the step", "",
            "| data.num_workers | batch | loader img/s | ÷ fastest bare step | ÷ fp32 step, 2 keys, small batch |",
            "|---|---|---|---|---|"]
    out += [f"| {r['num_workers']} | {r['batch']} | {_f(r['images_per_s'])} | {_f(r['per_fastest_step'], '.2f')} "
            f"({r['fastest_step']}) | {_f(r['per_paper_step'], '.2f')} |" for r in s["loader"]]
    out += ["", "Timed alone (bench/perf/loader.py: crop, flip, RandAugment on 32×32 images); beside a training "
            "step it shares the cores.", "", "## 5. The paper run, projected", ""]
    for part, p in s["projection"].items():
        if "error" in p:
            out += [f"- {part}: not computed: {p['error']}", ""]
            continue
        proto = p["protocol"]
        out += [f"### From {part}: {proto['tasks']} tasks × {proto['classes_per_task']} classes, "
                f"{proto['epochs']} epochs + {proto['finetune_epochs']} finetuning, batch {proto['batch']}: "
                f"**{p['total_h']:.1f} h**", "",
                "Each task's epoch at the rate measured in its regime (task 1 alone; tasks 2-10 as task 2, with "
                "teacher and ASAM), times the bare step's rate at the task's keys ÷ at the measured keys; the time "
                "outside epochs (herding, evaluation, checkpoint) scaled by the images they pass through. Step "
                "rates used: " + ", ".join(f"{k} keys {v:,.0f} img/s" for k, v in p["step_rates"].items()) + ".", "",
                "| task | keys | step scale (how) | epoch images | img/s | epoch s | main s | finetune s | "
                "outside s | task s |", "|" + "---|" * 10]
        out += [f"| {r['task']} | {r['keys']} | {r['step_scale']:.3f} ({r['step_rate']}) | {r['main_epoch_images']:,} | "
                f"{r['main_images_per_s']:,.0f} | {r['main_epoch_s']:.2f} | {r['main_s']:,.0f} | "
                f"{r['finetune_s']:,.0f} | {r['other_s']:.1f} | {r['task_s']:,.0f} |" for r in p["rows"]]
        out += ["", "```", *p["lines"], "```", ""]
    failed = [(k, r) for k, r in doc["measurements"].items() if r.get("status") not in ("ok", "skipped")]
    if failed:
        out += ["## Failed or stopped", ""]
        for k, r in failed:
            out += [f"### {k}: {r['status']} (exit {r.get('returncode')})", "", "```", *r.get("tail", []), "```", ""]
    return "\n".join(out) + "\n"
