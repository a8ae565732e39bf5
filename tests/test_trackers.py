"""The experiment trackers, for real and offline: each backend is fed history records as RunHistory
writes them, then what it wrote is read back with the backend's own reader."""
import glob
import importlib.util
import json
import os
import socket
import struct
import sys
import zlib
from pathlib import Path
from typing import Optional

import pytest

from suite.config import TRACKERS, Config
from suite.errors import UserError
from suite.run import trackers
from suite.run.trackers import BACKENDS, Schedule, check_installed, open_trackers, to_point, tune_callbacks

TASKS, EPOCHS, FINETUNE_EPOCHS = 3, 2, 1


def tiny_config() -> dict:
    cfg = Config()
    cfg.train.epochs, cfg.finetune.epochs, cfg.train.lr = EPOCHS, FINETUNE_EPOCHS, 3e-4
    return cfg.to_dict()


def task_records(task: int, shift: float = 0.0) -> list[dict]:
    """One task's epoch records (finetuning from task 2 on, as rehearsal methods do) and its task record;
    `shift` marks the values of a run that will be interrupted."""
    phases = [("train", EPOCHS)] + ([("finetune", FINETUNE_EPOCHS)] if task > 1 else [])
    records = [{"event": "epoch", "task": task, "phase": phase, "epoch": epoch, "epochs": epochs,
                "loss": shift + 1.0 / (10 * task + epoch), "lr": 1e-4 * epoch, "img_per_s": 100.0 * task,
                "seconds": 1.0}
               for phase, epochs in phases for epoch in range(1, epochs + 1)]
    return records + [{"event": "task", "task": task, "acc": 90.0 - 10 * task, "acc_top5": 99.0 - task,
                       "acc_row": [90.0] * task, "memory": 20 * task, "params": 1000 + task,
                       "skipped_batches": 0, "seconds": 5.0}]


def uninterrupted_run() -> list[dict]:
    return [record for task in range(1, TASKS + 1) for record in task_records(task)]


def interrupted_then_resumed() -> tuple[list[dict], list[dict]]:
    """Tasks 1-2 and one epoch of task 3 (with other values), then the resumed run: task 3 anew."""
    before = task_records(1) + task_records(2) + task_records(3, shift=100.0)[:1]
    return before, [{"event": "resume", "next_task": 3}] + task_records(3)


def expected_series(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of an uninterrupted run, by the module's own mapping."""
    series: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        point = to_point(record, Schedule(EPOCHS, FINETUNE_EPOCHS))
        for tag, value in point.scalars.items():
            series.setdefault(tag, []).append((point.step, value))
    return series


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No tracker reaches a server: offline modes, no telemetry, and an in-process guard that fails
    any host name look-up or TCP connection (W&B talks to its wandb-core process over a Unix socket)."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_API_KEY", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_ERROR_REPORTING": "false",
                        "WANDB_DIR": str(tmp_path), "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
                        "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    attempts = []
    real_connect = socket.socket.connect

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError(f"test_trackers: no network ({address})")
        return real_connect(sock, address)

    def guarded_lookup(host, *args, **kwargs):
        attempts.append(host)
        raise socket.gaierror(f"test_trackers: no network ({host})")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_lookup)
    yield tmp_path
    assert attempts == [], f"tried to reach {attempts}"


def feed(backend: str, location: Path, records: list[dict], run_name: str = "tiny",
         config: Optional[dict] = None) -> None:
    (tracker,) = open_trackers([backend], str(location), run_name, config or tiny_config())
    for record in records:
        tracker.log(record)
    tracker.close()


# ---------------------------------------------------------------- the mapping


def test_backends_are_the_configs_trackers():
    assert tuple(BACKENDS) == TRACKERS


def test_records_map_to_named_scalars_and_steps():
    schedule = Schedule(EPOCHS, FINETUNE_EPOCHS)
    epoch = {"event": "epoch", "task": 2, "phase": "finetune", "epoch": 1, "epochs": 1, "loss": 0.5,
             "lr": 1e-5, "img_per_s": 80.0, "seconds": 2.0}
    assert to_point(epoch, schedule) == ("epoch", 6, {"finetune/loss": 0.5, "finetune/lr": 1e-5,
                                                      "finetune/img_per_s": 80.0})
    task = task_records(2)[-1]
    assert to_point(task, schedule) == ("task", 2, {"task/acc": 70.0, "task/acc_top5": 97.0, "task/memory": 40.0,
                                                    "task/params": 1002.0})
    validated = {**task, "val_acc": 68.5}  # a run with a validation split
    assert to_point(validated, schedule).scalars["task/val_acc"] == 68.5
    assert to_point({"event": "resume", "next_task": 3}, schedule) is None


def test_epoch_steps_increase_over_tasks_and_phases():
    steps = [to_point(r, Schedule(EPOCHS, FINETUNE_EPOCHS)).step for r in uninterrupted_run() if r["event"] == "epoch"]
    assert steps == sorted(set(steps))  # strictly increasing
    assert steps == [1, 2, 4, 5, 6, 7, 8, 9]  # task 1 does not finetune: its step 3 stays empty


def test_a_resumed_runs_epochs_land_on_the_uninterrupted_steps():
    schedule = Schedule(EPOCHS, FINETUNE_EPOCHS)
    _, resumed = interrupted_then_resumed()
    after_resume = [to_point(r, schedule) for r in resumed]
    uninterrupted = [to_point(r, schedule) for r in task_records(3)]
    assert after_resume[0] is None and after_resume[1:] == uninterrupted
    assert schedule.first_step(3) == uninterrupted[0].step


# ---------------------------------------------------------------- missing packages


@pytest.mark.parametrize("backend, module", [("tensorboard", "tensorboardX"), ("mlflow", "mlflow"),
                                             ("mlflow", "sqlalchemy"), ("wandb", "wandb")])
def test_a_missing_package_is_one_user_error_line(monkeypatch, tmp_path, backend, module):
    if module == "sqlalchemy" and importlib.util.find_spec("mlflow") is None:
        pytest.skip("mlflow is not installed: the error names it first")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(UserError) as caught:
        open_trackers([backend], str(tmp_path), "tiny", tiny_config())
    message = str(caught.value)
    assert message == (f"logging.backend '{backend}' needs the {module} package; install it with "
                       "pip install -e .[trackers], or drop it from logging.backend")
    assert list(tmp_path.iterdir()) == []  # nothing opened


def test_a_tracking_server_needs_no_local_store_packages(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://localhost:5000")
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    if importlib.util.find_spec("mlflow") is None:
        pytest.skip("mlflow is not installed")
    check_installed(["mlflow"])


# ---------------------------------------------------------------- TensorBoard


def test_tensorboard_scalars_and_hparams_read_back(offline):
    pytest.importorskip("tensorboardX")
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from tensorboard.plugins.hparams import plugin_data_pb2

    before, resumed = interrupted_then_resumed()
    feed("tensorboard", offline, before)
    feed("tensorboard", offline, resumed)  # a second process: a second event file in the same directory
    logdir = offline / "tensorboard"
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 2
    reader = event_accumulator.EventAccumulator(str(logdir), size_guidance={event_accumulator.SCALARS: 0})
    reader.Reload()
    expected = expected_series(uninterrupted_run())
    assert sorted(reader.Tags()["scalars"]) == sorted(expected)
    for tag, series in expected.items():  # the interrupted epoch is hidden by the resume's restart marker
        assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in reader.Scalars(tag)] == series

    start = reader.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["train.lr"].number_value == pytest.approx(3e-4)
    assert hparams["method"].string_value == "daformer_m"
    assert hparams["logging.backend"].string_value == "[]"


# ---------------------------------------------------------------- MLflow


def test_mlflow_params_and_metric_history_read_back(offline, monkeypatch):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient

    monkeypatch.setattr(trackers, "MLFLOW_MAX_PARAMS_PER_BATCH", 10)  # the config's params in several batches
    config = tiny_config()
    config["data"]["path"] = "d" * (trackers.MLFLOW_MAX_PARAM_LENGTH + 10)
    feed("mlflow", offline / "run", uninterrupted_run(), run_name="tiny-run", config=config)
    store = offline / "run" / "mlruns" / "mlflow.db"
    assert store.is_file() and not (offline / "mlruns").exists()  # nothing beside the run directory
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    (run,) = client.search_runs([client.get_experiment_by_name("daformer-suite").experiment_id])
    assert run.info.run_name == "tiny-run" and run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.0003" and run.data.params["train.epochs"] == str(EPOCHS)
    assert len(run.data.params) == len(trackers.flatten(config))
    assert run.data.params["data.path"] == "d" * trackers.MLFLOW_MAX_PARAM_LENGTH
    for tag, series in expected_series(uninterrupted_run()).items():
        history = client.get_metric_history(run.info.run_id, tag)
        assert sorted((m.step, m.value) for m in history) == series


def test_mlflow_follows_the_tracking_uri_of_the_environment(offline, monkeypatch):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient

    server = f"sqlite:///{offline / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "mine")
    feed("mlflow", offline / "run", task_records(1))
    assert not (offline / "run" / "mlruns").exists()
    client = MlflowClient(tracking_uri=server)
    (run,) = client.search_runs([client.get_experiment_by_name("mine").experiment_id])
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "task/acc")] == [(1, 80.0)]


# ---------------------------------------------------------------- W&B


def wandb_file_records(path: Path):
    """The protobuf records of a .wandb file: a LevelDB-style log (a 7-byte ':W&B' header, then 32 KiB
    blocks of chunks: crc32 of type+data, length, type FULL/FIRST/MIDDLE/LAST, data). wandb 0.31 ships
    no reader of its own; `wandb sync` reads the same format."""
    from wandb.proto import wandb_internal_pb2

    raw, block, header = path.read_bytes(), 32768, 7
    assert raw[:4] == b":W&B"
    position, pending = header, b""
    while position + header <= len(raw):
        if block - position % block < header:  # a block's tail too short for a chunk header is padding
            position += block - position % block
            continue
        checksum, length, kind = struct.unpack("<IHB", raw[position:position + header])
        data = raw[position + header:position + header + length]
        position += header + length
        if kind == 0:  # zero padding written before the file's end
            continue
        assert checksum == zlib.crc32(data, zlib.crc32(bytes([kind]))), "corrupt .wandb chunk"
        pending += data
        if kind in (1, 4):  # FULL, LAST
            yield wandb_internal_pb2.Record.FromString(pending)
            pending = b""


def wandb_items(items) -> dict:
    """Key -> value of a record's items (a key, or a nested_key path as wandb 0.31 writes history)."""
    return {item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in items}


def test_wandb_offline_run_reads_back(offline):
    pytest.importorskip("wandb")

    feed("wandb", offline / "run", uninterrupted_run(), run_name="tiny-run")
    (run_dir,) = glob.glob(str(offline / "run" / "wandb" / "offline-run-*"))
    (log,) = Path(run_dir).glob("run-*.wandb")
    records = list(wandb_file_records(log))
    kinds = [r.WhichOneof("record_type") for r in records]
    assert "exit" in kinds  # finish() ended the run

    (run,) = [r.run for r in records if r.HasField("run")]
    assert run.display_name == "tiny-run" and run.project == "daformer-suite"
    config = wandb_items(run.config.update)
    assert config["train.lr"] == pytest.approx(3e-4) and config["logging.backend"] == []

    rows = [wandb_items(r.history.item) for r in records if r.HasField("history")]
    for tag, series in expected_series(uninterrupted_run()).items():
        axis = "task" if tag.startswith("task/") else "epoch"
        assert [(row[axis], pytest.approx(row[tag])) for row in rows if tag in row] == series
    metrics = [r.metric for r in records if r.HasField("metric") and r.metric.glob_name]
    assert {m.glob_name: m.step_metric for m in metrics} == {"train/*": "epoch", "finetune/*": "epoch",
                                                             "task/*": "task"}


# ---------------------------------------------------------------- Ray Tune


def test_tune_callbacks_are_rays_logger_callbacks(offline, monkeypatch):
    for module in ("tensorboardX", "mlflow", "sqlalchemy", "wandb"):
        pytest.importorskip(module)
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.air.integrations.wandb import WandbLoggerCallback
    from ray.tune.logger import TBXLoggerCallback

    monkeypatch.delenv("WANDB_MODE")  # no API key either: offline, as for a run
    tensorboard, mlflow, wandb = tune_callbacks(["tensorboard", "mlflow", "wandb"], str(offline / "sweep"))
    assert type(tensorboard) is TBXLoggerCallback
    assert type(mlflow) is MLflowLoggerCallback
    assert mlflow.tracking_uri == f"sqlite:///{offline / 'sweep' / 'mlruns' / 'mlflow.db'}"
    assert mlflow.experiment_name == "daformer-suite"
    assert type(wandb) is WandbLoggerCallback
    assert wandb.project == "daformer-suite"
    assert wandb.kwargs == {"mode": "offline", "dir": str(offline / "sweep")}
    wandb.setup()  # Ray's own check for an API key, which offline mode skips


# ---------------------------------------------------------------- a real run, each path


@pytest.mark.slow
@pytest.mark.parametrize("path", [["--in-process"], []], ids=["in-process", "ray"])
def test_a_run_feeds_every_tracker_from_rank_0(offline, path):
    """A real run (through Ray Train: from rank 0 of two workers) with all three backends: what each
    wrote reads back as the run's own results."""
    for module in ("tensorboard", "mlflow", "sqlalchemy", "wandb"):
        pytest.importorskip(module)
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing import event_accumulator

    from tests.conftest import TINY, run_cli

    workers = [] if path else ["--set", "ray.num_workers=2", "--set", "ray.cpus_per_worker=1"]
    proc = run_cli(*(a for item in TINY for a in ("--set", item)), "--set", "logging.backend=[tensorboard,mlflow,wandb]",
                   *workers, *path, "--name", "tracked", "--output-basedir", offline, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = offline / "tracked"
    acc = json.loads((run_dir / "results.json").read_text())["acc"]

    reader = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"))
    reader.Reload()
    assert [(e.step, round(e.value, 4)) for e in reader.Scalars("task/acc")] == [(t + 1, round(a, 4)) for t, a in enumerate(acc)]
    assert len(reader.Scalars("train/loss")) == 3  # one epoch a task, logged once (rank 0 only)

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("daformer-suite").experiment_id])
    assert run.info.run_name == "tracked" and run.info.status == "FINISHED"
    assert [m.value for m in sorted(client.get_metric_history(run.info.run_id, "task/acc"), key=lambda m: m.step)] == pytest.approx(acc)

    (offline_run,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    rows = [wandb_items(r.history.item) for r in wandb_file_records(offline_run) if r.HasField("history")]
    assert [row["task/acc"] for row in rows if "task/acc" in row] == pytest.approx(acc)
