"""Runs through Ray Train for real: an embedded local Ray, 1 and 2 workers, a killed worker, and a
`ray job submit` round trip against a `ray start` head on loopback. Two workers sharing one global
memory: tests/test_validation.py (its 2-worker run); a killed driver resumed:
tests/test_preemption.py; on two nodes: tests/test_multinode.py."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO, run_cli
from tests.ray_nodes import ENV, RAY, node_env, results
from tests.runs import Pause, start_cli

pytestmark = pytest.mark.slow  # Ray clusters and real runs: tens of seconds each (CI runs them)

FAST = ["--set", "train.epochs=2", "--set", "finetune.epochs=1", "--set", "memory.selection=random"]
NAME = "quickstart-daformer_m"


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    base = tmp_path_factory.mktemp("one")
    proc = run_cli(*FAST, "--output-basedir", base, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return base / NAME, proc.stdout


def test_quickstart_runs_on_ray_train(one_worker):
    run_dir, out = one_worker
    doc = results(run_dir)
    assert doc["status"] == "finished" and doc["provenance"]["world_size"] == 1
    assert len(doc["acc_matrix"]) == 5 and doc["memory_size"][-1] == 200
    assert sorted(p.name for p in (run_dir / "ray" / NAME).glob("task_*")) == ["task_003", "task_004"]  # keeps 2
    assert "task 5/5 finetune epoch 1/1" in out and "img/s" in out and "eta" in out
    assert "average incremental accuracy" in out and str(run_dir / "results.json") in out
    assert (run_dir / "report" / "index.html").exists()


def test_a_run_on_ray_keeps_its_history(one_worker):
    """log.jsonl: every epoch of every phase and every task, from rank 0; train.log: the console's lines."""
    run_dir, out = one_worker
    doc = results(run_dir)
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    train, finetune = doc["config"]["train"]["epochs"], doc["config"]["finetune"]["epochs"]
    assert len(epochs) == 5 * train + 4 * finetune
    assert [(r["task"], r["phase"], r["epoch"]) for r in epochs][-2:] == [(5, "train", train), (5, "finetune", 1)]
    assert all(r["loss"] > 0 and r["lr"] > 0 and r["img_per_s"] > 0 for r in epochs)
    assert [r["acc"] for r in records if r["event"] == "task"] == doc["acc"]
    lines = (run_dir / "train.log").read_text().splitlines()
    assert "task 5/5 finetune epoch 1/1" in "\n".join(lines) and sum("accuracy: top-1" in line for line in lines) == 5


def test_results_and_checkpoints_persist_at_a_storage_uri(one_worker, ray_head, tmp_path):
    """output.storage_path as a URI (file:// here; s3:// and gs:// go through the same pyarrow calls)."""
    store, runs = tmp_path / "store", tmp_path / "runs"
    args = [*FAST, "--output-basedir", runs, "--set", f"output.storage_path=file://{store}", "--address", ray_head.address]
    proc = run_cli(*args, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = results(store / NAME)
    assert doc["status"] == "finished" and doc["acc_matrix"] == results(one_worker[0])["acc_matrix"]
    assert [p.name for p in sorted((store / NAME / "ray" / NAME).glob("task_*"))][-1] == "task_004"
    assert results(runs / NAME) == doc and (runs / NAME / "report" / "index.html").exists()  # the driver's copy
    assert not (runs / NAME / "ray").exists()

    shutil.rmtree(runs)  # a new run of the same name must not continue the stored one silently
    again = run_cli(*args, env=ENV)
    assert again.returncode == 2 and str(store / NAME / "results.json") in again.stderr and "--resume" in again.stderr


def test_killed_worker_is_restarted_and_finishes_identically(one_worker, ray_head, tmp_path):
    """The worker of a run on a cluster killed after task 2 (halted there: suite/run/rendezvous.py):
    Ray Train restarts it from the last checkpoint and the run ends as an uninterrupted one."""
    pause = Pause(tmp_path / "pause", "task:2")
    proc = start_cli(*FAST, "--output-basedir", tmp_path, "--address", ray_head.address, env={**ENV, **pause.env})
    try:
        os.kill(pause.wait(proc), signal.SIGKILL)  # the halted process: rank 0's Train worker
        out, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out + err
    doc = results(tmp_path / NAME)
    assert doc["status"] == "finished"
    assert doc["acc_matrix"] == results(one_worker[0])["acc_matrix"]
    assert [e["event"] for e in map(json.loads, (tmp_path / NAME / "log.jsonl").read_text().splitlines())].count(
        "resume") == 1  # restarted once, from a checkpoint


def test_ray_job_submit_round_trip(ray_head, tmp_path):
    env = node_env()
    dry = run_cli("configs/quickstart.yaml", "--address", ray_head.address, "--dry-run", "--set", "ray.num_workers=2",
                  "--set", "ray.cpus_per_worker=2", "--set", "ray.use_gpu=true", env={**ENV, "RAY_ADDRESS": ""})
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "the cluster has no GPU" in dry.stderr and "need more than the 2 CPU(s) of the cluster" in dry.stderr

    def submit(*args):
        return subprocess.run(
            [RAY, "job", "submit", "--address", ray_head.dashboard, "--working-dir", str(REPO),
             # variables the suite sets for its workers too: the job's values win, and no conflict
             "--runtime-env-json", json.dumps({"env_vars": {"HF_HUB_OFFLINE": "1", "MALLOC_MMAP_MAX_": "0"}}),
             "--", "python", "suite/run.py", "configs/quickstart.yaml", *FAST, *args],
            env=env, capture_output=True, text=True, timeout=600)

    job = submit("--set", "ray.num_workers=2", "--output-basedir", str(tmp_path))
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout
    doc = results(tmp_path / NAME)
    assert doc["status"] == "finished" and doc["provenance"]["world_size"] == 2
    lines = job.stdout.splitlines()  # the job's own log, between the CLI's lines
    entry = next(i for i, line in enumerate(lines) if line.startswith("Running entrypoint"))
    log = lines[entry + 1:next(i for i, line in enumerate(lines) if i > entry and " cli.py:" in line)]
    assert any("epoch" in line for line in log) and not any("\x1b[" in line for line in log)  # no colour codes
    assert not any(" INFO " in line for line in log)  # Train's INFO lines are off (ray.log_level)

    relative = submit("--output-basedir", "runs")  # would land in Ray's temporary copy of the repository
    assert relative.returncode != 0 and "Ray deletes when the job ends" in relative.stdout + relative.stderr


def test_per_worker_memory_reproduces_the_erratum(ray_head, tmp_path):
    """memory.per_worker: each of 2 workers keeps the full budget, so the effective memory doubles."""
    proc = run_cli(*FAST, "--set", "ray.num_workers=2", "--set", "memory.per_worker=true", "--memory-size", "100",
                   "--output-basedir", tmp_path, "--address", ray_head.address, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert results(tmp_path / NAME)["memory_size"] == [200, 200, 192, 192, 200]  # 2 x [100, 100, 96, 96, 100]


def test_two_embedded_rays_on_one_host(tmp_path):
    """A run while another embedded Ray runs on this host: Train's state-API calls find this run's
    own Ray (they used to fail with 'Found multiple active Ray instances')."""
    other = subprocess.Popen([sys.executable, "-c", "import ray, time; ray.init(address='local', num_cpus=1, "
                              "include_dashboard=False); print('up', flush=True); time.sleep(600)"],
                             env={**os.environ, **ENV}, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert other.stdout.readline().strip() == "up"
        proc = run_cli("--set", "train.epochs=1", "--set", "finetune.epochs=0", "--output-basedir", tmp_path,
                       env={**ENV, "RAY_ADDRESS": ""})
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "multiple active Ray" not in proc.stdout + proc.stderr
    assert results(tmp_path / NAME)["status"] == "finished"
