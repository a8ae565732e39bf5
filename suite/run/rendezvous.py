"""A test-only rendezvous: a run halts at a named point so that a test can kill or signal it there.

With SUITE_PAUSE_AT set to a point and SUITE_PAUSE_DIR to a directory, the first time the run
reaches that point it writes SUITE_PAUSE_DIR/reached (its pid) and waits until SUITE_PAUSE_DIR/go
exists, or LIMIT_S passes. Points: "task:N" (task N recorded: its checkpoint, log.jsonl and
results.json written) and "checkpoint:N" (a mid-task checkpoint of task N written and logged);
tasks count from 1, as the console does. The first time only: a worker Ray Train restarts, or a run
resumed with the same environment, goes on. Without SUITE_PAUSE_AT (every real run) it is one
environment lookup.

Why: tests of kills and signals used to train tens of epochs so that a kill polled from outside
would land inside a task, which depends on the machine being slow enough.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from suite.atomic import write_text

POINT, DIR = "SUITE_PAUSE_AT", "SUITE_PAUSE_DIR"
REACHED, GO = "reached", "go"
LIMIT_S = 600.0


def pause_at(point: str) -> None:
    """Halt here if the environment names this point (see the module's docstring)."""
    if os.environ.get(POINT) != point:
        return
    where = Path(os.environ[DIR])
    if (where / REACHED).exists():
        return
    write_text(where / REACHED, str(os.getpid()))
    deadline = time.monotonic() + LIMIT_S
    while not (where / GO).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def variables() -> dict:
    """The rendezvous variables this process has, for Ray Train's workers (their environment comes
    from the cluster, not from the driver)."""
    return {key: os.environ[key] for key in (POINT, DIR) if key in os.environ}
