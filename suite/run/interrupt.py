"""SIGTERM and SIGINT during a run: record `status: interrupted`, and how to resume, before exiting.

Slurm and Kubernetes stop a job with SIGTERM, a user with Ctrl-C (SIGINT). Inside a run either
becomes an `Interrupted` exception in the driver's main thread. The last finished task stays in
its checkpoint, and results.json says the run was interrupted instead of `running` for ever.
"""
from __future__ import annotations

import os
import shlex
import signal
from contextlib import contextmanager

from suite import schema
from suite.run.layout import RAY_JOB_MARK
from suite.run.storage import read_text_at, write_json_at

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """A stop signal, raised where the main thread was (BaseException: no `except Exception` eats it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum  # what a shell reports for a process a signal ended


@contextmanager
def stop_signals_raise():
    def handler(signum, frame):
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def resume_command(argv: list[str]) -> str:
    """The command line that continues this run: resubmitted as a Ray job when it ran as one."""
    job = ["ray", "job", "submit", "--working-dir", ".", "--"] if RAY_JOB_MARK in os.environ else []
    return shlex.join([*job, "python", "suite/run.py", *(a for a in argv if a != "--resume"), "--resume"])


def mark_interrupted(results: str, signal_name: str, resume: str) -> str:
    """Set the run's results.json to `interrupted` (atomically) and return that status; a run that
    finished before the signal took effect stays `finished`; `none` when no task had finished."""
    text = read_text_at(results)
    if text is None:
        return "none"
    doc = schema.parse(text, results)
    if doc.get("status") == schema.FINISHED:
        return schema.FINISHED
    write_json_at(results, schema.interrupted(doc, signal_name, resume))
    return schema.INTERRUPTED
