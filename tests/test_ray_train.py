"""Runs through Ray Train for real: an embedded local Ray, 1 and 2 workers, a killed worker, and a
`ray job submit` round trip against a `ray start` head on loopback. Two workers sharing one global
memory: tests/test_validation.py (its 2-worker run); a killed driver resumed:
tests/test_preemption.py; on two nodes: tests/test_multinode.py."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow  # Ray clusters and real runs: tens of seconds each (CI runs them)

FAST = ["--set", "train.epochs=2", "--set", "finetune.epochs=1", "--set", "memory.selection=random"]
NAME = "quickstart-daformer_m"
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def start_run(*args, base: Path) -> subprocess.Popen:
    """The CLI in its own session, so that it and its embedded Ray can be killed together."""
    return subprocess.Popen([sys.executable, str(REPO / "suite/run.py"), *FAST, "--output-basedir", str(base), *args],
                            cwd=REPO, env={**os.environ, **ENV}, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_tasks(run_dir: Path, done: int, proc: subprocess.Popen, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (run_dir / "results.json").exists() and results(run_dir)["tasks_done"] >= done:
            return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    raise TimeoutError(f"{run_dir} did not reach {done} tasks")


def kill_session(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


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


def test_results_and_checkpoints_persist_at_a_storage_uri(one_worker, tmp_path):
    """output.storage_path as a URI (file:// here; s3:// and gs:// go through the same pyarrow calls)."""
    store, runs = tmp_path / "store", tmp_path / "runs"
    args = [*FAST, "--output-basedir", runs, "--set", f"output.storage_path=file://{store}"]
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


def _worker_pids(session: int) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "ray::RayTrainWorker"], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if os.getsid(int(p)) == session]


def test_killed_worker_is_restarted_and_finishes_identically(one_worker, tmp_path):
    proc = start_run(base=tmp_path)
    try:
        wait_for_tasks(tmp_path / NAME, 2, proc)
        pids = _worker_pids(proc.pid)
        assert pids, "no Ray Train worker found"
        os.kill(pids[0], signal.SIGKILL)
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            kill_session(proc)
    assert proc.returncode == 0, out
    doc = results(tmp_path / NAME)
    assert doc["status"] == "finished"
    assert doc["acc_matrix"] == results(one_worker[0])["acc_matrix"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit_round_trip(tmp_path):
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    env = {**os.environ, **ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)  # the head started here, not any other
    from tests.test_multinode import kill_session  # stops this head's processes only (ray stop stops every Ray here)

    gcs, dashboard = _free_port(), _free_port()
    start = subprocess.Popen([ray, "start", "--head", "--num-cpus=2", f"--port={gcs}", "--node-ip-address=127.0.0.1",
                              "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--disable-usage-stats",
                              f"--dashboard-agent-listen-port={_free_port()}", f"--ray-client-server-port={_free_port()}",
                              f"--temp-dir={tempfile.mkdtemp(prefix='rayjob-', dir='/tmp')}"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = start.communicate(timeout=120)
        assert start.returncode == 0, out
        dry = run_cli("configs/quickstart.yaml", "--address", f"127.0.0.1:{gcs}", "--dry-run", "--set", "ray.num_workers=2",
                      "--set", "ray.cpus_per_worker=2", "--set", "ray.use_gpu=true", env={"RAY_ADDRESS": ""})
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "the cluster has no GPU" in dry.stderr and "need more than the 2 CPU(s) of the cluster" in dry.stderr

        def submit(*args):
            return subprocess.run(
                [ray, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--working-dir", str(REPO),
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
    finally:
        assert not kill_session(start.pid), "Ray processes survive SIGKILL"


def test_per_worker_memory_reproduces_the_erratum(tmp_path):
    """memory.per_worker: each of 2 workers keeps the full budget, so the effective memory doubles."""
    proc = run_cli(*FAST, "--set", "ray.num_workers=2", "--set", "memory.per_worker=true", "--memory-size", "100",
                   "--output-basedir", tmp_path, env=ENV)
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
