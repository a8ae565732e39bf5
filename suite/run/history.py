"""A run's history beside its results, written by rank 0 as the run goes:

    log.jsonl   one JSON record per line: "epoch" (task, phase, epoch, loss, lr at its end, img/s, seconds),
                "task" (its accuracies, `val_acc` too with a validation split, memory, parameters,
                seconds), "checkpoint" (a mid-task one: task, phase, epochs done) and "resume" (where
                a resumed run took up; the epochs after its checkpoint are then logged again)
    train.log   the console's lines

and the same records to the run's experiment trackers (logging.backend, suite/run/trackers.py).
Tasks and epochs count from 1, as the console does. Losses are those of rank 0's batches. On an
object store both files are written at every task's end and checkpoint (suite/run/storage.LineLog).
"""
from __future__ import annotations

import json
import time

from suite.run.storage import LineLog, join
from suite.schema import LOG

TRAIN_LOG = "train.log"


def task_metrics(task: int, history) -> dict:
    """A finished task's accuracies, as its log.jsonl record and its report to Ray carry them:
    top-1 and top-5 on the test split, and top-1 on the validation split (`val_acc`) where there is one."""
    record = {"event": "task", "task": task + 1, "acc": history.acc[-1], "acc_top5": history.acc_top5[-1]}
    if history.val_acc:
        record["val_acc"] = history.val_acc[-1]
    return record


class RunHistory:
    def __init__(self, location: str, trackers=()):
        self.log, self.text = LineLog(join(location, LOG)), LineLog(join(location, TRAIN_LOG))
        self.trackers = list(trackers)

    def record(self, event: dict) -> None:
        self.log.add(json.dumps({**event, "time": round(time.time(), 3)}))
        for tracker in self.trackers:
            tracker.log(event)

    def console(self, text: str) -> None:
        """The learner's log: printed, and kept in train.log."""
        print(text, flush=True)
        self.text.add(text)

    def flush(self) -> None:
        self.log.flush()
        self.text.flush()

    def task_done(self, task: int, history) -> None:
        self.record({**task_metrics(task, history), "acc_row": history.acc_matrix[-1],
                     "memory": history.memory_size[-1], "params": history.num_params[-1],
                     "skipped_batches": history.skipped_batches[-1], "seconds": history.per_task_s[-1]})
        self.flush()

    @staticmethod
    def checkpoint_record(learner) -> dict:
        """A mid-task checkpoint, as log.jsonl and the report to Ray carry it."""
        mid = learner.mid_task
        return {"event": "checkpoint", "task": learner.next_task + 1, "phase": mid.phase, "epochs_done": mid.epochs_done}

    def checkpointed(self, record: dict) -> None:
        """A mid-task checkpoint's record (checkpoint_record), kept at once."""
        self.record(record)
        self.flush()

    def resumed(self, learner) -> None:
        mid = learner.mid_task
        where = {"phase": mid.phase, "epochs_done": mid.epochs_done} if mid else {}
        self.record({"event": "resume", "next_task": learner.next_task + 1, **where})

    def close(self) -> None:
        """At the run's end, or its failure: the files complete, the trackers' runs ended."""
        self.flush()
        for tracker in self.trackers:
            tracker.close()
