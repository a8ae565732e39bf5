"""Ray nodes made as users make them (`ray start`), each in a process session of its own, so that a
test stops exactly its own nodes, pass or fail, and never another Ray of this machine (`ray stop`
stops every Ray here)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# the CLI and the nodes alike: no token to pass around, no usage report
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_env() -> dict:
    """The environment `ray start` and the CLI run with: ENV, this venv's `ray` first on the path,
    and no RAY_ADDRESS (the node started here, not any other)."""
    env = {**os.environ, **ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    return env


def ray_start(env: dict, *args: str) -> int:
    """`ray start ARGS` in a session of its own; the session id (every process of the node is in it)."""
    proc = subprocess.Popen([RAY, "start", *args, "--disable-usage-stats", "--log-color=false"], env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    if proc.returncode != 0:
        kill_session(proc.pid)  # whatever it had started
        pytest.fail(f"ray start {' '.join(args)} failed:\n{out[-3000:]}")
    return proc.pid


def head_args(cpus: int, gcs: int, dashboard: int, temp_dir: Path) -> list[str]:
    """A head on loopback with its own ports and temporary directory."""
    return ["--head", f"--num-cpus={cpus}", f"--port={gcs}", "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={free_port()}",
            f"--ray-client-server-port={free_port()}", f"--temp-dir={temp_dir}"]


def session_processes(session: int) -> list[int]:
    """The live Ray processes of one `ray start`'s session."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.getsid(pid) == session and b"ray" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:  # gone meanwhile
            pass
    return found


def kill_session(session: int, timeout: float = 30) -> list[int]:
    """SIGKILL every process of the session until none is left (a dying raylet may still be forking);
    the pids that survived, if any."""
    deadline = time.monotonic() + timeout
    while (pids := session_processes(session)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2)
    return session_processes(session)


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())
