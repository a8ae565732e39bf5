"""Out of memory through Ray Train ends the run in one line, without Train's retries (the same
batches would run out of memory again): a torch allocation that fails in a worker, and a worker
that Ray's memory monitor kills. A real monitor kill needs the whole machine near its memory limit
(it also kills Train's helper actors, the controller at times, and a neighbour's processes), so that
Train run fails with the exception Ray gives for such a kill instead."""
from __future__ import annotations

import json
import resource

import pytest
import ray
from ray.exceptions import ActorDiedError, OutOfMemoryError
from ray.train import ControllerError, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

from suite.config import load
from suite.run import ray_train, supervise
from suite.run.plan import plan_run
from suite.run.cluster import WORKER_ENV, cluster_nodes
from suite.run.memory_kill import KilledForMemory, killed_for_memory
from tests.conftest import TINY

KILLED = "Task was killed due to the node running low on memory. Memory on the node was 21.9GB / 23.0GB."
OOM_LINE = "out of memory: the attention scores of a training batch need about 1 GiB"


def test_what_counts_as_a_memory_kill():
    killed = killed_for_memory
    assert killed(WorkerHealthCheckFailedError("worker 0 failed its health check", OutOfMemoryError(KILLED)))
    assert killed(ControllerError(KilledForMemory("Ray's memory monitor killed worker(s) of rank [0]")))
    assert killed(RuntimeError(KILLED))
    assert not killed(WorkerHealthCheckFailedError("worker 0 failed its health check", ActorDiedError()))
    assert not killed(ControllerError(RuntimeError("the placement group is gone")))
    assert not killed(RuntimeError("boom"))


ROOM = 5 * 2**30  # address space a worker may map beyond what it has at its start (torch maps 2-3 GiB)


@pytest.fixture(scope="module")
def limited_ray():
    """A local Ray whose every worker process has at most ROOM more address space than it maps at
    its start, so that an 8 GiB attention tensor fails to allocate, as it would on a smaller
    machine or GPU (its dashboard: the driver finds Train's controllers through the state API)."""
    def limit_address_space() -> None:  # a closure: Ray pickles it by value (workers cannot import tests/)
        with open("/proc/self/status") as status:
            mapped = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (mapped + ROOM, resource.RLIM_INFINITY))

    ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
             runtime_env={"env_vars": WORKER_ENV, "worker_process_setup_hook": limit_address_space})
    yield
    ray.shutdown()


def oom_run(tmp_path, *sets: str):
    """The config and run directory of a TINY run named 'oom' that Train would retry twice."""
    cfg = load([], [*TINY, "ray.max_failures=2", f"output.basedir={tmp_path}", "output.name=oom", *sets])
    (tmp_path / "oom").mkdir()
    return cfg, tmp_path / "oom"


def killed_by_the_memory_monitor(config: dict) -> None:
    with open(config["attempts"], "a") as f:
        f.write("attempt\n")
    raise OutOfMemoryError(KILLED)


@pytest.mark.slow
def test_a_worker_killed_for_memory_ends_the_run_without_retries(limited_ray, tmp_path):
    cfg, run_dir = oom_run(tmp_path)
    attempts = tmp_path / "attempts.txt"
    trainer = TorchTrainer(killed_by_the_memory_monitor, train_loop_config={"attempts": str(attempts)},
                           scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                           run_config=ray_train.run_config(cfg, run_dir))
    with pytest.raises(supervise.RunFailed) as failed:
        supervise.fit(trainer, cfg, run_dir, OOM_LINE)
    assert str(failed.value) == f"{OOM_LINE} (Ray's memory monitor killed a worker)"
    assert attempts.read_text().count("attempt") == 1  # max_failures=2 would have made it 3


@pytest.mark.slow
def test_a_failed_allocation_in_a_worker_ends_the_run_in_one_line(limited_ray, tmp_path):
    """Rank 0 records the out-of-memory in results.json (one line: the estimate, the keys to change);
    the driver stops Train at its next look rather than letting it start the workers again."""
    cfg, run_dir = oom_run(tmp_path, "data.image_size=64", "model.patch_size=1", "train.batch_size=64")
    with pytest.raises(supervise.RunFailed) as failed:  # a training batch's scores: 8 GiB
        supervise.fit(ray_train.make_trainer(plan_run(cfg, run_dir), cluster_nodes()), cfg, run_dir, OOM_LINE)
    doc = json.loads((run_dir / "results.json").read_text())
    assert doc["status"] == "failed" and doc["error"] == f"OutOfMemory: {failed.value}"
    assert str(failed.value).startswith("out of memory: the attention scores of a training batch need about")
    assert "model.patch_size (now 1)" in str(failed.value)
