"""One benchmark run as a Ray Train `TorchTrainer`: the run's session (suite/run/session.py) inside
`train_loop_per_worker`, on the driver's plan (data included) from Ray's object store.

Ray sets up torch.distributed; the learner shards data, gathers the memory and evaluates across
workers by itself. After every task rank 0 hands Ray a checkpoint, which Ray persists under
RUN_DIR/ray/ and gives back after a worker failure or on --resume, then writes results.json. The
driver's watch over the run is suite/run/supervise.py.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import ray
import ray.train
import ray.train.torch
from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
import torch

from suite.config import Config
from suite.learner import dist
from suite.run import checkpoints
from suite.run.cluster import WORKER_ENV, cluster_nodes, init_ray, worker_runtime_env
from suite.run.layout import CHECKPOINT, RAY_CHECKPOINT_FILE, persist_dir, ray_storage
from suite.run.memory_kill import StopOnMemoryKill
from suite.run.plan import Plan, worker_cpus
from suite.run.session import run_session
from suite.run.storage import is_uri
from suite.run.supervise import fit


def worker_loop(config: dict) -> None:
    ref, name = config["plan"]  # the driver's plan, data included: no worker loads a data set
    plan: Plan = ray.get(ref) if name is None else ray.get(ref)[name]
    cfg = plan.cfg
    # Train's LoggingConfig covers the `ray.train` loggers; one of its INFO lines per report comes
    # from a logger named by its file's path, which only the root logger's level holds back
    logging.getLogger().setLevel(cfg.ray.log_level)
    context = ray.train.get_context()
    rank = context.get_world_rank()
    torch.set_num_threads(max(1, round(config["threads"])))

    def save(learner, record: dict, name: str) -> None:
        """A report with rank 0's checkpoint (every worker reports: it is collective)."""
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                checkpoints.save(Path(tmp) / RAY_CHECKPOINT_FILE, checkpoints.payload(learner, cfg))
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(record, checkpoint=ckpt, checkpoint_dir_name=name)

    def report_epoch(record: dict) -> None:
        """To Ray, hence the dashboard and, in a sweep, Tune."""
        if worth_reporting(record["seconds"]):
            ray.train.report(record)

    run_session(plan, config["persist"], ray.train.torch.get_device(), save, lambda: newest(config["resume_from"]),
                rank, context.get_world_size(), tuple(config["trackers"]), report_epoch)


def newest(local: str | None) -> tuple[str, dict] | None:
    """The newest checkpoint: Ray Train's (after a worker failure, or on --resume), or `local`, one
    that the driver found on --resume (an in-process run's) when it is further into the run."""
    candidates = []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            candidates.append((checkpoint.path, checkpoints.load(Path(directory) / RAY_CHECKPOINT_FILE)))
    if local is not None:
        candidates.append((local, checkpoints.load(Path(local))))
    return max(candidates, key=lambda item: checkpoints.progress(item[1]), default=None)


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


def make_trainer(plan: Plan, nodes: list[dict], callbacks=(), reserved: float = 0.0, trackers: bool = True,
                 stored: tuple | None = None):
    """The TorchTrainer of one run, named as the run; its checkpoints live in RUN_DIR/ray/NAME, where
    a rerun resumes. The plan reaches the workers through Ray's object store: put there now, or
    `stored` (a reference to plans by name, and this one's name: a sweep's, put once for all its
    trials). `trackers`: rank 0 feeds logging.backend (a sweep has Tune's loggers instead)."""
    cfg, run_dir = plan.cfg, plan.run_dir
    scaling_config, cpus = scaling(cfg, nodes, reserved)
    return TorchTrainer(
        worker_loop,
        train_loop_config={"plan": stored or (ray.put(plan), None), "persist": persist_dir(cfg, run_dir),
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


def run_on_ray(plan: Plan, address: str | None, out_of_memory: str | None = None) -> dict:
    init_ray(address)
    return fit(make_trainer(plan, cluster_nodes()), plan.cfg, plan.run_dir, out_of_memory)
