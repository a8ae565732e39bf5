"""Connect to a Ray cluster, or start an embedded local one sized to this machine."""
from __future__ import annotations

import logging
import os
import socket
import sys
from urllib.parse import urlparse

import ray
from ray._private import services  # the node address ray.init will use (no public API gives it first)

from suite.errors import UserError
from suite.run import rendezvous

WORKER_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_OFFLINE": "1",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",  # else Ray Train V2 prints every worker line twice
    # glibc's default allocator cost up to 24% of a training step here in page faults (reports/perf/)
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": "68719476736",
    # Ray Train's controller polls the workers every 2 s by default: a run then ends up to 2 s after
    # its last report (2-3 s of the quickstart's end; bench/experiments/README.md#ray-startup)
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
}


TRAIN_ENV = {k: v for k, v in WORKER_ENV.items() if k.startswith("RAY_TRAIN_")}  # read by Train's controller too


def set_driver_env() -> None:
    """In the process that starts a TorchTrainer: Train's own settings (Train hands the driver's
    RAY_TRAIN_* variables on to its controller and workers) and, when the output is not a terminal,
    no colour codes in the lines Ray forwards from its workers. A value the user set stays."""
    for key, value in TRAIN_ENV.items():
        os.environ.setdefault(key, value)
    if not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")


def worker_runtime_env() -> dict:
    """The Train workers' runtime env (RunConfig.worker_runtime_env): WORKER_ENV, less the variables
    the job's own runtime env sets (`ray job submit --runtime-env-json`), whose values win; and a
    test's rendezvous, if it set one (suite/run/rendezvous.py)."""
    job = (ray.get_runtime_context().runtime_env or {}).get("env_vars") or {}
    return {"env_vars": {**{k: v for k, v in WORKER_ENV.items() if k not in job}, **rendezvous.variables()}}


def check_reachable(address: str) -> None:
    """Fail fast on a host:port nobody listens at: ray.init would retry for minutes."""
    if address == "auto":
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or not parsed.port:
        raise UserError(f"--address '{address}' is malformed; expected HOST:PORT (e.g. 127.0.0.1:6379), "
                        "ray://HOST:PORT or 'auto'")
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=5).close()
    except OSError as e:
        raise UserError(f"--address '{address}': no Ray cluster answers there ({e.strerror or e}); "
                        "expected the address of a running head (see `ray start --head`)") from None


def start_local_ray(extra_env: dict | None = None, log_to_driver: bool = True):
    """A private local Ray on every CPU of this machine, its dashboard on loopback (Ray Train's state
    API needs it), the workers' environment WORKER_ENV plus `extra_env`.

    Its address is chosen here and given to its processes as RAY_ADDRESS: Ray's state API (which
    Train's controller uses) otherwise looks for "the" Ray of this host, and with a second one
    running it fails. No idle workers are prestarted: Ray boots them for the driver's first tasks,
    but every actor of a run asks for the job's runtime_env, so none is ever used."""
    address = f"{services.get_node_ip_address()}:{free_port()}"
    os.environ["RAY_GCS_SERVER_PORT"] = address.rsplit(":", 1)[1]  # read by ray.init's head node
    try:
        return ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=True, dashboard_host="127.0.0.1",
                        runtime_env={"env_vars": {**WORKER_ENV, "RAY_ADDRESS": address, **(extra_env or {})}},
                        log_to_driver=log_to_driver, logging_level=logging.WARNING,
                        _system_config={"prestart_worker_first_driver": False})
    finally:
        del os.environ["RAY_GCS_SERVER_PORT"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def init_ray(address: str | None):
    """Connect to the cluster at `address` (or RAY_ADDRESS); without either, start a private local Ray."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return ray
    set_driver_env()
    target = address or os.environ.get("RAY_ADDRESS")
    try:
        if target:  # no runtime_env here: a submitted job's own would conflict with it
            check_reachable(target)
            os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_TRACKING", "1")  # the dashboard's Train tab lists the run
            context = ray.init(address=target, log_to_driver=True, logging_level=logging.WARNING)
        else:
            context = start_local_ray()
    except ConnectionError as e:
        raise UserError(f"--address {target}: cannot reach a Ray cluster there ({e}); "
                        "expected the address of a running head, e.g. 127.0.0.1:6379 or http://HEAD:8265") from None
    where = f"cluster at {target}" if target else "local instance"
    dashboard = f"http://{context.dashboard_url}" if context.dashboard_url else "off"
    print(f"ray       {where}, dashboard {dashboard}", flush=True)  # Ray's own line: INFO, coloured
    return ray


def shutdown_ray() -> None:
    """End this driver's Ray (its embedded local one stops with it)."""
    ray.shutdown()


def cluster_nodes(address: str | None = None) -> list[dict]:
    """The resources (CPU, GPU, ...) of each live node of the cluster, connecting to it first if need be."""
    init_ray(address)
    return [node["Resources"] for node in ray.nodes() if node["Alive"]]
