"""One run in this process, without Ray (`--in-process`): the tests' and the learner's reference path."""
from __future__ import annotations

from pathlib import Path

import torch

from suite.config import Config
from suite.errors import UserError
from suite.run import checkpoints
from suite.run.layout import CHECKPOINT, collect_results, local_checkpoints, persist_dir
from suite.run.plan import Plan
from suite.run.session import run_session
from suite.run.storage import is_uri


def check_storage(cfg: Config) -> None:
    if cfg.output.storage_path and is_uri(cfg.output.storage_path):
        raise UserError(f"output.storage_path = '{cfg.output.storage_path}' is a URI, which needs Ray; "
                        "drop --in-process, or use a directory")


def device_of(cfg: Config) -> torch.device:
    """The GPU when ray.use_gpu asks for one (the device a Ray Train worker would get), else the CPU."""
    if not cfg.ray.use_gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("ray.use_gpu = true, but this machine has no CUDA device; "
                        "expected a GPU, or ray.use_gpu=false")
    return torch.device("cuda", torch.cuda.current_device())


def run_in_process(plan: Plan, resume: bool) -> dict:
    """The whole run: results.json and a checkpoint after every task (and every train.checkpoint_every
    epochs); the finished run's results. A resume starts from the newest checkpoint, this path's or
    one a run through Ray Train left."""
    cfg = plan.cfg
    check_storage(cfg)
    location = persist_dir(cfg, plan.run_dir)
    ckpt = Path(location) / CHECKPOINT

    def save(learner, record: dict, name: str) -> None:
        checkpoints.save(ckpt, checkpoints.payload(learner, cfg))

    def newest() -> tuple[str, dict] | None:
        path, state = checkpoints.newest(local_checkpoints(Path(location))) if resume else (None, None)
        return None if path is None else (str(path), state)

    run_session(plan, location, device_of(cfg), save, newest, trackers=tuple(cfg.logging.backend))
    return collect_results(cfg, plan.run_dir)
