"""One benchmark run as a Ray Train `TorchTrainer`: the learner inside `train_loop_per_worker`.

Ray sets up torch.distributed; the learner shards data, gathers the memory and evaluates across
workers by itself. After every task rank 0 hands Ray a checkpoint, which Ray persists under
RUN_DIR/ray/ and gives back after a worker failure or on --resume, then writes results.json.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import ray
import ray.train
import ray.train.torch
from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.util.state import list_actors
import torch

from suite.config import Config, from_dict
from suite.learner import dist
from suite.learner.learner import Learner
from suite.run import checkpoints, footprint
from suite.run import schema
from suite.run.history import RunHistory, task_metrics
from suite.run.interrupt import Interrupted
from suite.run.cluster import WORKER_ENV, cluster_nodes, init_ray, worker_runtime_env
from suite.run.layout import (
    CHECKPOINT, RAY_CHECKPOINT_FILE, checkpoint_name, collect_results, persist_dir, ray_storage, results_at,
)
from suite.run.memory_kill import StopOnMemoryKill, killed_for_memory
from suite.run.plan import image_side, prepare, worker_cpus
from suite.run.recorder import RunRecorder
from suite.run.rendezvous import pause_at
from suite.run.storage import is_uri
from suite.run.trackers import open_trackers

STATE_API_TRIES, STATE_API_TIMEOUT_S = 3, 10  # finding the Train controllers to stop (_stop_controllers)


def worker_loop(config: dict) -> None:
    cfg = from_dict(config["cfg"])
    # Train's LoggingConfig covers the `ray.train` loggers; one of its INFO lines per report comes
    # from a logger named by its file's path, which only the root logger's level holds back
    logging.getLogger().setLevel(cfg.ray.log_level)
    context = ray.train.get_context()
    rank = context.get_world_rank()
    torch.set_num_threads(max(1, round(config["threads"])))
    device = ray.train.torch.get_device()
    data, scenario = prepare(cfg)
    trackers = config["trackers"] if rank == 0 else []
    history = RunHistory(config["persist"], open_trackers(trackers, config["run_dir"], cfg.output.name, config["cfg"]))

    def on_epoch_end(record: dict) -> None:
        """Into log.jsonl (rank 0), and to Ray, hence the dashboard and, in a sweep, Tune."""
        if rank == 0:
            history.record(record)
        if worth_reporting(record["seconds"]):
            ray.train.report(record)

    def on_checkpoint(lrn: Learner) -> None:
        mid = lrn.mid_task
        report_checkpoint(lrn, {"event": "checkpoint", "task": lrn.next_task + 1, "phase": mid.phase,
                                "epochs_done": mid.epochs_done},
                          checkpoint_name(lrn.next_task, mid.phase, mid.epochs_done))
        if rank == 0:
            history.checkpointed(lrn)
            pause_at(f"checkpoint:{lrn.next_task + 1}")

    def on_task_end(task: int, lrn: Learner) -> None:
        """The checkpoint first: a task that log.jsonl or results.json calls done has one."""
        report_checkpoint(lrn, task_metrics(task, lrn.history), checkpoint_name(task))
        if rank == 0:
            history.task_done(task, lrn.history)
            recorder.write(lrn, schema.RUNNING)
            pause_at(f"task:{task + 1}")

    def report_checkpoint(lrn: Learner, metrics: dict, name: str) -> None:
        """A report with rank 0's checkpoint (every worker reports: it is collective)."""
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                checkpoints.save(Path(tmp) / RAY_CHECKPOINT_FILE, checkpoints.payload(lrn, cfg))
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=name)

    learner = Learner(cfg, data, scenario, device, log=history.console, on_epoch_end=on_epoch_end,
                      on_checkpoint=on_checkpoint)
    if resume_from(learner, cfg, config["resume_from"]) and rank == 0:
        history.resumed(learner)
    recorder = RunRecorder(cfg, scenario, config["persist"], context.get_world_size(), str(device))
    try:
        learner.run(on_task_end)
    except Exception as crash:
        error, text = footprint.failure_text(crash, cfg, image_side(cfg, data), scenario.num_tasks)
        if rank == 0:
            recorder.write(learner, schema.FAILED, text)  # the driver stops the run on an OutOfMemory (fit)
        if error is crash:
            raise
        raise error from None
    finally:
        history.close()
    if rank == 0:
        recorder.write(learner, schema.FINISHED)


def resume_from(learner: Learner, cfg: Config, local: str | None) -> bool:
    """Load the newest checkpoint: Ray Train's (after a worker failure, or on --resume), or `local`,
    one that the driver found on --resume (an in-process run's) when it is further into the run."""
    candidates = []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            candidates.append((checkpoint.path, checkpoints.load(Path(directory) / RAY_CHECKPOINT_FILE)))
    if local is not None:
        candidates.append((local, checkpoints.load(Path(local))))
    if not candidates:
        return False
    where, state = max(candidates, key=lambda item: checkpoints.progress(item[1]))
    checkpoints.restore(learner, cfg, state, where)
    learner.log(f"resumed {checkpoints.resumed_where(learner)} from {where}")
    return True


def worth_reporting(seconds: float) -> bool:
    """Whether an epoch goes to Ray: one that took at least Train's poll interval, on average over the
    workers (every worker must make the same choice: a report is collective). A report waits for the
    controller to take the one before, so shorter epochs reported each would wait for its polls; they
    stay in log.jsonl, and every task reaches Ray."""
    mean = dist.all_reduce_sum([seconds])[0] / dist.world_size()
    return mean >= float(WORKER_ENV["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"])


def scaling(cfg: Config, nodes: list[dict], reserved: float = 0.0):
    """ScalingConfig from `ray.*`; with no CPU count given, a share of the `nodes`' CPUs (plan.worker_cpus).

    `reserved` CPUs (a Tune trial's own process) are taken from the workers' share, so that a
    trial needs exactly workers x ray.cpus_per_worker: two 1-CPU trials fit on 2 CPUs. The
    intra-op thread count (returned) is the nominal per-worker count."""
    r = cfg.ray
    cpus = worker_cpus(r, nodes)
    resources = {"CPU": cpus - reserved / r.num_workers}
    if r.use_gpu:
        resources["GPU"] = r.gpus_per_worker
    return ScalingConfig(num_workers=r.num_workers, use_gpu=r.use_gpu, resources_per_worker=resources,
                         placement_strategy=r.placement_strategy), cpus


def make_trainer(cfg: Config, run_dir: Path, nodes: list[dict], callbacks=(), reserved: float = 0.0,
                 trackers: bool = True):
    """The TorchTrainer of one run, named as the run; its checkpoints live in RUN_DIR/ray/NAME, where
    a rerun resumes. `trackers`: rank 0 feeds logging.backend (a sweep has Tune's loggers instead)."""
    scaling_config, cpus = scaling(cfg, nodes, reserved)
    return TorchTrainer(
        worker_loop,
        train_loop_config={"cfg": cfg.to_dict(), "run_dir": str(run_dir), "persist": persist_dir(cfg, run_dir),
                           "threads": cpus, "trackers": cfg.logging.backend if trackers else [],
                           "resume_from": _local_checkpoint(cfg, run_dir)},
        scaling_config=scaling_config,
        torch_config=TorchConfig(backend="nccl" if cfg.ray.use_gpu else "gloo"),
        run_config=run_config(cfg, run_dir, callbacks),
    )


def run_config(cfg: Config, run_dir: Path, callbacks=()) -> RunConfig:
    """Train's side of a run: its name, storage, retries and logging; `callbacks` after StopOnMemoryKill."""
    return RunConfig(
        name=cfg.output.name, storage_path=ray_storage(cfg, run_dir), callbacks=[StopOnMemoryKill(), *callbacks],
        failure_config=FailureConfig(max_failures=cfg.ray.max_failures),
        logging_config=LoggingConfig(log_level=cfg.ray.log_level), worker_runtime_env=worker_runtime_env(),
        checkpoint_config=CheckpointConfig(num_to_keep=2),
    )


def _local_checkpoint(cfg: Config, run_dir: Path) -> str | None:
    """An in-process run's checkpoint, for a run through Ray that continues it (a URI has none)."""
    location = persist_dir(cfg, run_dir)
    path = Path(location) / CHECKPOINT
    return str(path) if not is_uri(location) and path.is_file() else None


def recorded_out_of_memory(cfg: Config, run_dir: Path, since: float) -> str | None:
    """The one line of an out-of-memory that rank 0 recorded in results.json since `since` (a local
    file; at a URI Train's retries run their course)."""
    path = Path(results_at(cfg, run_dir))
    if is_uri(str(path)) or not path.is_file() or path.stat().st_mtime < since:
        return None
    error = json.loads(path.read_text()).get("error") or ""
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


def run_on_ray(cfg: Config, run_dir: Path, address: str | None, out_of_memory: str | None = None) -> dict:
    init_ray(address)
    return fit(make_trainer(cfg, run_dir, cluster_nodes()), cfg, run_dir, out_of_memory)


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
