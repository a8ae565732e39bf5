"""A run's history beside its results, written by rank 0 as the run goes:

    log.jsonl   one JSON record per line: "epoch" (task, phase, epoch, loss, lr at its end, img/s, seconds),
                "task" (its accuracies, memory, parameters, seconds) and "resume" (where a resumed
                run took up; the epochs of an interrupted task are then logged again)
    train.log   the console's lines

Tasks and epochs count from 1, as the console does. Losses are those of rank 0's batches.
"""
from __future__ import annotations

import json
import time

from suite.run.storage import append_line_at, join

LOG = "log.jsonl"
TRAIN_LOG = "train.log"


class RunHistory:
    def __init__(self, location: str):
        self.log_path, self.text_path = join(location, LOG), join(location, TRAIN_LOG)

    def record(self, event: dict) -> None:
        append_line_at(self.log_path, json.dumps({**event, "time": round(time.time(), 3)}))

    def line(self, text: str) -> None:
        append_line_at(self.text_path, text)

    def console(self, text: str) -> None:
        """The learner's log: printed, and kept in train.log."""
        print(text, flush=True)
        self.line(text)

    def task_done(self, task: int, history) -> None:
        self.record({"event": "task", "task": task + 1, "acc": history.acc[-1], "acc_top5": history.acc_top5[-1],
                     "acc_row": history.acc_matrix[-1], "memory": history.memory_size[-1],
                     "params": history.num_params[-1], "skipped_batches": history.skipped_batches[-1],
                     "seconds": history.per_task_s[-1]})

    def resumed(self, next_task: int) -> None:
        self.record({"event": "resume", "next_task": next_task + 1})
