"""Run one benchmark run: the learner, its results file after every task, its checkpoints.

`RunRecorder` is shared by the in-process path (here) and the Ray Train path (suite/distributed):
the learner knows nothing of files; the recorder knows nothing of Ray.
"""
from __future__ import annotations

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

RESULTS = "results.json"
CHECKPOINT = "checkpoints/latest.pt"
IGNORED_ON_RESUME = ("output", "ray")  # where a run is stored and how it is scaled may change


class RunRecorder:
    """Writes `results.json` after every task and at the end (rank 0 only)."""

    def __init__(self, cfg: Config, scenario: Scenario, run_dir: Path, world_size: int, device: str):
        self.cfg, self.scenario, self.run_dir = cfg, scenario, Path(run_dir)
        self.prov = provenance(cfg, world_size, device)

    def write(self, learner: Learner, status: str, error: str | None = None) -> Path:
        doc = results_document(self.cfg, self.scenario, learner.history, status, self.prov, error)
        return write_json(self.run_dir / RESULTS, doc)


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


def restore(learner: Learner, cfg: Config, payload: dict, where: str) -> None:
    """Load a checkpoint into a fresh learner, refusing one made by a different config."""
    theirs, ours = comparable(payload["config"]), comparable(cfg.to_dict())
    diff = sorted(_differing_keys(theirs, ours))
    if diff:
        raise UserError(f"checkpoint '{where}' was made by a different config (differs in {', '.join(diff[:4])}); "
                        "resume with the run's own config or start a new --name")
    learner.load_state_dict(payload["learner"])


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


def run_in_process(cfg: Config, run_dir: Path, resume: bool) -> dict:
    """The whole run in this process (no Ray): used by tests and as the learner's reference path."""
    data, scenario = prepare(cfg)
    learner = Learner(cfg, data, scenario)
    ckpt = run_dir / CHECKPOINT
    if resume and ckpt.exists():
        restore(learner, cfg, load_checkpoint(ckpt), str(ckpt))
    recorder = RunRecorder(cfg, scenario, run_dir, world_size=1, device="cpu")

    def on_task_end(task: int, lrn: Learner) -> None:
        save_checkpoint(ckpt, checkpoint_payload(lrn, cfg))
        recorder.write(lrn, "running")

    try:
        learner.run(on_task_end)
    except Exception:
        recorder.write(learner, "failed", traceback.format_exc(limit=3))
        raise
    recorder.write(learner, "finished")
    return results_document(cfg, scenario, learner.history, "finished", recorder.prov)
