"""reports/quickstart_methods.md from the runs quickstart_methods.sh made (results.json files only).

    python reports/quickstart_methods.py runs/quickstart-methods reports/quickstart_methods.md
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite.methods import METHODS  # noqa: E402

ORDERS = ("null", "seed:1", "seed:2")


def load_runs(root: Path) -> dict[tuple[str, str], dict]:
    runs = {}
    for path in sorted(root.glob("*/results.json")):
        result = json.loads(path.read_text())
        if result["status"] == "finished":
            order = result["config"]["scenario"]["class_order"]
            runs[(result["method"], "null" if order is None else str(order))] = result
    return runs


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def render(runs: dict[tuple[str, str], dict]) -> str:
    methods = [name for name in METHODS if any(m == name for m, _ in runs)]
    commits = sorted({r["provenance"]["git_commit"] or "unknown" for r in runs.values()})
    any_run = next(iter(runs.values()))
    lines = [
        "# Every method on the quickstart (digits, B0, 5 tasks of 2 classes)",
        "",
        f"Produced by `bash reports/quickstart_methods.sh` at commit {', '.join(c[:12] for c in commits)}, "
        f"with torch {any_run['provenance']['torch']}, on a shared 2-core CPU machine (no GPU). One run per method "
        "and class order: `python suite/run.py configs/quickstart.yaml --in-process --set method=M "
        "--set scenario.class_order=O` (joint also `--set train.epochs=40`: trained to convergence, as an upper "
        "bound should be). Orders: the natural order, `seed:1`, `seed:2`. The paper-style report, built from the same "
        "results files with `python -m suite.report runs/quickstart-methods --out reports/example --style paper` "
        "(with its LaTeX compiled to report.pdf), is in [example/](example/README.md).",
        "",
        "Top-1 accuracy (%), mean ± std over the 3 class orders:",
        "",
        "| Method | Avg incremental | Last | Wall time per run (s) |",
        "|---|--:|--:|--:|",
    ]
    for name in methods:
        mine = [runs[(name, o)] for o in ORDERS if (name, o) in runs]
        lines.append(f"| {METHODS[name].label} | {mean_std([r['avg_incremental_accuracy'] for r in mine])} | "
                     f"{mean_std([r['last_accuracy'] for r in mine])} | "
                     f"{statistics.median(r['timings']['total_s'] for r in mine):.0f} |")
    lines += ["", "Per order, avg / last, and each task's accuracy right after it was trained (the diagonal "
              "of the accuracy matrix: that task's test images, classified among every class seen so far, "
              "so chance is 50, 25, 17, 12.5 and 10 for tasks 1 to 5):", "",
              "| Method | " + " | ".join(ORDERS) + " |", "|---" * (len(ORDERS) + 1) + "|"]
    for name in methods:
        cells = []
        for order in ORDERS:
            run = runs.get((name, order))
            if run is None:
                cells.append("–")
                continue
            diagonal = " ".join(f"{row[-1]:.0f}" for row in run["acc_matrix"])
            cells.append(f"{run['avg_incremental_accuracy']:.2f} / {run['last_accuracy']:.2f} (diag. {diagonal})")
        lines.append(f"| {METHODS[name].label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.write_text(render(load_runs(root)))
    print(f"wrote {out}")
