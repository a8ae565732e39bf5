"""Where a run's files live.

    RUN_DIR = output.basedir/output.name      the driver's directory: report, copy of the results
      results.json                            (schema.RESULTS) after every task
      checkpoints/latest.pt                   in-process runs: the newest checkpoint
      ray/NAME/                               Ray Train's files (its run is named NAME, as the
                                              dashboard shows it); a checkpoint directory each:
        task_NNN/learner.pt                   after task NNN (counted from 0)
        task_NNN_PHASE_EEE/learner.pt         inside task NNN, EEE epochs into PHASE (train.checkpoint_every)
      report/                                 built at the end

With output.storage_path, results.json and the checkpoints persist in STORAGE/NAME instead (a
directory every node mounts, or a URI); the run directory then marks the run for --resume.
"""
from __future__ import annotations

import os
from pathlib import Path

from suite.atomic import nearest_existing, write_json
from suite.config import Config
from suite.errors import UserError
from suite import schema
from suite.run.storage import join, read_text_at

CHECKPOINT = "checkpoints/latest.pt"  # in-process runs
RAY_DIR = "ray"  # Ray Train's storage_path under the run directory
RAY_CHECKPOINT_FILE = "learner.pt"  # in each of those checkpoint directories
REPORT_DIR = "report"


def run_dir_of(cfg: Config) -> Path:
    return Path(cfg.output.basedir) / cfg.output.name


def persist_dir(cfg: Config, run_dir: Path) -> str:
    """Where the run's results.json and checkpoints persist: output.storage_path/NAME, else the run directory."""
    return join(cfg.output.storage_path, cfg.output.name) if cfg.output.storage_path else str(run_dir)


def results_at(cfg: Config, run_dir: Path) -> str:
    return join(persist_dir(cfg, run_dir), schema.RESULTS)


def ray_storage(cfg: Config, run_dir: Path) -> str:
    return join(persist_dir(cfg, run_dir), RAY_DIR)


def checkpoint_name(task: int, phase: str | None = None, epochs_done: int = 0) -> str:
    """Ray Train's checkpoint directory: after `task`, or inside it (`phase`, `epochs_done`)."""
    return f"task_{task:03d}" if phase is None else f"task_{task:03d}_{phase}_{epochs_done:03d}"


def local_checkpoints(location: Path) -> list[Path]:
    """Every checkpoint a resume could start from: the in-process one and Ray Train's (kept ones)."""
    ray = location.glob(f"{RAY_DIR}/**/task_*/{RAY_CHECKPOINT_FILE}")
    return [p for p in (location / CHECKPOINT, *ray) if p.is_file()]


def check_run_dir(cfg: Config, run_dir: Path, resume: bool) -> None:
    """A new run needs a new name (Ray Train would silently continue an old one); --resume an old one."""
    if resume and not run_dir.exists():
        raise UserError(f"--resume: no run at '{run_dir}'; check --name and --output-basedir")
    if not resume and run_dir.exists():
        raise UserError(f"run directory '{run_dir}' already exists; pass --resume to continue it, "
                        "or choose another --name")
    if not cfg.output.storage_path:
        return
    stored = results_at(cfg, run_dir)
    try:
        found = read_text_at(stored) is not None
    except OSError as e:
        raise UserError(f"output.storage_path: cannot read '{stored}' ({e}); expected a reachable directory or URI") from None
    if found and not resume:
        raise UserError(f"'{stored}' already exists; pass --resume to continue that run, or choose another --name")


RAY_JOB_MARK = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # in the environment of a `ray job submit` driver


def check_lasting(directory: Path, flag: str = "--output-basedir") -> None:
    """Inside a submitted Ray job the working directory is Ray's unpacked copy of --working-dir,
    which Ray deletes after the job: refuse an output directory there."""
    if RAY_JOB_MARK not in os.environ:
        return
    if not directory.is_absolute() or directory.resolve().is_relative_to(Path.cwd().resolve()):
        raise UserError(f"{flag} '{directory}' lies in this Ray job's working directory, a temporary copy that "
                        f"Ray deletes when the job ends; expected an absolute path outside it, e.g. "
                        f"{flag} /shared/runs (on a directory every node can reach)")


def check_output_base(directory: Path) -> None:
    """Refuse, before anything is printed or written, an output base that cannot become a writable
    directory: a file, a path through a file, or a directory this user may not write in."""
    existing = nearest_existing(directory)
    if not existing.is_dir():
        problem = "it is a file" if existing == directory else f"'{existing}' is a file"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"no permission to write in '{existing}'"
    else:
        return
    raise UserError(f"output directory '{directory}' cannot be written ({problem}); "
                    "expected a writable directory (output.basedir, --output-basedir)")


def check_writable(directory: Path) -> None:
    """Create `directory` if needed and prove a file can be written there, before any training."""
    probe = directory / f".write-test-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"output directory '{directory}' cannot be written ({e.strerror or type(e).__name__}); "
                        "expected a writable directory (output.basedir, --output-basedir)") from None


def collect_results(cfg: Config, run_dir: Path) -> dict:
    """The finished run's results, copied into the run directory (where the report is built) when
    they persist elsewhere (output.storage_path)."""
    path = results_at(cfg, run_dir)
    doc = schema.parse(read_text_at(path), path)
    if persist_dir(cfg, run_dir) != str(run_dir):
        write_json(run_dir / schema.RESULTS, doc)
    return doc
