"""Experiment trackers fed from a run's history records (logging.backend), and Ray Tune's own for sweeps.

    tensorboard  RUN_DIR/tensorboard/events.out.tfevents.*: the scalars, and the flattened config in
                 the HPARAMS tab; view with `tensorboard --logdir RUN_DIR/tensorboard` (or --logdir on
                 a base directory, to compare runs)
    mlflow       the server of MLFLOW_TRACKING_URI where set, else a local SQLite store in
                 RUN_DIR/mlruns/mlflow.db (experiment MLFLOW_EXPERIMENT_NAME, else "daformer-suite"):
                 params = the flattened config, metrics with their steps; view with
                 `mlflow ui --backend-store-uri sqlite:///RUN_DIR/mlruns/mlflow.db` (the UI comes
                 with the full mlflow package, not with mlflow-skinny)
    wandb        RUN_DIR/wandb/offline-run-*/ unless WANDB_MODE=online, or WANDB_API_KEY is set
                 (project WANDB_PROJECT, else "daformer-suite"); upload an offline run with
                 `wandb sync RUN_DIR/wandb/offline-run-*`

Every backend maps a record to scalars and a step in the same way (`to_point`): an epoch record gives
`train/loss`, `train/lr`, `train/img_per_s` (`finetune/...` for the finetune phase) at a global epoch
step, a task record `task/acc`, `task/acc_top5`, `task/val_acc` (with a validation split),
`task/memory`, `task/params` at step = the task.
The epoch step comes from (task, phase, epoch) and the config's epochs alone (`Schedule`), so a
resumed run's epochs land on the steps the uninterrupted run's would have; in TensorBoard a resume
also hides the interrupted task's epochs. A resumed run is a new MLflow or W&B run.

MLflow's usage telemetry is off unless MLFLOW_DISABLE_TELEMETRY says otherwise: a run writes
to local files or to the user's own server, and should reach nothing else.
"""
from __future__ import annotations

import importlib.util
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional

from suite.config import flatten
from suite.errors import UserError

PROJECT = "daformer-suite"  # the MLflow experiment and W&B project, unless the environment names one
EPOCH_SCALARS = ("loss", "lr", "img_per_s")
TASK_SCALARS = ("acc", "acc_top5", "val_acc", "memory", "params")  # val_acc: with a validation split
MLFLOW_MAX_PARAM_LENGTH = 6000  # MLflow's limits on a param value and on params per log_batch call
MLFLOW_MAX_PARAMS_PER_BATCH = 100
INSTALL_HINT = "install it with pip install -e .[trackers], or drop it from logging.backend"


# ---------------------------------------------------------------- records -> scalars


@dataclass(frozen=True)
class Schedule:
    """The global epoch axis: each task owns train.epochs + finetune.epochs consecutive steps, its
    train epochs first. Tasks that do not finetune (the first; methods without rehearsal) leave
    their finetune steps empty, so no step depends on what ran before."""
    train_epochs: int
    finetune_epochs: int

    @classmethod
    def of(cls, config: dict) -> Schedule:
        return cls(config["train"]["epochs"], config["finetune"]["epochs"])

    def first_step(self, task: int) -> int:
        return (task - 1) * (self.train_epochs + self.finetune_epochs) + 1

    def epoch_step(self, task: int, phase: str, epoch: int) -> int:
        offset = self.train_epochs if phase == "finetune" else 0
        return self.first_step(task) + offset + epoch - 1

    def resume_step(self, record: dict) -> int:
        """The first step a resumed run logs again: its task's first, or the one after its mid-task
        checkpoint."""
        if "phase" not in record:
            return self.first_step(record["next_task"])
        return self.epoch_step(record["next_task"], record["phase"], record["epochs_done"] + 1)


class Point(NamedTuple):
    axis: str  # what the step counts: "epoch" (global) or "task"
    step: int
    scalars: dict[str, float]


def _numbers(record: dict, keys: tuple[str, ...], prefix: str) -> dict[str, float]:
    return {f"{prefix}/{key}": float(record[key]) for key in keys if record.get(key) is not None}


def to_point(record: dict, schedule: Schedule) -> Optional[Point]:
    """A history record's scalars and step; None for records that carry none (resume)."""
    if record["event"] == "epoch":
        step = schedule.epoch_step(record["task"], record["phase"], record["epoch"])
        return Point("epoch", step, _numbers(record, EPOCH_SCALARS, record["phase"]))
    if record["event"] == "task":
        return Point("task", record["task"], _numbers(record, TASK_SCALARS, "task"))
    return None


def _plain(value: Any) -> Any:
    """A config value as a hyperparameter: numbers, strings and booleans as they are, others as text."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)


# ---------------------------------------------------------------- the backends


class Tracker(ABC):
    """One backend's run: `log` takes history records, `close` ends the run."""

    def __init__(self, location: str, run_name: str, config: dict):
        self.schedule = Schedule.of(config)

    def log(self, event: dict) -> None:
        point = to_point(event, self.schedule)
        if point is not None and point.scalars:
            self.write(point)

    @abstractmethod
    def write(self, point: Point) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


class TensorBoardTracker(Tracker):
    """tensorboardX rather than torch.utils.tensorboard: it is installed with Ray Tune already (whose
    sweep logger writes with it too), where torch's writer needs the tensorboard package as well."""

    def __init__(self, location: str, run_name: str, config: dict):
        super().__init__(location, run_name, config)
        from tensorboardX import SummaryWriter  # optional dependencies
        from tensorboardX.summary import hparams

        # the file's name has the time in seconds only: a suffix in nanoseconds keeps a run restarted
        # within the second from overwriting the file before it, and the files in the order written
        self.writer = SummaryWriter(logdir=str(Path(location, "tensorboard")), flush_secs=30,
                                    filename_suffix=f".{time.time_ns()}")
        hparam_dict = {key: _plain(value) for key, value in flatten(config).items()}
        experiment, self.session_start, self.session_end = hparams(hparam_dict, {"task/acc": 0.0})
        self.writer.file_writer.add_summary(experiment)
        self.writer.file_writer.add_summary(self.session_start)

    def log(self, event: dict) -> None:
        if event["event"] == "resume":
            self._restart_at(self.schedule.resume_step(event))
        super().log(event)

    def _restart_at(self, step: int) -> None:
        """TensorBoard's restart marker (what SummaryWriter(purge_step=...) writes): it hides the
        events at this step and after that the interrupted run wrote."""
        from tensorboardX.proto.event_pb2 import Event, SessionLog  # optional dependency

        self.writer.file_writer.add_event(Event(step=step, session_log=SessionLog(status=SessionLog.START)))

    def write(self, point: Point) -> None:
        for tag, value in point.scalars.items():
            self.writer.add_scalar(tag, value, point.step)

    def close(self) -> None:
        self.writer.file_writer.add_summary(self.session_end)
        self.writer.close()


def _import_mlflow():
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # read when mlflow is first imported
    import mlflow  # optional dependency

    return mlflow


def mlflow_local_store(directory: str) -> str:
    """The SQLite store in DIRECTORY/mlruns (MLflow 3 refuses its file store unless told to allow it)."""
    store = Path(directory, "mlruns").resolve()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


class MLflowTracker(Tracker):
    def __init__(self, location: str, run_name: str, config: dict):
        super().__init__(location, run_name, config)
        mlflow = _import_mlflow()
        server = os.environ.get("MLFLOW_TRACKING_URI")
        self.client = mlflow.tracking.MlflowClient(tracking_uri=server or mlflow_local_store(location))
        artifacts = None if server else Path(location, "mlruns", "artifacts").resolve().as_uri()
        experiment = self._experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT), artifacts)
        self.run_id = self.client.create_run(experiment, run_name=run_name,
                                             tags={"suite.run_dir": str(location)}).info.run_id
        self._log_params(flatten(config))

    def _experiment(self, name: str, artifact_location: Optional[str]) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(name, artifact_location=artifact_location)

    def _log_params(self, flat: dict[str, Any]) -> None:
        from mlflow.entities import Param  # optional dependency

        params = [Param(key, str(value)[:MLFLOW_MAX_PARAM_LENGTH]) for key, value in flat.items()]
        for start in range(0, len(params), MLFLOW_MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[start:start + MLFLOW_MAX_PARAMS_PER_BATCH])

    def write(self, point: Point) -> None:
        from mlflow.entities import Metric  # optional dependency

        now_ms = int(time.time() * 1000)
        metrics = [Metric(key, value, now_ms, point.step) for key, value in point.scalars.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id, "FINISHED")


def wandb_mode() -> str:
    """WANDB_MODE where set; else online only with an API key in the environment, offline otherwise."""
    return os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")


def wandb_project() -> str:
    return os.environ.get("WANDB_PROJECT", PROJECT)


class WandbTracker(Tracker):
    def __init__(self, location: str, run_name: str, config: dict):
        super().__init__(location, run_name, config)
        import wandb  # optional dependency

        # console="off": train.log keeps the console already, and W&B would wrap sys.stdout to copy it;
        # reinit="create_new": runs in one process (the tests, a sweep's trials) stay apart
        self.run = wandb.init(project=wandb_project(), name=run_name, dir=str(location), config=flatten(config),
                              mode=wandb_mode(), reinit="create_new", settings=wandb.Settings(console="off"))
        for axis, prefixes in (("epoch", ("train", "finetune")), ("task", ("task",))):
            self.run.define_metric(axis)
            for prefix in prefixes:
                self.run.define_metric(f"{prefix}/*", step_metric=axis)

    def write(self, point: Point) -> None:
        self.run.log({**point.scalars, point.axis: point.step})

    def close(self) -> None:
        self.run.finish()


BACKENDS: dict[str, type[Tracker]] = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker,
                                      "wandb": WandbTracker}


# ---------------------------------------------------------------- opening them


def _modules_needed(backend: str) -> tuple[str, ...]:
    if backend == "tensorboard":
        return ("tensorboardX",)
    if backend == "mlflow":
        local_store = ("sqlalchemy", "alembic")  # what MLflow's SQLite store runs on
        return ("mlflow",) + (() if os.environ.get("MLFLOW_TRACKING_URI") else local_store)
    return ("wandb",)


def check_installed(backends: list[str]) -> None:
    """UserError, one line, for the first backend whose packages are not installed."""
    for backend in backends:
        for module in _modules_needed(backend):
            if importlib.util.find_spec(module) is None:
                raise UserError(f"logging.backend '{backend}' needs the {module} package; {INSTALL_HINT}")


def open_trackers(backends: list[str], location: str, run_name: str, config: dict) -> list[Tracker]:
    """A started run in each backend; location: the run directory, config: Config.to_dict()."""
    check_installed(backends)
    return [BACKENDS[backend](location, run_name, config) for backend in backends]


def tune_callbacks(backends: list[str], sweep_dir: str) -> list:
    """Ray Tune's logger callbacks for a sweep's trials. tensorboard: events in each trial's directory
    (Tune adds this one anyway, unless TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1); mlflow: MLFLOW_TRACKING_URI,
    else SWEEP_DIR/mlruns/mlflow.db; wandb: SWEEP_DIR/wandb/, offline as for a run."""
    check_installed(backends)
    return [_TUNE_CALLBACKS[backend](sweep_dir) for backend in backends]


def _tensorboard_callback(sweep_dir: str):
    from ray.tune.logger import TBXLoggerCallback  # Ray's loggers: imported only for a sweep

    return TBXLoggerCallback()


def _mlflow_callback(sweep_dir: str):
    _import_mlflow()  # telemetry off before Ray's callback imports mlflow
    from ray.air.integrations.mlflow import MLflowLoggerCallback  # Ray's loggers: imported only for a sweep

    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or mlflow_local_store(sweep_dir)
    return MLflowLoggerCallback(tracking_uri=tracking_uri,
                                experiment_name=os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT))


def _wandb_callback(sweep_dir: str):
    from ray.air.integrations.wandb import WandbLoggerCallback  # Ray's loggers: imported only for a sweep

    mode = wandb_mode()
    os.environ["WANDB_MODE"] = mode  # the callback's setup asks for an API key unless WANDB_MODE says offline
    return WandbLoggerCallback(project=wandb_project(), mode=mode, dir=str(sweep_dir))


_TUNE_CALLBACKS = {"tensorboard": _tensorboard_callback, "mlflow": _mlflow_callback, "wandb": _wandb_callback}
