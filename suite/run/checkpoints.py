"""A run's checkpoints: what they hold, reading and writing them, and refusing a foreign one."""
from __future__ import annotations

from pathlib import Path

import torch

from suite.atomic import write_bytes
from suite.config import Config, flatten, keys_where
from suite.errors import UserError
from suite.methods import PHASES
from suite import schema
from suite.run.layout import local_checkpoints, persist_dir, results_at
from suite.run.storage import is_uri, read_text_at

MAY_DIFFER_ON_RESUME = frozenset(keys_where("resume", "may differ"))  # where and how a run executes


def payload(learner, cfg: Config) -> dict:
    return {"learner": learner.state_dict(), "config": cfg.to_dict()}


def differing_keys(stored: dict, cfg: Config) -> list[str]:
    """The keys, other than those that may differ on resume, whose values differ; a key the stored
    config lacks (added to the suite since) counts as its default, as in schema.flat_config."""
    theirs, ours = {**schema.DEFAULTS, **flatten(stored)}, flatten(cfg.to_dict())
    return sorted(key for key in ours if key not in MAY_DIFFER_ON_RESUME and theirs.get(key) != ours[key])


def check_same_config(stored: dict, cfg: Config, where: str) -> None:
    """Refuse to continue a run from a file written under a different config."""
    diff = differing_keys(stored, cfg)
    if diff:
        raise UserError(f"'{where}' was made by a different config (differs in {', '.join(diff[:4])}); "
                        "resume with the run's own config or start a new --name")


def restore(learner, cfg: Config, state: dict, where: str) -> None:
    """Load a checkpoint into a fresh learner, refusing one made by a different config."""
    check_same_config(state["config"], cfg, where)
    learner.load_state_dict(state["learner"])


def progress(state: dict) -> tuple[int, int, int]:
    """How far a checkpoint is into its run: (tasks done, phase reached, epochs of it), ordered."""
    learner = state["learner"]
    mid = learner.get("mid_task")
    if mid is None:
        return learner["next_task"], 0, 0
    return learner["next_task"], 1 + PHASES.index(mid["phase"]), mid["epochs_done"]


def newest(paths: list[Path]) -> tuple[Path, dict] | tuple[None, None]:
    """The checkpoint furthest into the run, whichever execution path wrote it, and its state."""
    states = [(path, load(path)) for path in paths]
    return max(states, key=lambda item: progress(item[1]), default=(None, None))


def resumed_where(learner) -> str:
    """'after task 3', or 'in task 4, 20 train epochs done', for the console."""
    mid = learner.mid_task
    if mid is None:
        return f"after task {learner.next_task}"
    return f"in task {learner.next_task + 1}, {mid.epochs_done} {mid.phase} epoch(s) done"


def load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which and what was expected
        raise UserError(f"checkpoint '{path}' cannot be read ({type(e).__name__}); expected a checkpoint "
                        "written by suite/run.py") from None


def save(path: Path, state: dict) -> None:
    write_bytes(path, lambda f: torch.save(state, f))


def check_resume(cfg: Config, run_dir: Path) -> dict | None:
    """In the driver, before anything starts: the run's results and newest checkpoint are readable
    and were made by this config (a refusal inside a Ray worker would be a failed run, not exit 2).
    Returns the stored results, if any."""
    results = results_at(cfg, run_dir)
    text = read_text_at(results)
    doc = None
    if text is not None:
        doc = schema.parse(text, results)
        check_same_config(doc["config"], cfg, results)
    location = persist_dir(cfg, run_dir)
    if is_uri(location):  # Ray reads remote checkpoints itself; the results were checked
        return doc
    for checkpoint in local_checkpoints(Path(location)):
        check_same_config(load(checkpoint)["config"], cfg, str(checkpoint))
    return doc
