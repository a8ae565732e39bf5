"""Faults survived and nothing lost: unwritable and full output directories, a NaN loss through the
command line, processes killed while writing, a report reading while a run writes, and a run that
never touches the network.

Elsewhere, because they share those files' fixtures: a worker killed mid-task and the driver
killed mid-run (tests/test_ray_train.py), the sweep driver killed part-way (tests/test_sweep.py),
NaN losses skipped and counted (tests/test_learner.py).
"""
import errno
import os
import json
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import torch

from suite import cli
from suite.report.load import load_results
from suite.run.checkpoints import load as load_checkpoint
from suite.run.layout import CHECKPOINT
from suite.schema import RESULTS
from tests.conftest import REPO, TINY, TINY_RUN as RUN, cli_command, sets, start_cli
from tests.runs import Pause, nan_from_task_2


def tiny_args(base, *extra):
    return [*sets(*TINY), "--in-process", "--name", RUN, "--output-basedir", str(base), *extra]


def one_error_line(err: str) -> str:
    line = err.strip()
    assert line.startswith("error: ") and "\n" not in line and "Traceback" not in err, err
    return line


@pytest.fixture(scope="module")
def reference(tiny_run):
    """The uninterrupted tiny run's results: what every interrupted one must end equal to."""
    return json.loads((tiny_run / RESULTS).read_text())


@pytest.mark.parametrize("sweep", [False, True])
def test_unwritable_output_directory_is_refused_before_training(tmp_path, capsys, sweep):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    base = blocker / "runs"
    args = (["--sweep", "configs/sweeps/quick.yaml", "--output-basedir", str(base)] if sweep
            else tiny_args(base))
    assert cli.main(args) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"output directory '{base}" in line and "cannot be written" in line
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"] and blocker.read_text() == "not a directory"


def test_full_disk_mid_run_keeps_the_last_task_and_resumes(tmp_path, capsys, monkeypatch, reference):
    """The disk fills while task 2 is saved: one line, exit 1, task 1's results and checkpoint
    intact; once there is room, --resume finishes with the same accuracies as an uninterrupted run."""
    import suite.atomic

    real_mkstemp, writes = tempfile.mkstemp, []

    def mkstemp_until_full(*args, **kwargs):
        writes.append(kwargs.get("prefix"))
        if len(writes) > 2:  # task 1's checkpoint and results.json fit; then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(suite.atomic.tempfile, "mkstemp", mkstemp_until_full)
    assert cli.main(tiny_args(tmp_path)) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "No space left on device" in line and str(tmp_path / RUN) in line
    run_dir = tmp_path / RUN
    doc = json.loads((run_dir / RESULTS).read_text())
    assert doc["status"] == "running" and len(doc["acc_matrix"]) == 1
    assert load_checkpoint(run_dir / CHECKPOINT)["learner"]["next_task"] == 1
    assert not list(run_dir.rglob("*.tmp"))  # no half-written temp files left behind

    monkeypatch.setattr(suite.atomic.tempfile, "mkstemp", real_mkstemp)
    assert cli.main(tiny_args(tmp_path, "--resume")) == 0
    done = json.loads((run_dir / RESULTS).read_text())
    assert done["status"] == "finished" and done["acc_matrix"] == reference["acc_matrix"]


def test_nan_loss_through_the_command_line(tmp_path, capsys, monkeypatch):
    nan_from_task_2(monkeypatch)
    assert cli.main(tiny_args(tmp_path)) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "NonFiniteLoss" in line and "task 2" in line and "epoch 1" in line
    run_dir = tmp_path / RUN
    assert json.loads((run_dir / RESULTS).read_text())["status"] == "failed"
    assert load_checkpoint(run_dir / CHECKPOINT)["learner"]["next_task"] == 1


WRITER = """
import sys, torch
from suite.atomic import write_bytes, write_json
results, checkpoint = sys.argv[1], sys.argv[2]
version = 0
while True:
    version += 1
    write_json(results, {"version": version, "payload": [version] * 100000})
    state = {"version": version, "weights": torch.full((200000,), float(version))}
    write_bytes(checkpoint, lambda f: torch.save(state, f))  # as suite.run.checkpoints.save
    if version == 1:
        print("ready", flush=True)
"""


def test_killed_writer_leaves_complete_files(tmp_path):
    """SIGKILL at random moments of a loop rewriting a JSON file and a checkpoint: each file is
    always one complete version, never a mix or a prefix."""
    results, checkpoint = tmp_path / "results.json", tmp_path / "latest.pt"
    rng = random.Random(0)
    versions = set()
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(results), str(checkpoint)], cwd=REPO,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        doc = json.loads(results.read_text())
        assert doc["payload"] == [doc["version"]] * 100000
        state = torch.load(checkpoint, weights_only=True)
        assert torch.equal(state["weights"], torch.full((200000,), float(state["version"])))
        versions.add(doc["version"])
    assert len(versions) > 1  # the kills did land at different moments


def test_report_never_reads_a_half_written_results_file(tmp_path, reference, capsys):
    """A writer rewrites results.json as fast as it can while the report's loader reads it."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = run_dir / RESULTS
    path.write_text(json.dumps(reference))
    script = ("import json, sys\nfrom suite.atomic import write_json\ndoc = json.loads(open(sys.argv[1]).read())\n"
              "for i in range(100000):\n    doc['provenance']['rewrite'] = i\n    write_json(sys.argv[1], doc)\n")
    writer = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=REPO)
    try:
        for _ in range(60):
            frame = load_results(tmp_path)
            assert len(frame) == len(reference["acc_matrix"])
    finally:
        writer.kill()
        writer.wait()
    assert "warning" not in capsys.readouterr().err


def test_a_run_never_touches_the_network(tmp_path, monkeypatch):
    """No download attempt anywhere in a run: every name lookup or connection to a host other than
    this one is recorded (and refused)."""
    local = {"127.0.0.1", "localhost", "::1", socket.gethostname()}
    attempts = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in local and host is not None:
            attempts.append(host)
            raise OSError(f"network access during a run: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in local:
            attempts.append(address)
            raise OSError(f"network access during a run: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert cli.main(tiny_args(tmp_path)) == 0
    assert attempts == []
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # set by the CLI for every run and its workers


def test_resume_of_a_finished_run_changes_nothing(tmp_path, capsys):
    """--resume on a finished run says so and exits 0, without training or rewriting a file."""
    assert cli.main(tiny_args(tmp_path)) == 0
    run_dir = tmp_path / RUN
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert cli.main(tiny_args(tmp_path, "--resume")) == 0
    out = capsys.readouterr().out
    assert "has already finished all 3 tasks: nothing to resume" in out and "epoch" not in out
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.rglob("*") if p.is_file()} == before


@pytest.mark.slow
@pytest.mark.parametrize("path", [["--in-process"], []], ids=["in-process", "ray"])
def test_sigterm_mid_run_records_interrupted_and_resume_finishes(tmp_path, path, reference):
    """SIGTERM (what Slurm and Kubernetes send) after task 1 (the run halted there: see
    suite/run/rendezvous.py): exit 143, results.json `interrupted` with the command that resumes;
    that command finishes the run with the accuracies of an uninterrupted one."""
    pause = Pause(tmp_path / "pause", "task:1")
    args = [*sets(*TINY), "--name", RUN, "--output-basedir", tmp_path, *path]
    proc = start_cli(*args, env=pause.env)
    pause.wait(proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err
    # none of the driver's own; Ray forwards its actors' warnings (one comes with a traceback when the
    # CPUs are overloaded) prefixed "(ActorName pid=N)"
    assert not any(line.startswith("Traceback") for line in err.splitlines()), err
    run_dir = tmp_path / RUN
    doc = json.loads((run_dir / RESULTS).read_text())
    assert doc["status"] == "interrupted" and doc["tasks_done"] == 1
    resume = doc["interrupted"]["resume"]
    assert doc["interrupted"]["signal"] == "SIGTERM" and resume.endswith("--resume") and resume in err

    again = start_cli(*args, "--resume")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    done = json.loads((run_dir / RESULTS).read_text())
    assert done["status"] == "finished" and done["tasks_done"] == 3 and "interrupted" not in done
    assert done["acc_matrix"] == reference["acc_matrix"]


def test_out_of_memory_is_one_line_naming_what_to_change(tmp_path):
    """A run whose attention does not fit in the memory it really has (an address-space limit here,
    below what the machine has, so the plan's check lets it start): exit 1 with one line, and
    results.json `failed` with the same line."""
    import resource

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (5 * 2**30, 5 * 2**30))

    args = [*(a for item in TINY for a in ("--set", item)), "--set", "data.image_size=64", "--set", "model.patch_size=1",
            "--set", "train.eval_batch_size=16", "--in-process", "--name", RUN, "--output-basedir", str(tmp_path)]
    proc = subprocess.run(cli_command(*args), cwd=REPO, text=True,
                          capture_output=True, preexec_fn=limit_memory, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = one_error_line(proc.stderr)
    assert "out of memory" in line and "model.patch_size (now 1)" in line and "train.eval_batch_size" in line
    doc = json.loads((tmp_path / RUN / RESULTS).read_text())
    assert doc["status"] == "failed" and doc["error"].startswith("OutOfMemory: out of memory")
