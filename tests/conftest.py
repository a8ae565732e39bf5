"""Shared test setup: run the CLI as users do, in a subprocess; the runs and the Ray head that many
tests share (session-scoped: built once, by the first test that asks)."""
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.ray_nodes import free_port, head_args, kill_session, node_env, ray_start

REPO = Path(__file__).resolve().parents[1]

# A run small enough for a unit test: 6 synthetic classes, 3 tasks, a one-block model.
TINY = ["data.name=synthetic", "data.num_classes=6", "data.image_size=8", "data.train_per_class=20",
        "data.test_per_class=5", "scenario.increment=2", "model.embed_dim=16", "model.depth=1",
        "model.num_heads=2", "model.patch_size=4", "train.epochs=1", "train.batch_size=16",
        "finetune.epochs=1", "memory.size=12", "train.precision=fp32",
        "report.at_end=false"]  # a run's report costs seconds: the tests that read one turn it on
TINY_RUN = "tiny"  # the name of the shared TINY run (tiny_run)
HEAD_CPUS = 2  # this machine's cores: runs on the shared head get the CPUs an embedded Ray would give them


def sets(*pairs: str) -> list[str]:
    """--set for each KEY=VALUE."""
    return [a for pair in pairs for a in ("--set", pair)]


def cli_command(*args) -> list[str]:
    """`python suite/run.py ARGS`, as users run it."""
    return [sys.executable, str(REPO / "suite" / "run.py"), *map(str, args)]


def cli_env(env: dict | None = None) -> dict:
    """This process's environment with no usage report, then `env`."""
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}


def run_cli(*args, cwd=REPO, timeout=600, env=None):
    """`python suite/run.py ARGS` -> CompletedProcess (text)."""
    return subprocess.run(cli_command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=cli_env(env))


def start_cli(*args, env: dict | None = None) -> subprocess.Popen:
    """`python suite/run.py ARGS` in a process session of its own (so that it and an embedded Ray can
    be killed together), its output on pipes."""
    return subprocess.Popen(cli_command(*args), cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, env=cli_env(env))


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one intra-op thread is as fast and far steadier on a shared, busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The run directory of one uninterrupted, finished in-process run of TINY (named TINY_RUN): what
    every interrupted, failed and resumed run of that config must end equal to, and the finished run
    the bad-input resume cases copy. Read it, never write into it."""
    base = tmp_path_factory.mktemp("tiny-run")
    proc = run_cli(*sets(*TINY), "--in-process", "--name", TINY_RUN, "--output-basedir", base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return base / TINY_RUN


@dataclass(frozen=True)
class Head:
    address: str  # GCS host:port, for --address
    dashboard: str  # http://host:port, for `ray job submit --address`


@pytest.fixture(scope="session")
def ray_head():
    """One Ray head (`ray start --head`, HEAD_CPUS CPUs, on loopback) for the tests whose runs are not
    about the embedded Ray's own start-up: they pass `--address` and skip its ~10 s start and stop."""
    root = Path(tempfile.mkdtemp(prefix="rayhead-", dir="/tmp"))  # short: Ray's socket paths are under it
    gcs, dashboard = free_port(), free_port()
    session = ray_start(node_env(), *head_args(HEAD_CPUS, gcs, dashboard, root))
    try:
        yield Head(address=f"127.0.0.1:{gcs}", dashboard=f"http://127.0.0.1:{dashboard}")
    finally:
        survivors = kill_session(session)
        shutil.rmtree(root, ignore_errors=True)
        assert not survivors, f"Ray processes survive SIGKILL: {survivors}"


def data_of(cfg) -> tuple:
    """(data set, scenario) of a config's run, as its plan loads them."""
    from suite.run.plan import plan_run

    plan = plan_run(cfg, Path(cfg.output.basedir))  # its directory unused: data and scenario only
    return plan.data, plan.scenario
