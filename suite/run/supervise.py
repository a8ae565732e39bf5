"""The driver's watch over a Ray Train run: `fit()` in a thread of its own, so that the main thread
takes stop signals at once; a run whose rank 0 recorded an out-of-memory stopped without Train's
retries; a failure reduced to its root cause in one line (RunFailed)."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import ray
from ray.util.state import list_actors

from suite import schema
from suite.config import Config
from suite.run import footprint
from suite.run.interrupt import Interrupted
from suite.run.layout import collect_results, results_at
from suite.run.memory_kill import killed_for_memory
from suite.run.storage import is_uri

STATE_API_TRIES, STATE_API_TIMEOUT_S = 3, 10  # finding the Train controllers to stop (_stop_controllers)


def recorded_out_of_memory(cfg: Config, run_dir: Path, since: float) -> str | None:
    """The one line of an out-of-memory that rank 0 recorded in results.json since `since` (a local
    file; at a URI Train's retries run their course)."""
    path = Path(results_at(cfg, run_dir))
    if is_uri(str(path)) or not path.is_file() or path.stat().st_mtime < since:
        return None
    error = (schema.read(path)[0] or {}).get("error") or ""
    return error[len(footprint.OUT_OF_MEMORY_MARK):].strip() if error.startswith(footprint.OUT_OF_MEMORY_MARK) else None


def fit(trainer, cfg: Config, run_dir: Path, out_of_memory: str | None = None) -> dict:
    """Train; the run's results (copied into the run directory when they persist elsewhere), or
    RunFailed with the root cause in one line (`out_of_memory`, what to change, for a run Ray's
    memory monitor ended)."""
    failure = []

    def train() -> None:
        try:
            trainer.fit()
        except Exception as e:
            failure.append(e)

    # fit() waits inside Ray's C++ core, where Python cannot run a signal handler: in a thread of its
    # own, the main thread stays free to take SIGTERM or SIGINT (suite/run/interrupt.py) at once.
    thread = threading.Thread(target=train, name="ray-train-fit", daemon=True)
    started = time.time()
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
            recorded = recorded_out_of_memory(cfg, run_dir, started)
            if recorded:  # the same batches would run out again: no retry (Train would retry)
                _stop_controllers()
                thread.join(60)
                raise RunFailed(recorded, run_dir)
    except Interrupted:  # end the run before ray.shutdown() (see _stop_controllers)
        _stop_controllers()
        thread.join(60)
        raise
    if failure and killed_for_memory(failure[0]):
        raise RunFailed(f"{out_of_memory or 'out of memory'} (Ray's memory monitor killed a worker)", run_dir) from None
    if failure:
        raise RunFailed(_message(_root(failure[0])), run_dir) from None
    return collect_results(cfg, run_dir)


def _stop_controllers() -> None:
    """Kill this job's Train controllers, whose death ends their workers and fit()'s wait. A driver
    shut down while fit() still waits in its thread exits with code 1, not the signal's 128+N. The
    controller runs on the driver's node (Train places it there), so its pid is local; Ray's state
    API has no actor handles to pass to ray.kill(). The state API is asked again when it does not
    answer (its server is slow on a loaded machine)."""
    context = ray.get_runtime_context()
    actors = []
    for _ in range(STATE_API_TRIES):
        try:  # this Ray's address: with another Ray on the host, the state API cannot tell which is meant
            actors = list_actors(address=context.gcs_address, timeout=STATE_API_TIMEOUT_S, filters=[
                ("class_name", "=", "TrainController"), ("job_id", "=", context.get_job_id()),
                ("state", "=", "ALIVE")])
            break
        except Exception:  # noqa: BLE001 (the state API down): the caller's ray.shutdown() still ends the run
            time.sleep(1)
    for actor in actors:
        try:
            os.kill(actor.pid, signal.SIGKILL)
        except (OSError, TypeError):
            pass


class RunFailed(RuntimeError):
    def __init__(self, message: str, run_dir: Path):
        super().__init__(message)
        self.run_dir = run_dir


def _root(error: BaseException) -> BaseException:
    """The innermost cause of a Ray failure."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _message(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}"
