"""Where a run's files live.

    RUN_DIR = output.basedir/output.name      the driver's directory: report, copy of the results
      results.json                            (schema.RESULTS) after every task
      checkpoints/latest.pt                   in-process runs: the last finished task
      ray/                                    Ray Train's files; ray/task_NNN/learner.pt per task
      report/                                 built at the end

With output.storage_path, results.json and the checkpoints persist in STORAGE/NAME instead (a
directory every node mounts, or a URI); the run directory then marks the run for --resume.
"""
from __future__ import annotations

import os
from pathlib import Path

from suite.atomic import write_json
from suite.config import Config
from suite.errors import UserError
from suite.run import schema
from suite.run.storage import join, read_text_at

CHECKPOINT = "checkpoints/latest.pt"  # in-process runs
RAY_DIR = "ray"  # RunConfig(name) under the run directory: Ray's own files and the per-task checkpoints
RAY_CHECKPOINT_FILE = "learner.pt"  # in each of those checkpoint directories
REPORT_DIR = "report"


def run_dir_of(cfg: Config) -> Path:
    return Path(cfg.output.basedir) / cfg.output.name


def persist_dir(cfg: Config, run_dir: Path) -> str:
    """Where the run's results.json and checkpoints persist: output.storage_path/NAME, else the run directory."""
    return join(cfg.output.storage_path, cfg.output.name) if cfg.output.storage_path else str(run_dir)


def results_at(cfg: Config, run_dir: Path) -> str:
    return join(persist_dir(cfg, run_dir), schema.RESULTS)


def latest_checkpoint(location: Path) -> Path | None:
    """The newest checkpoint a resume would start from: in-process, or Ray Train's per-task ones."""
    found = [p for p in (location / CHECKPOINT, *location.glob(f"{RAY_DIR}/task_*/{RAY_CHECKPOINT_FILE}"))
             if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


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
