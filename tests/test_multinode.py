"""Two Ray nodes on this one machine, made as users make them (`ray start --head`, then `ray start
--address` for the second), and runs of the CLI against them with `--address`: two workers spread
one per node (ray.placement_strategy=SPREAD), then the second node killed mid-run (its raylet,
agents and worker, SIGKILL) and the run finishing on the head alone, restarted by Ray Train from
the last task checkpoint, with the accuracy matrix of the uninterrupted run.

Each node's processes live in the session of its own `ray start` (its own --temp-dir, its own
ports), so the fixture stops exactly those processes, pass or fail, and never another Ray of this
machine (no `ray stop`, which stops every Ray here). Ray never uses the loopback address as a node's
IP: both nodes advertise this machine's own address, and they are told apart by node id.

"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_command
from tests.ray_nodes import ENV, free_port, head_args, kill_session, node_env, ray_start, results
from tests.runs import Pause, events, registered_checkpoints, wait_for

pytestmark = pytest.mark.slow  # Ray clusters and real runs: tens of seconds each (CI runs them)

# the quickstart's first 2 tasks (digits, 2 classes each; the node is killed in the second), two
# workers spread one a node
RUN = ["configs/quickstart.yaml", "--set", "train.epochs=2", "--set", "finetune.epochs=1", "--set",
       "memory.selection=random", "--set", "data.max_classes=4", "--set", "ray.num_workers=2",
       "--set", "ray.cpus_per_worker=1", "--set", "ray.placement_strategy=SPREAD", "--set", "ray.max_failures=2",
       "--set", "report.at_end=false"]  # no test here reads a report
HEAD_CPUS, SECOND_CPUS = 2, 1  # the head alone has room for both workers (the driver and Train's controller take 0 CPUs)
SECOND_GPUS = 1  # declared, not real: Ray counts it as a resource (the CPU runs here never ask for it)


@dataclass
class Node:
    session: int  # the session id of its `ray start`: every process of the node (workers too) is in it
    node_id: str = ""


@dataclass
class Cluster:
    root: Path
    env: dict
    gcs: int
    dashboard: int
    head: Node = None
    second: Node = None
    drivers: list = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs}"

    def nodes(self) -> dict:
        """node id -> its state (ALIVE, DEAD), from Ray's state API (no ray.init here)."""
        from ray.util.state import list_nodes

        return {n.node_id: n.state for n in list_nodes(address=self.address, limit=100)}

    def actors(self, class_name: str) -> list:
        from ray.util.state import list_actors

        return list_actors(address=self.address, filters=[("class_name", "=", class_name)], detail=True,
                           limit=10000, raise_on_missing_output=False)

    def run(self, base: Path, name: str, env: dict | None = None) -> subprocess.Popen:
        """`python suite/run.py ... --address` in a session of its own, its output into BASE/NAME.out
        (a pipe nobody reads while the test waits could fill and stall the run)."""
        output = base / f"{name}.out"
        with open(output, "w") as log:
            proc = subprocess.Popen(cli_command(*RUN, "--address", self.address, "--output-basedir", base, "--name", name),
                                    cwd=REPO, env={**self.env, **(env or {})}, start_new_session=True, stdout=log,
                                    stderr=subprocess.STDOUT)
        proc.output = output
        self.drivers.append(proc)
        return proc


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for a run; its output (exit 0 asserted)."""
    proc.wait(timeout=timeout)
    out = proc.output.read_text()
    assert proc.returncode == 0, out[-5000:]
    return out


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="ray2n-", dir="/tmp"))  # short: Ray's socket paths are under it
    c = Cluster(root=root, env=node_env(), gcs=free_port(), dashboard=free_port())
    previous = {key: os.environ.get(key) for key in ENV}
    os.environ.update(ENV)  # the state API calls from this process: the cluster's auth mode
    try:
        c.head = Node(ray_start(c.env, *head_args(HEAD_CPUS, c.gcs, c.dashboard, root / "head")))
        (c.head.node_id,) = wait_for(lambda: list(c.nodes()), "the head to register", timeout=60, poll=0.2)
        c.second = Node(ray_start(c.env, f"--address={c.address}", f"--num-cpus={SECOND_CPUS}",
                                  f"--num-gpus={SECOND_GPUS}", "--node-ip-address=127.0.0.1",
                                  f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={root / 'second'}"))
        alive = wait_for(lambda: [n for n, s in c.nodes().items() if s == "ALIVE"] if len(c.nodes()) == 2 else [],
                         "the second node to register", timeout=60, poll=0.2)
        (c.second.node_id,) = set(alive) - {c.head.node_id}
        yield c
    finally:
        for proc in c.drivers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        survivors = []
        for node in (c.second, c.head):
            if node is not None:
                survivors += kill_session(node.session)
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(root, ignore_errors=True)
        assert not survivors, f"Ray processes survive SIGKILL: {survivors}"


def worker_groups(cluster: Cluster, before: set) -> list[list[str]]:
    """The nodes (sorted node ids) of each worker group (placement group) of RayTrainWorker actors
    started since `before` (actor ids), sorted."""
    groups: dict[str, list] = {}
    for actor in cluster.actors("RayTrainWorker"):
        if actor.actor_id not in before:
            groups.setdefault(actor.placement_group_id, []).append(actor.node_id)
    return sorted(sorted(nodes) for nodes in groups.values())


def live_workers(cluster: Cluster, before: set) -> list[str]:
    return sorted(a.node_id for a in cluster.actors("RayTrainWorker") if a.actor_id not in before and a.state == "ALIVE")


def actor_ids(cluster: Cluster) -> set:
    return {a.actor_id for a in cluster.actors("RayTrainWorker")}


@pytest.fixture(scope="module")
def reference(cluster, tmp_path_factory):
    """The uninterrupted run, over both nodes; and its worker groups."""
    base = tmp_path_factory.mktemp("reference")
    before = actor_ids(cluster)
    out = finish(cluster.run(base, "whole"))
    return results(base / "whole"), worker_groups(cluster, before), out


def test_two_workers_run_one_on_each_node(cluster, reference):
    doc, groups, out = reference
    assert doc["status"] == "finished" and doc["provenance"]["world_size"] == 2
    assert groups == [sorted([cluster.head.node_id, cluster.second.node_id])]  # one group, one worker a node
    # none of the driver's own (Ray forwards its actors' lines prefixed "(ActorName pid=N)": with
    # another Ray on the machine, Train's PlacementGroupCleaner prints a ConnectionError there)
    assert not any(line.startswith("Traceback") for line in out.splitlines()), out[-5000:]


def test_gpu_workers_share_out_the_cpus_of_the_gpu_node(cluster):
    """On the live cluster: a GPU worker without ray.cpus_per_worker asks for the GPU node's CPU per
    GPU, not the cluster's 3 CPUs shared out (2 of them the head's, where no GPU worker can run)."""
    script = ("from suite.config import load; from suite.run.cluster import cluster_nodes; "
              "from suite.run.plan import worker_cpus; "
              f"print(worker_cpus(load([], ['ray.use_gpu=true']).ray, cluster_nodes('{cluster.address}')))")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=cluster.env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == f"{SECOND_CPUS // SECOND_GPUS:.1f}", proc.stdout


def test_killed_node_the_run_finishes_on_the_head_identically(cluster, reference, tmp_path):
    """The second node killed after task 1 (the run halted there, suite/run/rendezvous.py, and task 1's
    checkpoint registered), then the run let go."""
    run_dir = tmp_path / "killed"
    before = actor_ids(cluster)
    pause = Pause(tmp_path / "pause", "task:1")
    proc = cluster.run(tmp_path, "killed", env=pause.env)
    pause.wait(proc)
    wait_for(lambda: "task_000" in registered_checkpoints(run_dir), "task 1's checkpoint to be registered", proc)
    assert live_workers(cluster, before) == sorted([cluster.head.node_id, cluster.second.node_id])

    assert not kill_session(cluster.second.session)
    killed_at = time.monotonic()
    pause.release()  # rank 0, if it was on the head; Train restarts the group either way
    assert results(run_dir)["tasks_done"] == 1 and proc.poll() is None  # killed in task 2
    out = finish(proc)
    finished_s = time.monotonic() - killed_at
    assert wait_for(lambda: cluster.nodes()[cluster.second.node_id] == "DEAD", "the node to be marked dead", timeout=60)

    doc = results(run_dir)
    assert doc["status"] == "finished" and doc["provenance"]["world_size"] == 2
    assert doc["acc_matrix"] == reference[0]["acc_matrix"]

    # one restart: the first group on both nodes, the second on the head alone
    assert worker_groups(cluster, before) == sorted([sorted([cluster.head.node_id, cluster.second.node_id]),
                                                     [cluster.head.node_id] * 2])

    log = events(run_dir)
    resumes = [e for e in log if e["event"] == "resume"]
    assert len(resumes) == 1, resumes  # from a task checkpoint, not from scratch:
    assert sum(e["event"] == "epoch" and e["task"] == 1 and e["phase"] == "train" for e in log) == 2
    assert f"resumed after task {resumes[0]['next_task'] - 1} from" in out and resumes[0]["next_task"] >= 2
    print(f"second node killed; the run finished {finished_s:.1f} s later")
