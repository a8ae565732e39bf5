"""Run one benchmark run: the learner, its results file after every task, its checkpoints.

`RunRecorder` is shared by the in-process path (here) and the Ray Train path (suite/distributed):
the learner knows nothing of files; the recorder knows nothing of Ray.
"""
from __future__ import annotations

import json
import traceback
from pathlib import Path

import torch

from suite.atomic import write_bytes, write_json
from suite.config import Config
from suite.data.registry import DataSet, load_dataset
from suite.data.scenario import Scenario, build_scenario
from suite.errors import UserError
from suite.learner.learner import Learner
from suite.plan import check_data
from suite.results import provenance, results_document
from suite.storage import is_uri, join, read_text_at, write_json_at

RESULTS = "results.json"
CHECKPOINT = "checkpoints/latest.pt"  # in-process runs
RAY_DIR = "ray"  # RunConfig(name) under the run directory: Ray's own files and the per-task checkpoints
RAY_CHECKPOINT_FILE = "learner.pt"  # in each of those checkpoint directories
IGNORED_ON_RESUME = ("output", "ray")  # where a run is stored and how it is scaled may change


def persist_dir(cfg: Config, run_dir: Path) -> str:
    """Where the run's results.json and checkpoints persist: output.storage_path/NAME, else the run
    directory. The run directory (local to the driver) always gets the report and a copy of the
    results at the end."""
    return join(cfg.output.storage_path, cfg.output.name) if cfg.output.storage_path else str(run_dir)


class RunRecorder:
    """Writes `results.json` after every task and at the end (rank 0 only)."""

    def __init__(self, cfg: Config, scenario: Scenario, location: str, world_size: int, device: str):
        self.cfg, self.scenario, self.path = cfg, scenario, join(location, RESULTS)
        self.prov = provenance(cfg, world_size, device)

    def write(self, learner: Learner, status: str, error: str | None = None) -> None:
        doc = results_document(self.cfg, self.scenario, learner.history, status, self.prov, error)
        write_json_at(self.path, doc)


def comparable(cfg_dict: dict) -> dict:
    return {k: v for k, v in cfg_dict.items() if k not in IGNORED_ON_RESUME}


def checkpoint_payload(learner: Learner, cfg: Config) -> dict:
    return {"learner": learner.state_dict(), "config": cfg.to_dict()}


def _differing_keys(theirs: dict, ours: dict) -> list[str]:
    keys = []
    for section, value in ours.items():
        if isinstance(value, dict):
            keys += [f"{section}.{k}" for k in value if theirs.get(section, {}).get(k) != value[k]]
        elif theirs.get(section) != value:
            keys.append(section)
    return keys


def check_same_config(stored: dict, cfg: Config, where: str) -> None:
    """Refuse to continue a run from a file written under a different config."""
    diff = sorted(_differing_keys(comparable(stored), comparable(cfg.to_dict())))
    if diff:
        raise UserError(f"'{where}' was made by a different config (differs in {', '.join(diff[:4])}); "
                        "resume with the run's own config or start a new --name")


def restore(learner: Learner, cfg: Config, payload: dict, where: str) -> None:
    """Load a checkpoint into a fresh learner, refusing one made by a different config."""
    check_same_config(payload["config"], cfg, where)
    learner.load_state_dict(payload["learner"])


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint a resume would start from: in-process, or Ray Train's per-task ones."""
    found = [p for p in (run_dir / CHECKPOINT, *run_dir.glob(f"{RAY_DIR}/task_*/{RAY_CHECKPOINT_FILE}")) if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def check_resume(cfg: Config, run_dir: Path) -> dict | None:
    """In the driver, before anything starts: the run's results and newest checkpoint are readable
    and were made by this config (a refusal inside a Ray worker would be a failed run, not exit 2).
    Returns the stored results, if any."""
    location = persist_dir(cfg, run_dir)
    results = join(location, RESULTS)
    text = read_text_at(results)
    doc = None
    if text is not None:
        try:
            doc = json.loads(text)
            stored = doc["config"]
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"'{results}' is not a results file written by suite/run.py ({type(e).__name__}); "
                            "expected JSON with a 'config' section") from None
        check_same_config(stored, cfg, results)
    if is_uri(location):  # Ray reads remote checkpoints itself; the results were checked
        return doc
    checkpoint = latest_checkpoint(Path(location))
    if checkpoint is not None:
        check_same_config(load_checkpoint(checkpoint)["config"], cfg, str(checkpoint))
    return doc


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which and what was expected
        raise UserError(f"checkpoint '{path}' cannot be read ({type(e).__name__}); expected a checkpoint "
                        "written by suite/run.py") from None


def save_checkpoint(path: Path, payload: dict) -> None:
    write_bytes(path, lambda f: torch.save(payload, f))


def prepare(cfg: Config) -> tuple[DataSet, Scenario]:
    data = load_dataset(cfg.data)
    check_data(cfg, data)
    return data, build_scenario(cfg, data)


def check_in_process_storage(cfg: Config) -> None:
    if cfg.output.storage_path and is_uri(cfg.output.storage_path):
        raise UserError(f"output.storage_path = '{cfg.output.storage_path}' is a URI, which needs Ray; "
                        "drop --in-process, or use a directory")


def in_process_device(cfg: Config) -> torch.device:
    """The GPU when ray.use_gpu asks for one (the device a Ray Train worker would get), else the CPU."""
    if not cfg.ray.use_gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("ray.use_gpu = true, but this machine has no CUDA device; "
                        "expected a GPU, or ray.use_gpu=false")
    return torch.device("cuda", torch.cuda.current_device())


def run_in_process(cfg: Config, run_dir: Path, resume: bool) -> dict:
    """The whole run in this process (no Ray): used by tests and as the learner's reference path."""
    check_in_process_storage(cfg)
    location = persist_dir(cfg, run_dir)
    device = in_process_device(cfg)
    data, scenario = prepare(cfg)
    learner = Learner(cfg, data, scenario, device)
    ckpt = Path(location) / CHECKPOINT
    if resume and ckpt.exists():
        restore(learner, cfg, load_checkpoint(ckpt), str(ckpt))
    recorder = RunRecorder(cfg, scenario, location, world_size=1, device=str(device))

    def on_task_end(task: int, lrn: Learner) -> None:
        save_checkpoint(ckpt, checkpoint_payload(lrn, cfg))
        recorder.write(lrn, "running")

    try:
        learner.run(on_task_end)
    except Exception:
        recorder.write(learner, "failed", traceback.format_exc(limit=3))
        raise
    recorder.write(learner, "finished")
    return collect_results(cfg, run_dir)


def collect_results(cfg: Config, run_dir: Path) -> dict:
    """The finished run's results, copied into the run directory (where the report is built) when
    they persist elsewhere (output.storage_path)."""
    location = persist_dir(cfg, run_dir)
    doc = json.loads(read_text_at(join(location, RESULTS)))
    if location != str(run_dir):
        write_json(run_dir / RESULTS, doc)
    return doc
