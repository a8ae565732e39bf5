"""The per-task sequence of one run, the same in this process (suite/run/local.py) and in every Ray
Train worker (suite/run/ray_train.py): the learner on the plan's data, resumed from the newest
checkpoint there is; after every task (and every train.checkpoint_every epochs) a checkpoint, the
history (log.jsonl, train.log, the trackers) and results.json. Every rank trains; rank 0 writes.

The two paths differ only in the callables they pass: where a checkpoint goes (a file, or a report
to Ray Train), where the newest one is found, and where an epoch's record goes besides log.jsonl.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from suite import schema
from suite.learner.learner import Learner
from suite.run import checkpoints, footprint
from suite.run.history import RunHistory, task_metrics
from suite.run.layout import checkpoint_name
from suite.run.plan import Plan
from suite.run.recorder import RunRecorder
from suite.run.rendezvous import pause_at
from suite.run.trackers import open_trackers

SaveCheckpoint = Callable[[Learner, dict, str], None]  # (learner, its log record, checkpoint name): every rank
NewestCheckpoint = Callable[[], Optional[tuple[str, dict]]]  # (where, state) of the newest one, None: a new run


def run_session(plan: Plan, persist: str, device: torch.device, save: SaveCheckpoint, newest: NewestCheckpoint,
                rank: int = 0, world_size: int = 1, trackers: tuple[str, ...] = (),
                report_epoch: Callable[[dict], None] = lambda record: None) -> None:
    """Train the plan's run to its end (or its failure, recorded in results.json before it is raised)."""
    cfg, scenario = plan.cfg, plan.scenario
    history = RunHistory(persist, open_trackers(list(trackers) if rank == 0 else [], str(plan.run_dir),
                                                cfg.output.name, cfg.to_dict()))

    def on_epoch_end(record: dict) -> None:
        if rank == 0:
            history.record(record)
        report_epoch(record)

    def on_checkpoint(lrn: Learner) -> None:
        mid, record = lrn.mid_task, history.checkpoint_record(lrn)
        save(lrn, record, checkpoint_name(lrn.next_task, mid.phase, mid.epochs_done))
        if rank == 0:
            history.checkpointed(record)
            pause_at(f"checkpoint:{lrn.next_task + 1}")

    def on_task_end(task: int, lrn: Learner) -> None:
        """The checkpoint first: a task that log.jsonl or results.json calls done has one."""
        save(lrn, task_metrics(task, lrn.history), checkpoint_name(task))
        if rank == 0:
            history.task_done(task, lrn.history)
            recorder.write(lrn, schema.RUNNING)
            pause_at(f"task:{task + 1}")

    learner = Learner(cfg, plan.data, scenario, device, log=history.console, on_epoch_end=on_epoch_end,
                      on_checkpoint=on_checkpoint)
    recorder = RunRecorder(cfg, scenario, persist, world_size, str(device))
    try:  # the history closed (its files complete, the trackers' runs ended) however the run ends
        resume(learner, newest(), history if rank == 0 else None)
        try:
            learner.run(on_task_end)
        except Exception as crash:  # recorded in results.json (a failed resume is not: the file stays as it was)
            error, text = footprint.failure_text(crash, cfg, plan.image_size, scenario.num_tasks)
            if rank == 0:
                recorder.write(learner, schema.FAILED, text)  # the Ray driver stops a run on an OutOfMemory here
            if error is crash:
                raise
            raise error from None
    finally:
        history.close()
    if rank == 0:
        recorder.write(learner, schema.FINISHED)


def resume(learner: Learner, found: Optional[tuple[str, dict]], history: Optional[RunHistory]) -> None:
    """Continue from checkpoint `found` (where, state), if any; `history` (rank 0's) records where."""
    if found is None:
        return
    where, state = found
    checkpoints.restore(learner, learner.cfg, state, where)
    learner.log(f"resumed {checkpoints.resumed_where(learner)} from {where}")
    if history is not None:
        history.resumed(learner)
