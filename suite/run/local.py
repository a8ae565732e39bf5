"""One run in this process, without Ray (`--in-process`): the tests' and the learner's reference path."""
from __future__ import annotations

from pathlib import Path

import torch

from suite.config import Config
from suite.errors import UserError
from suite.learner.learner import Learner
from suite.run import checkpoints, footprint, schema
from suite.run.history import RunHistory
from suite.run.layout import CHECKPOINT, collect_results, local_checkpoints, persist_dir
from suite.run.plan import image_side, prepare
from suite.run.recorder import RunRecorder
from suite.run.rendezvous import pause_at
from suite.run.storage import is_uri
from suite.run.trackers import open_trackers


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


def run_in_process(cfg: Config, run_dir: Path, resume: bool) -> dict:
    """The whole run: results.json and a checkpoint after every task (and every train.checkpoint_every
    epochs); the finished run's results. A resume starts from the newest checkpoint, this path's or
    one a run through Ray Train left."""
    check_storage(cfg)
    location = persist_dir(cfg, run_dir)
    device = device_of(cfg)
    data, scenario = prepare(cfg)
    history = RunHistory(location, open_trackers(cfg.logging.backend, str(run_dir), cfg.output.name, cfg.to_dict()))
    ckpt = Path(location) / CHECKPOINT

    def on_checkpoint(lrn: Learner) -> None:
        checkpoints.save(ckpt, checkpoints.payload(lrn, cfg))
        history.checkpointed(lrn)
        pause_at(f"checkpoint:{lrn.next_task + 1}")

    learner = Learner(cfg, data, scenario, device, log=history.console, on_epoch_end=history.record,
                      on_checkpoint=on_checkpoint)
    if resume:
        path, state = checkpoints.newest(local_checkpoints(Path(location)))
        if path is not None:
            checkpoints.restore(learner, cfg, state, str(path))
            learner.log(f"resumed {checkpoints.resumed_where(learner)} from {path}")
            history.resumed(learner)
    recorder = RunRecorder(cfg, scenario, location, world_size=1, device=str(device))

    def on_task_end(task: int, lrn: Learner) -> None:
        """The checkpoint first: a task that log.jsonl or results.json calls done has one."""
        checkpoints.save(ckpt, checkpoints.payload(lrn, cfg))
        history.task_done(task, lrn.history)
        recorder.write(lrn, schema.RUNNING)
        pause_at(f"task:{task + 1}")

    try:
        learner.run(on_task_end)
    except Exception as crash:
        error, text = footprint.failure_text(crash, cfg, image_side(cfg, data), scenario.num_tasks)
        recorder.write(learner, schema.FAILED, text)
        if error is crash:
            raise
        raise error from None
    finally:
        history.close()
    recorder.write(learner, schema.FINISHED)
    return collect_results(cfg, run_dir)
