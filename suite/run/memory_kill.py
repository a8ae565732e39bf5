"""A worker that Ray's memory monitor kills (it does so near a node's memory limit, before torch's
allocator fails): recognised, and the run ended rather than retried. A module of its own, light
to import: Train's controller process unpickles the callback, and suite.run.ray_train would bring
the whole learner into it."""
from __future__ import annotations

import ray
from ray.train import ControllerError, UserCallback

MEMORY_MONITOR_WORDS = "running low on memory"  # in Ray's error for what its memory monitor killed


class KilledForMemory(RuntimeError):
    """Ray's memory monitor killed a worker (raised in Train's controller, see StopOnMemoryKill)."""


class StopOnMemoryKill(UserCallback):
    """Ends the run when Ray's memory monitor kills a worker, instead of letting Train retry it
    `ray.max_failures` times: the same batches would run out of memory again. Train's controller
    calls this after each poll that found worker errors; a ControllerError raised here is not
    retried (nor logged with a traceback), and fit() turns it into the run's one line."""

    def after_exception(self, run_context, worker_exceptions: dict) -> None:
        killed = [rank for rank, error in worker_exceptions.items() if killed_for_memory(error)]
        if killed:
            raise ControllerError(KilledForMemory(f"Ray's memory monitor killed worker(s) of rank {killed}"))


def killed_for_memory(error: BaseException | None) -> bool:
    """Whether Ray's memory monitor ended the run or a worker (it kills a worker near the node's
    limit). Train reports that as a worker's failed health check, or, when it killed the controller
    or StopOnMemoryKill ended the run, as a controller error; either wraps the cause."""
    while error is not None:
        if isinstance(error, (ray.exceptions.OutOfMemoryError, KilledForMemory)) or MEMORY_MONITOR_WORDS in str(error):
            return True
        error = (getattr(error, "health_check_failure", None) or getattr(error, "controller_failure", None)
                 or error.__cause__)
    return False
