"""reports/parity/README.md and runs.json, rebuilt from the stored run records only."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from scipy import stats as scipy_stats

from bench.parity import release
from bench.parity.meta import machine_line
from bench.parity.wrapper import PATCHES


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "range": max(values) - min(values), "n": len(values)}


def welch_interval(ours: dict, release: dict, level: float = 0.90) -> tuple[float, float]:
    """The `level` confidence interval of mean(ours) − mean(release), unequal variances (Welch)."""
    va, vb = ours["std"] ** 2 / ours["n"], release["std"] ** 2 / release["n"]
    se = math.sqrt(va + vb)
    if se == 0:
        gap = ours["mean"] - release["mean"]
        return gap, gap
    df = (va + vb) ** 2 / (va ** 2 / (ours["n"] - 1) + vb ** 2 / (release["n"] - 1))
    half = float(scipy_stats.t.ppf(0.5 + level / 2, df)) * se
    gap = ours["mean"] - release["mean"]
    return gap - half, gap + half


def compare(records: list[dict], margin: float | None = None) -> list[dict]:
    """Per method: release and ours over seeds, ours - release, whether that gap lies within the
    seed spread (|gap| <= the larger of the two sides' seed ranges, max - min), and with a margin
    the equivalence test: two one-sided tests at 5% each, i.e. the 90% Welch interval of the gap
    inside ±margin."""
    rows = []
    for method in sorted({r["method"] for r in records}):
        row = {"method": method}
        for metric in ("avg_incremental_accuracy", "last_accuracy"):
            side = {impl: _stats([r[metric] for r in records if r["method"] == method and r["impl"] == impl
                                  and r["status"] == "finished"]) for impl in ("release", "ours")}
            entry = {"release": side["release"], "ours": side["ours"], "gap": None, "within_spread": None,
                     "ci90": None, "equivalent": None, "margin": margin}
            if side["release"] and side["ours"]:
                entry["gap"] = side["ours"]["mean"] - side["release"]["mean"]
                if min(side["release"]["n"], side["ours"]["n"]) > 1:
                    spread = max(side["release"]["range"], side["ours"]["range"])
                    entry["within_spread"] = abs(entry["gap"]) <= spread
                    entry["ci90"] = welch_interval(side["ours"], side["release"])
                    if margin is not None:
                        entry["equivalent"] = bool(-margin < entry["ci90"][0] and entry["ci90"][1] < margin)
            row[metric] = entry
        rows.append(row)
    return rows


def _ms(s: dict | None) -> str:
    if s is None:
        return "–"
    return f"{s['mean']:.2f} ± {s['std']:.2f} (range {s['range']:.2f}, n={s['n']})"


def _fmt(x, digits=2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _recipe_table(recipe: dict) -> list[str]:
    rows = [
        ("classes, tasks", f"{recipe['classes']} (first {recipe['classes']} sorted wnids, labels 0..{recipe['classes'] - 1}, "
                           f"in that order), {recipe['tasks']} tasks of {recipe['increment']} (B0)"),
        ("model", f"embed {recipe['embed_dim']}, {recipe['encoder_depth']} GPSA blocks + 1 task block "
                  f"(release: depth {recipe['encoder_depth'] + 1}, local_up_to_layer {recipe['encoder_depth']}), "
                  f"{recipe['num_heads']} heads, patch {recipe['patch_size']}, drop-path 0.1"),
        ("epochs", f"{recipe['epochs']} per task (first task too), balanced finetuning {recipe['finetune_epochs']}"),
        ("memory", f"{recipe['memory']} in total (global; per class = total // seen classes), iCaRL herding"),
        ("batch, lr", f"batch {recipe['batch_size']}; main lr {recipe['lr']} x {recipe['batch_size']}/512 = "
                      f"{recipe['lr'] * recipe['batch_size'] / 512:g} (tasks 2+: {recipe['incremental_lr']} x {recipe['batch_size']}/512 = "
                      f"{recipe['incremental_lr'] * recipe['batch_size'] / 512:g}), constant (no warm-up); finetuning lr "
                      f"{recipe['finetune_lr']} x {recipe['batch_size']}/512 = {recipe['finetune_lr'] * recipe['batch_size'] / 512:g}, constant"),
        ("data loading", f"{recipe['num_workers']} workers per run, both sides"),
    ]
    return ["| knob | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]


def _run_table(records: list[dict]) -> list[str]:
    lines = ["| method | implementation | seed | status | avg incremental | last | top-1 after each task | wall s | notes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["method"], r["impl"], r["seed"])):
        notes = []
        if r.get("config_file"):
            notes.append(f"config {r['config_file']}")
        if r.get("suite_dirty") and r["impl"] == "ours":
            notes.append("suite/ or configs/ had uncommitted changes")
        if r["status"] != "finished":
            notes.append("see its record for the log tail")
        acc = " / ".join(f"{a:.1f}" for a in r.get("acc", []))
        lines.append(f"| {r['method']} | {r['impl']} | {r['seed']} | {r['status']} | {_fmt(r.get('avg_incremental_accuracy'))} | "
                     f"{_fmt(r.get('last_accuracy'))} | {acc} | {_fmt(r.get('wall_s'), 0)} | {'; '.join(notes)} |")
    return lines


def _compare_table(rows: list[dict]) -> list[str]:
    lines = ["| method | metric | release | ours | ours − release | 90% interval | equivalent within ± margin | "
             "within seed spread |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for metric, label in (("avg_incremental_accuracy", "avg incremental"), ("last_accuracy", "last")):
            e = row[metric]
            within = {True: "yes", False: "**no**", None: "–"}[e["within_spread"]]
            ci = "–" if e.get("ci90") is None else f"[{e['ci90'][0]:.2f}, {e['ci90'][1]:.2f}]"
            equivalent = {True: f"**yes** (±{e.get('margin')})", False: f"no (±{e.get('margin')})",
                          None: "–"}[e.get("equivalent")]
            lines.append(f"| {row['method']} | {label} | {_ms(e['release'])} | {_ms(e['ours'])} | {_fmt(e['gap'])} | "
                         f"{ci} | {equivalent} | {within} |")
    return lines


def _chance_line(recipe: dict, records: list[dict]) -> str:
    """Chance per task, and how far above it the runs end (mean last accuracy over chance)."""
    chance = [100 / (recipe["increment"] * (t + 1)) for t in range(recipe["tasks"])]
    finished = [r for r in records if r.get("status") == "finished"]
    above = "; ".join(
        f"{impl}: {statistics.mean(r['last_accuracy'] for r in mine) / chance[-1]:.1f}x"
        for impl in ("release", "ours") if (mine := [r for r in finished if r["impl"] == impl]))
    return (f"Chance level on all classes seen after each task: {', '.join(f'{c:.1f}' for c in chance)} %. "
            f"Mean last accuracy over chance at the last task, all methods and seeds: {above or 'no run yet'}.")


def _timing_table(timing: dict | None) -> list[str]:
    if not timing:
        return ["Not measured in this report."]
    lines = ["| keys | batch | repeats | release ms/step (median) | ours ms/step (median) | release / ours | params release / ours |",
             "|---|---|---|---|---|---|---|"]
    for r in timing["rows"]:
        lines.append(f"| {r['keys']} | {r['batch']} | {r['repeats']} | {r['release_ms']:.0f} | {r['ours_ms']:.0f} | "
                     f"{r['ratio_release_over_ours']:.2f} | {r['release_params']:,} / {r['ours_params']:,} |")
    rss = f", peak RSS {timing['peak_rss_mib']:.0f} MiB" if timing.get("peak_rss_mib") else ""
    lines += ["", f"One process, interleaved (the two alternate, and alternate which goes first), "
                  f"{timing['threads']} torch thread(s){rss}."]
    if timing.get("note"):
        lines += ["", timing["note"]]
    return lines


def write(out: Path, records: list[dict], meta: dict, timing: dict | None) -> Path:
    rows = compare(records, meta.get("margin"))
    (out / "runs.json").write_text(json.dumps({"meta": meta, "comparison": rows, "runs": records,
                                               "step_timing": timing}, indent=1) + "\n")
    recipe = meta["recipe"]
    example = {(r["method"], r["impl"]): r["command"] for r in records if r.get("command")}
    text = [
        "# Release parity: the published DAFormer and DyTox beside our suite",
        "",
        f"Built by `python -m bench.parity` (bench/parity/) from the run records in `runs/`; every number "
        f"below is in `runs.json`. Our repository at commit `{meta['git_commit']}`"
        + (" with uncommitted changes under suite/ or configs/ (each run records its own state)" if meta["suite_dirty"] else "")
        + f"; report written {meta['written']}.",
        "",
        "Differences between the releases and our suite found while building this (recipe, data "
        "pipeline, schedule, bugs): [DIFFERENCES.md](DIFFERENCES.md).",
        "",
        "## Machine",
        "",
        f"{machine_line(meta['machine'])}. Shared with other work: wall times are indicative, not benchmarks.",
        "",
        "## Sources",
        "",
        "Release checkouts exported from git mirrors outside the project: `git --git-dir=MIRROR archive HEAD "
        "continual options mainDual.py train.sh | tar -x -C DIR` (DyTox: `main.py` in place of `mainDual.py`; "
        "a full archive fails on one missing blob, imagenet100_splits/train_100.txt), committed `__pycache__` "
        "folders deleted, `git rev-parse HEAD > DIR/.parity-source`.",
        "",
        *[f"- {name}: `{src['path']}`" + (f", commit `{src['commit']}`" if src.get("commit") else "")
          + f", content sha256 `{src['tree_sha256'][:16]}`" for name, src in meta["sources"].items()],
        f"- release venv: `{meta['release_python']}` ({meta['release_versions']})",
        f"- our venv: `{meta['ours_python']}` ({meta['ours_versions']})",
        "",
        "## Data",
        "",
        f"Tiny-ImageNet-100 (`{meta['data']['source']}`), every image resized once to 32x32 "
        f"({meta['data']['resize']}) and written in CIFAR-100's python-pickle layout to `{meta['data']['pack']}` "
        f"(`cifar-100-python/train`, `test`, `meta`; keys `data` uint8 (N, 3072) channel-major, `fine_labels`, "
        f"`filenames`, `batch_label`, meta `fine_label_names`; Python 2 strings as in CIFAR's files). "
        f"All 100 classes are packed (500 train / 50 test each), because both readers check for CIFAR-100's "
        f"100; labels are the sorted-wnid positions. The releases read it with `--data-set CIFAR` (continuum "
        f"1.2.7's CIFAR100 over torchvision's reader), ours with `data.name: cifar100`. Both learn the first "
        f"{recipe['classes']} labels in order, {recipe['tasks']} tasks (release `--max-task {recipe['tasks']}`, "
        f"ours `data.max_classes={recipe['classes']}`). Seeds change initialisation, augmentation and the "
        f"order in which each epoch reads the images (the release's through the wrapper's seeded `set_epoch`, "
        f"below); the class order is the same for every seed.",
        "",
        "## Recipe (identical on both sides)",
        "",
        *_recipe_table(recipe),
        "",
        "Per method, the rest is each release's own preset: DAFormer-M `options/model/cifar_dual.yaml` "
        "(MixUp 0.8 + label smoothing 0.1, ASAM rho 3 adaptive from task 1, BCE, auto-KD, divergence head 0.1, "
        "RandAugment rand-m9-mstd0.5-inc1, repeated augmentation x3); DyTox `options/model/cifar_dytox.yaml` (the same "
        "without MixUp and ASAM). Ours gets the matching keys (see each run's command).",
        "",
        "## Commands",
        "",
        "```",
        meta["benchmark_command"],
        "```",
        "",
        *[line for (method, impl), cmd in sorted(example.items())
          for line in (f"{method}, {impl} (one seed shown):", "", "```", " ".join(cmd), "```", "")],
        "Release flags beside the recipe:",
        "",
        *[f"- `{flag}`: {why}" for flag, why in release.FLAG_NOTES.items()],
        "",
        "## Runtime patches (releases)",
        "",
        "Applied by bench/parity/wrapper.py before the release's script runs (it is run with runpy; "
        "no file of theirs is edited or copied):",
        "",
        *[f"- {what}: {why}" for what, why in PATCHES],
        "",
        *[f"- {note}" for note in meta["release_environment"]],
        "",
        "## Runs",
        "",
        *_run_table(records),
        "",
        "## Release against ours",
        "",
        "Mean ± standard deviation over seeds (top-1 %, 0..100). Equivalence: two one-sided tests at 5% each, "
        "i.e. the 90% Welch interval of ours − release lies inside ± the margin, in points of accuracy. "
        + (f"The margin, {meta['margin']} points, was declared before the runs: {meta['margin_declared']}. "
           if meta.get("margin") is not None else "No margin was declared for these runs. ")
        + "The gap is within the seed spread when |ours − release| is at most the larger of the two sides' "
        "ranges (max − min over seeds).",
        "",
        *_compare_table(rows),
        "",
        _chance_line(recipe, records),
        "",
        "## Step timing: the release's DAFormer model against ours",
        "",
        "CIFAR preset (embed 384, 5 GPSA blocks + 1 dual block, 12 heads, patch 4, 32x32), fp32, "
        "forward + backward + AdamW step, the release with one key per task (K tasks), ours `daformer_m` "
        "with K keys and `model.out_proj: false` (bench/parity/steptime.py).",
        "",
        *_timing_table(timing),
        "",
    ]
    path = out / "README.md"
    path.write_text("\n".join(text))
    return path
