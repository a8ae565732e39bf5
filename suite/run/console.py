"""The end-of-run printout: the accuracy table per task and where the files are."""
from __future__ import annotations

from pathlib import Path


def accuracy_table(results: dict) -> str:
    lines = ["task  classes  top-1   top-5   per-task top-1"]
    seen = 0
    for t, (acc, acc5, row) in enumerate(zip(results["acc"], results["acc_top5"], results["acc_matrix"])):
        seen += len(results["classes_per_task"][t])
        lines.append(f"{t + 1:4d}  {seen:7d}  {acc:6.2f}  {acc5:6.2f}  " + " ".join(f"{a:5.1f}" for a in row))
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"
    lines.append(f"average incremental accuracy {fmt(results['avg_incremental_accuracy'])}, "
                 f"last {fmt(results['last_accuracy'])}, forgetting {fmt(results['forgetting'])}, "
                 f"bwt {fmt(results['bwt'])}")
    validation = results.get("validation")
    if validation:
        lines.append(f"on the validation split ({validation['images']} held-out training images): average incremental "
                     f"accuracy {fmt(validation['avg_incremental_accuracy'])}, last {fmt(validation['last_accuracy'])}")
    return "\n".join(lines)


def print_summary(results: dict, run_dir: Path, report_dir: Path | None = None) -> None:
    print(f"\n{results['method']} on {results['dataset']} {results['setting']}")
    print(accuracy_table(results))
    print(f"results:  {Path(run_dir) / 'results.json'}")
    if report_dir is not None:
        print(f"report:   {report_dir}")
