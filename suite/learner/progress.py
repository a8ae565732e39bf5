"""A run's progress, one line per epoch: its loss and throughput, the time elapsed and an ETA."""
from __future__ import annotations

import time


def _fmt_seconds(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """Counts the epochs done against those planned; the ETA assumes the rest take as long on average."""

    def __init__(self, planned_epochs: int):
        self.planned = planned_epochs
        self.done = 0
        self.start = time.perf_counter()

    def epoch_done(self, what: str, loss: float, images: int, seconds: float) -> str:
        """One more epoch done (`what` names it): its line, `images` having taken `seconds`."""
        self.done += 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.planned - self.done)
        return (f"{what}  loss {loss:.4f}  {images / max(seconds, 1e-9):,.0f} img/s  "
                f"elapsed {_fmt_seconds(elapsed)}  eta {_fmt_seconds(eta)}")
