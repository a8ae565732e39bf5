"""results.json files with known numbers, and readers of the Markdown tables built from them."""
from __future__ import annotations

import json
from pathlib import Path


def make_result(method="dytox", dataset="cifar100", n_tasks=10, avg=70.0, last=60.0, order="cifar100_order1",
                seed=0, status="finished", tasks_done=None, num_keys=None, memory_size=2000, num_classes=100,
                params=10_730_000, error=None):
    """A results.json whose acc curve is linear with the given average and last accuracy."""
    tasks_done = n_tasks if tasks_done is None else tasks_done
    first = 2 * avg - last if n_tasks > 1 else last
    acc = [first + (last - first) * i / max(n_tasks - 1, 1) for i in range(n_tasks)][:tasks_done]
    step = num_classes // n_tasks
    classes = [list(range(t * step, (t + 1) * step)) for t in range(n_tasks)]
    result = {
        "status": status, "method": method, "dataset": dataset, "setting": f"B0-{n_tasks}steps",
        "class_order": list(range(num_classes)), "classes_per_task": classes,
        "acc_matrix": [[a - 5 * (i - j) for j in range(i + 1)] for i, a in enumerate(acc)],
        "acc": acc, "acc_top5": [min(a + 20, 100) for a in acc],
        "avg_incremental_accuracy": sum(acc) / len(acc) if acc else None,
        "last_accuracy": acc[-1] if acc else None,
        "avg_incremental_accuracy_top5": sum(min(a + 20, 100) for a in acc) / len(acc) if acc else None,
        "last_accuracy_top5": min(acc[-1] + 20, 100) if acc else None,
        "forgetting": 5.0, "bwt": -5.0, "bwt_all_pairs": -3.0,
        "num_params": [params + 1000 * t for t in range(tasks_done)],
        "memory_size": [memory_size] * tasks_done,
        "timings": {"per_task_s": [1.0] * tasks_done, "total_s": float(tasks_done)},
        "config": {
            "method": method, "seed": seed,
            "data": {"name": dataset, "path": f"/data/{seed}"},
            "scenario": {"increment": step, "initial_increment": 0, "class_order": order},
            "model": {"num_keys": num_keys, "embed_dim": 384},
            "memory": {"size": memory_size, "per_class": None, "selection": "herding"},
            "train": {"epochs": 500},
            "ray": {"num_workers": 2, "use_gpu": seed % 2 == 0},
            "output": {"basedir": "runs", "name": f"{method}-{seed}"},
        },
        "provenance": {"python": "3.11", "seed": seed, "world_size": 2, "device": "cpu"},
    }
    if error:
        result["error"] = error
    return result


def write_run(root: Path, name: str, result: dict | str) -> Path:
    path = root / name / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result if isinstance(result, str) else json.dumps(result))
    return path


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def table_rows(markdown: str, label: str) -> list[list[str]]:
    """The cells of every Markdown row whose first cell is `label`."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split(" | ")] for line in markdown.splitlines()]
    return [cells for cells in rows if cells[0] == label]


def table_row(markdown: str, label: str) -> list[str]:
    rows = table_rows(markdown, label)
    assert rows, f"no row '{label}' in\n{markdown}"
    return rows[0]
