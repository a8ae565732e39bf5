"""Runs through Ray Train for real: the quickstart on an embedded local Ray (beside a second one), a
killed worker of a run whose storage is a URI, and a `ray job submit` round trip (2 workers, per-worker
memory) against the shared `ray start` head. Two workers sharing one global memory:
tests/test_validation.py (its 2-worker run); a killed driver resumed: tests/test_preemption.py; on
two nodes: tests/test_multinode.py."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO, run_cli, start_cli
from tests.ray_nodes import ENV, RAY, node_env, results
from tests.runs import Pause, registered_checkpoints, wait_for

pytestmark = pytest.mark.slow  # Ray clusters and real runs: tens of seconds each (CI runs them)

FAST = ["--set", "train.epochs=2", "--set", "finetune.epochs=1", "--set", "memory.selection=random"]
TWO_TASKS = ["--set", "data.max_classes=4"]  # the second task is where a baseline does its own things
THREE_TASKS = ["--set", "data.max_classes=6"]  # a run whose worker is killed after task 2 still has a task to go
NO_REPORT = ["--set", "report.at_end=false"]  # for the tests that read no report: it costs seconds
NAME = "quickstart-daformer_m"


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    """The quickstart as users run it (an embedded Ray, one worker), its first 3 tasks, while another
    embedded Ray runs on this host: the run directory, stdout and stderr."""
    base = tmp_path_factory.mktemp("one")
    other = subprocess.Popen([sys.executable, "-c", "import ray, time; ray.init(address='local', num_cpus=1, "
                              "include_dashboard=False); print('up', flush=True); time.sleep(600)"],
                             env={**os.environ, **ENV}, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert other.stdout.readline().strip() == "up"
        proc = run_cli(*FAST, *THREE_TASKS, "--output-basedir", base, env={**ENV, "RAY_ADDRESS": ""})
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return base / NAME, proc.stdout, proc.stderr


def test_quickstart_runs_on_ray_train(one_worker):
    run_dir, out, _ = one_worker
    doc = results(run_dir)
    assert doc["status"] == "finished" and doc["provenance"]["world_size"] == 1
    assert len(doc["acc_matrix"]) == 3 and doc["memory_size"] == [200, 200, 198]
    assert sorted(p.name for p in (run_dir / "ray" / NAME).glob("task_*")) == ["task_001", "task_002"]  # keeps 2
    assert "task 3/3 finetune epoch 1/1" in out and "img/s" in out and "eta" in out
    assert "average incremental accuracy" in out and str(run_dir / "results.json") in out
    assert (run_dir / "report" / "index.html").exists()


def test_a_run_on_ray_keeps_its_history(one_worker):
    """log.jsonl: every epoch of every phase and every task, from rank 0; train.log: the console's lines."""
    run_dir, _, _ = one_worker
    doc = results(run_dir)
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    train, finetune = doc["config"]["train"]["epochs"], doc["config"]["finetune"]["epochs"]
    assert len(epochs) == 3 * train + 2 * finetune
    assert [(r["task"], r["phase"], r["epoch"]) for r in epochs][-2:] == [(3, "train", train), (3, "finetune", 1)]
    assert all(r["loss"] > 0 and r["lr"] > 0 and r["img_per_s"] > 0 for r in epochs)
    assert [r["acc"] for r in records if r["event"] == "task"] == doc["acc"]
    lines = (run_dir / "train.log").read_text().splitlines()
    assert "task 3/3 finetune epoch 1/1" in "\n".join(lines) and sum("accuracy: top-1" in line for line in lines) == 3


def test_two_embedded_rays_on_one_host(one_worker):
    """The quickstart ran while another embedded Ray ran on this host: Train's state-API calls found
    this run's own Ray (they used to fail with 'Found multiple active Ray instances')."""
    run_dir, out, err = one_worker
    assert "Traceback" not in out + err and "multiple active Ray" not in out + err
    assert results(run_dir)["status"] == "finished"


def test_killed_worker_restarts_from_a_storage_uri_and_finishes_identically(one_worker, ray_head, tmp_path):
    """On a cluster, output.storage_path a URI (file:// here; s3:// and gs:// go through the same
    pyarrow calls): the run's worker killed after task 2 (halted there, suite/run/rendezvous.py, and
    the task's checkpoint registered) is restarted by Ray Train from that checkpoint at the URI, and
    the run ends as an uninterrupted one."""
    store, runs = tmp_path / "store", tmp_path / "runs"
    args = [*FAST, *THREE_TASKS, "--output-basedir", runs, "--set", f"output.storage_path=file://{store}", "--address", ray_head.address]
    pause = Pause(tmp_path / "pause", "task:2")
    proc = start_cli(*args, env={**ENV, **pause.env})
    try:
        worker = pause.wait(proc)  # the halted process: rank 0's Train worker
        wait_for(lambda: "task_001" in registered_checkpoints(store / NAME), "task 2's checkpoint to be registered", proc)
        os.kill(worker, signal.SIGKILL)
        out, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out + err
    doc = results(store / NAME)
    assert doc["status"] == "finished" and doc["acc_matrix"] == results(one_worker[0])["acc_matrix"]
    log = [json.loads(line) for line in (store / NAME / "log.jsonl").read_text().splitlines()]
    assert [e["next_task"] for e in log if e["event"] == "resume"] == [3]  # restarted once, after task 2
    assert [p.name for p in sorted((store / NAME / "ray" / NAME).glob("task_*"))][-1] == "task_002"
    assert results(runs / NAME) == doc and (runs / NAME / "report" / "index.html").exists()  # the driver's copy
    assert not (runs / NAME / "ray").exists()

    shutil.rmtree(runs)  # a new run of the same name must not continue the stored one silently
    again = run_cli(*args, env=ENV)
    assert again.returncode == 2 and str(store / NAME / "results.json") in again.stderr and "--resume" in again.stderr


def test_a_baseline_trains_on_two_workers_and_reports_both_classifiers(ray_head, tmp_path):
    """BiC (its bias phase, held-out images, class means) through Ray Train with 2 workers."""
    proc = run_cli("configs/quickstart.yaml", "--address", ray_head.address, *FAST, *TWO_TASKS, "--set", "method=bic",
                   "--set", "ray.num_workers=2", "--set", "ray.cpus_per_worker=1", "--output-basedir", tmp_path,
                   env={**ENV, "RAY_ADDRESS": ""})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = results(tmp_path / "quickstart-bic")
    assert doc["status"] == "finished" and doc["provenance"]["world_size"] == 2
    assert doc["label"] == "BiC (re-run)" and doc["classifier"] == "cnn" and set(doc["classifiers"]) == {"cnn", "nme"}
    assert "task 2/2 bias     epoch 2/2" in proc.stdout and "nme top-1" in proc.stdout
    main = (tmp_path / "quickstart-bic" / "report" / "tables" / "main_digits.md").read_text()
    assert "BiC (re-run) (classifier=nme)" in main and "BiC (re-run) (classifier=cnn)" in main


def test_der_grows_a_backbone_a_task_on_two_workers(ray_head, tmp_path):
    """DER (a backbone per task: DDP prepared again as the model grows; the old backbones frozen) with
    the release's classifier handling (rebuilt each task, reset after the warm-up's epoch: rank 0's
    draw sent to both workers; retrained after the task), through Ray Train with 2 workers."""
    proc = run_cli("configs/quickstart.yaml", "--address", ray_head.address, *FAST, *NO_REPORT,
                   "--set", "data.max_classes=6",
                   "--set", "method=der",
                   "--set", "finetune.retrain_classifier=true", "--set", "ray.num_workers=2",
                   "--set", "ray.cpus_per_worker=1", "--output-basedir", tmp_path, env={**ENV, "RAY_ADDRESS": ""})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = results(tmp_path / "quickstart-der")
    assert doc["status"] == "finished" and doc["provenance"]["world_size"] == 2 and doc["label"] == "DER w/o P (re-run)"
    # after task t: t ResNet-32s (64 features each) and 2t classes over their 64t features, a bias each
    growth = [b - a for a, b in zip(doc["num_params"], doc["num_params"][1:])]
    assert [b - a for a, b in zip(growth, growth[1:])] == [2 * 64 * 2]  # the same backbone each task
    assert "task 3/3 finetune epoch 1/1" in proc.stdout


def test_podnet_finetunes_on_its_balanced_memory_on_two_workers(ray_head, tmp_path):
    """PODNet (stage outputs distilled, the finetuning memory herded once for both workers) through Ray
    Train with 2 workers, on the quick start's SGD for it (its by_method section)."""
    proc = run_cli("configs/quickstart.yaml", "--address", ray_head.address, *FAST, *TWO_TASKS, *NO_REPORT,
                   "--set", "method=podnet",
                   "--set", "ray.num_workers=2", "--set", "ray.cpus_per_worker=1", "--output-basedir", tmp_path,
                   env={**ENV, "RAY_ADDRESS": ""})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = results(tmp_path / "quickstart-podnet")
    assert doc["status"] == "finished" and doc["provenance"]["world_size"] == 2 and doc["label"] == "PODNet (re-run)"
    assert doc["config"]["train"]["optimizer"] == "sgd" and set(doc["classifiers"]) == {"cnn", "nme"}
    assert "task 2/2 finetuning memory: 400 exemplars (100 per class, random)" in proc.stdout
    assert "task 2/2 finetune epoch 1/1" in proc.stdout and doc["memory_size"] == [200] * 2


def test_ucir_imprints_its_weights_on_two_workers(ray_head, tmp_path):
    """UCIR (weights imprinted from every new class's images, the same on each worker) through Ray Train
    with 2 workers."""
    proc = run_cli("configs/quickstart.yaml", "--address", ray_head.address, *FAST, *TWO_TASKS, *NO_REPORT,
                   "--set", "method=ucir",
                   "--set", "ray.num_workers=2", "--set", "ray.cpus_per_worker=1", "--output-basedir", tmp_path,
                   env={**ENV, "RAY_ADDRESS": ""})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = results(tmp_path / "quickstart-ucir")
    assert doc["status"] == "finished" and doc["provenance"]["world_size"] == 2 and doc["label"] == "UCIR (re-run)"
    assert len(doc["acc"]) == 2 and set(doc["classifiers"]) == {"cnn", "nme"}


def test_foster_boosts_and_compresses_on_two_workers(ray_head, tmp_path):
    """FOSTER (a second backbone each task, DDP prepared again for the compression's student) through
    Ray Train with 2 workers."""
    proc = run_cli("configs/quickstart.yaml", "--address", ray_head.address, *FAST, *TWO_TASKS, *NO_REPORT,
                   "--set", "method=foster",
                   "--set", "distill.compress_epochs=1", "--set", "ray.num_workers=2", "--set", "ray.cpus_per_worker=1",
                   "--output-basedir", tmp_path, env={**ENV, "RAY_ADDRESS": ""})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = results(tmp_path / "quickstart-foster")
    assert doc["status"] == "finished" and doc["provenance"]["world_size"] == 2 and doc["label"] == "FOSTER (re-run)"
    assert "task 2/2 compress epoch 1/1" in proc.stdout and set(doc["classifiers"]) == {"cnn", "nme", "student"}
    assert doc["num_params"][1] > 1.9 * doc["num_params"][0]  # the boosted network: two backbones


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
             "--", "python", "suite/run.py", "configs/quickstart.yaml", *FAST, *NO_REPORT, *args],
            env=env, capture_output=True, text=True, timeout=600)

    # memory.per_worker (the erratum's protocol): each of the 2 workers keeps the full budget
    job = submit("--set", "ray.num_workers=2", "--set", "memory.per_worker=true", "--memory-size", "100",
                 "--output-basedir", str(tmp_path))
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout
    doc = results(tmp_path / NAME)
    assert doc["status"] == "finished" and doc["provenance"]["world_size"] == 2
    assert doc["memory_size"] == [200, 200, 192, 192, 200]  # the effective memory doubles: 2 x [100, 100, 96, 96, 100]
    lines = job.stdout.splitlines()  # the job's own log, between the CLI's lines
    entry = next(i for i, line in enumerate(lines) if line.startswith("Running entrypoint"))
    log = lines[entry + 1:next(i for i, line in enumerate(lines) if i > entry and " cli.py:" in line)]
    assert any("epoch" in line for line in log) and not any("\x1b[" in line for line in log)  # no colour codes
    assert not any(" INFO " in line for line in log)  # Train's INFO lines are off (ray.log_level)

    relative = submit("--output-basedir", "runs")  # would land in Ray's temporary copy of the repository
    assert relative.returncode != 0 and "Ray deletes when the job ends" in relative.stdout + relative.stderr
