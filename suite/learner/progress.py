"""A run's progress, one line per epoch: its loss and throughput, the time elapsed and an ETA; inside a
long epoch, a line every train.progress_every seconds.

The ETA counts work, not epochs (suite/learner/work.py): an epoch weighs the images it trains, and the
evaluation and herding after a task the images they pass forward, so that later tasks' larger epochs
(their data with the memory), short finetuning epochs and the growing evaluation are foreseen.
"""
from __future__ import annotations

import time


def format_seconds(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """Counts the work done against the work planned (in trained images); the ETA assumes the rest
    goes at the rate so far."""

    def __init__(self, planned_work: float):
        self.planned = planned_work
        self.done = 0.0
        self.start = time.perf_counter()

    def add(self, work: float) -> None:
        """Work done between epochs (evaluation, herding)."""
        self.done += work

    def epoch_done(self, what: str, loss: float, images: int, seconds: float, work: float) -> str:
        """One more epoch done (`what` names it; `work`, its share of the plan): its line, `images`
        having taken `seconds`."""
        self.done += work
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(self.done, 1e-9) * max(self.planned - self.done, 0.0)
        return (f"{what}  loss {loss:.4f}  {images / max(seconds, 1e-9):,.0f} img/s  "
                f"elapsed {format_seconds(elapsed)}  eta {format_seconds(eta)}")


def batch_line(what: str, batch: int, batches: int, loss: float, images: int, seconds: float) -> str:
    """A line inside an epoch: batches done, the mean loss so far, the rate, the time the epoch has left.
    Plain lines rather than a progress bar (tqdm and the like): Ray job logs and redirected output are
    not terminals, and rank 0's lines reach them through the learner's log."""
    left = seconds / max(batch, 1) * (batches - batch)
    return (f"{what}  batch {batch}/{batches}  loss {loss:.4f}  {images / max(seconds, 1e-9):,.0f} img/s  "
            f"epoch eta {format_seconds(left)}")
