"""`python -m bench.gpu_ray.wheels --out .whl [--check PYTHON3.12]`: wheels that bring Ray to the GPU machine.

The lent GPU machine (CPython 3.12, torch, no network) lacks Ray and part of what Ray needs. This
downloads ray 2.60.0 for CPython 3.12 on manylinux x86-64 and every package in the closure of its
Requires-Dist (core, plus the extras the suite uses: train, tune, and default, because the suite
starts the dashboard) that the machine lacks (device_packages.txt). Each is pinned to the version
installed in the running environment, so run this with CI's venv: the device then runs what CI runs.
Ray's wheel is repacked without what the suite never loads (EXCLUDED_PATHS), with a correct RECORD.

It prints a size table and exits 2 when the wheels and the git working tree would not fit in the
64 MiB that travels. `--check PYTHON` installs the result with that interpreter (it must be 3.12)
into a temporary target, as the device does, beside the packages the device already has (simulated
by the same pins), imports Ray, Ray Train and Ray Tune from it and starts a local Ray with its
dashboard (about a minute, most of it downloads and installs).
"""
from __future__ import annotations

import argparse
import base64
import csv
import fnmatch
import hashlib
import io
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ROOT = "ray[default,train,tune]==2.60.0"
TRAVEL_LIMIT = 64 * 2**20  # what one device call carries: working tree + carried paths
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
MARKERS = {"python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
           "implementation_version": "3.12.3", "platform_python_implementation": "CPython", "os_name": "posix",
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
           "platform_release": "", "platform_version": ""}

# Packages in the closure that the suite never loads on the device, and all they alone pull in.
EXCLUDED_PACKAGES = {
    # Ray imports virtualenv only to build a runtime_env with `pip` or `uv`
    # (ray/_private/runtime_env/pip.py, uv.py); the suite's runtime_env holds env_vars alone
    # (suite/run/cluster.py). 6 MB with distlib, platformdirs and python-discovery.
    "virtualenv": "runtime_env pip/uv only; the suite's runtime_env is env_vars",
    # An executable the dashboard runs on request (stack dumps, CPU profiles) and `ray stack`;
    # no module imports it. 3 MB.
    "py-spy": "executable for on-demand dashboard profiling; never imported",
    # Only google-api-core needs it. opencensus declares google-api-core, but none of its modules
    # imports google.api_core (grep); what it loads from there is google.rpc (googleapis-common-
    # protos, carried: the dashboard's metrics exporter reaches it through opencensus.trace).
    # google-auth pulls cryptography and cffi: 5 MB.
    "google-auth": "only google-api-core needs it, and nothing imports google.api_core",
}

# Parts of ray's wheel the suite never loads.
EXCLUDED_PATHS = {
    # Java workers' classes (ray_dist.jar, 31 MB compressed): loaded only by Java workers and
    # cross-language calls; the suite's workers are Python.
    "ray/jars/*": "Java worker jars",
    # Source maps of the dashboard's JavaScript (1.5 MB), read only by a browser's developer tools.
    "*.map": "dashboard source maps",
}

# What --check runs from the installed target: the imports, then a local Ray with its dashboard as
# the suite starts it (suite/run/cluster.py), one task, and the dashboard's HTTP API.
CHECK_SCRIPT = """
import json, sys, time, urllib.request
import ray, ray.train, ray.tune, ray.tune.integration.ray_train, ray.dashboard.optional_deps
ctx = ray.init(address="local", num_cpus=1, include_dashboard=True, dashboard_host="127.0.0.1",
               _temp_dir=sys.argv[1], log_to_driver=False)
assert ray.get(ray.remote(lambda: 42).remote()) == 42
for _ in range(120):
    try:
        version = json.load(urllib.request.urlopen(f"http://{ctx.dashboard_url}/api/version", timeout=5))
        break
    except OSError:
        time.sleep(1)
else:
    log = open(sys.argv[1] + "/session_latest/logs/dashboard.log").read().strip().splitlines()
    raise SystemExit(f"the dashboard did not answer in 120 s; the end of its log: {log[-1] if log else ''}")
ray.shutdown()
print("ray", ray.__version__, "from", ray.__file__, "; dashboard answered:", version.get("ray_version"))
"""


@dataclass
class Closure:
    carried: dict[str, str] = field(default_factory=dict)  # name -> pinned version
    present: dict[str, str] = field(default_factory=dict)  # name -> the package that needs it
    excluded: dict[str, str] = field(default_factory=dict)  # name -> the package that needs it


def device_packages(path: Path = HERE / "device_packages.txt") -> set[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return {canonicalize_name(line) for line in lines if line and not line.startswith("#")}


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def applies(req: Requirement, extras: set[str]) -> bool:
    """Whether `req` is needed on the device, for a package installed with `extras`."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**MARKERS, "extra": e}) for e in extras | {""})


def wheel_requires(path: Path) -> list[Requirement]:
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        meta = Parser().parsestr(z.read(name).decode())
    return [Requirement(r) for r in meta.get_all("Requires-Dist") or []]


def download(specs: list[str], dest: Path) -> None:
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", *platforms, "-d", str(dest), *specs]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.startswith("ERROR")] or done.stderr.splitlines()
        raise SystemExit(f"error: pip download {' '.join(specs)} failed: {lines[-1] if lines else done.returncode}")


def wheels_in(directory: Path) -> dict[str, Path]:
    return {canonicalize_name(parse_wheel_filename(p.name)[0]): p for p in directory.glob("*.whl")}


def resolve(dest: Path, on_device: set[str], pin=installed_version) -> Closure:
    """Download the closure of ROOT into `dest`, level by level, without what is `on_device` or
    excluded (and what only they need); each package at `pin(name)`."""
    closure = Closure()
    todo = [(Requirement(ROOT), "the suite")]
    while todo:
        level = {}
        for req, parent in todo:
            name = canonicalize_name(req.name)
            if name in closure.carried or name in level or name in closure.present or name in closure.excluded:
                continue
            if name in on_device:
                closure.present[name] = parent
                continue
            if name in EXCLUDED_PACKAGES:
                closure.excluded[name] = parent
                continue
            version = pin(name)
            if version is None:
                raise SystemExit(f"error: {name} (needed by {parent}) is not installed here, so it has no pin; "
                                 f"run with CI's environment (pip install -r requirements.txt)")
            if not req.specifier.contains(version, prereleases=True):
                raise SystemExit(f"error: {parent} needs {req.name}{req.specifier}, but {name} {version} is installed here")
            level[name] = (version, set(req.extras))
        if not level:
            break
        download([f"{n}=={v}" for n, (v, _) in level.items()], dest)
        found = wheels_in(dest)
        todo = []
        for name, (version, extras) in level.items():
            closure.carried[name] = version
            todo += [(r, name) for r in wheel_requires(found[name]) if applies(r, extras)]
    return closure


def _excluded_path(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in EXCLUDED_PATHS)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def repack(src: Path, dst: Path, excluded=_excluded_path) -> dict:
    """Copy the wheel `src` to `dst` without the members `excluded(name)` selects; RECORD rewritten
    (signatures of the old one dropped), file modes kept."""
    removed, removed_bytes = 0, 0
    tmp = dst.with_name(dst.name + ".tmp")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
        record = next(n for n in zin.namelist() if re.fullmatch(r"[^/]+\.dist-info/RECORD", n))
        rows = []
        for info in zin.infolist():
            name = info.filename
            if name in (record, record + ".jws", record + ".p7s"):
                continue
            if excluded(name):
                removed += 1
                removed_bytes += info.compress_size
                continue
            data = zin.read(info)
            out = zipfile.ZipInfo(name, info.date_time)
            out.external_attr, out.create_system, out.compress_type = info.external_attr, info.create_system, \
                zipfile.ZIP_DEFLATED
            zout.writestr(out, data)
            if not name.endswith("/"):
                rows.append((name, _record_hash(data), str(len(data))))
        rows.append((record, "", ""))
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        zout.writestr(zipfile.ZipInfo(record, (2026, 1, 1, 0, 0, 0)), text.getvalue())
    os.replace(tmp, dst)
    return {"removed_files": removed, "removed_bytes": removed_bytes}


def tree_size(repo: Path, skip: Path) -> int:
    """Bytes of what a device call sends: tracked and untracked-not-ignored files, and shared/."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout.split("\0")
    files = {repo / f for f in listed if f}
    if (repo / "shared").is_dir():
        files |= {p for p in (repo / "shared").rglob("*") if p.is_file()}
    skip = skip.resolve()
    return sum(p.stat().st_size for p in files if p.is_file() and skip not in p.resolve().parents)


def mib(n: int) -> str:
    return f"{n / 2**20:.2f}"


def make(out: Path, repo: Path, also: set[str] = frozenset()) -> tuple[Closure, int]:
    """The wheels into `out` (its old wheels removed: two versions of a package stop the install);
    `also` names packages to carry though the device has them."""
    with tempfile.TemporaryDirectory(prefix="gpu-ray-wheels-") as tmp:
        closure = resolve(Path(tmp), device_packages() - also)
        found = wheels_in(Path(tmp))
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*.whl"):
            old.unlink()
        rows = []
        for name in sorted(closure.carried):
            src, dst = found[name], out / found[name].name
            note = ""
            if name == "ray":
                stripped = repack(src, dst)
                note = (f"stripped {mib(src.stat().st_size - dst.stat().st_size)} MiB "
                        f"({stripped['removed_files']} files: {', '.join(EXCLUDED_PATHS.values())})")
            else:
                dst.write_bytes(src.read_bytes())
            rows.append((name, closure.carried[name], dst.stat().st_size, note))
    total = sum(r[2] for r in rows)
    tree = tree_size(repo, out)
    print(f"{'wheel':34} {'version':12} {'MiB':>7}  note")
    for name, version, size, note in rows:
        print(f"{name:34} {version:12} {mib(size):>7}  {note}")
    print(f"{'total':34} {'':12} {mib(total):>7}  {len(rows)} wheels in {out}")
    print(f"{'working tree':34} {'':12} {mib(tree):>7}  tracked + untracked-not-ignored files of {repo}")
    print(f"{'left of the 64 MiB that travels':34} {'':12} {mib(TRAVEL_LIMIT - tree - total):>7}")
    print("on the device already: " + ", ".join(sorted(closure.present)))
    print("left out: " + "; ".join(f"{n} ({EXCLUDED_PACKAGES[n]}; needed by {p})" for n, p in closure.excluded.items()))
    return closure, TRAVEL_LIMIT - tree - total


def check(python: str, out: Path, closure: Closure) -> None:
    """Install `out` as the device does, and import and start Ray from it, with the device's own
    packages simulated by the rest of Ray's closure at this environment's versions."""
    with tempfile.TemporaryDirectory(prefix="gpu-ray-check-") as tmp:
        tmp = Path(tmp)
        (tmp / "sim").mkdir()
        resolve(tmp / "sim", set())
        device_only = [p for n, p in wheels_in(tmp / "sim").items() if n not in closure.carried]
        install = [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
                   "--upgrade", "--target"]
        subprocess.run([*install, str(tmp / "site"), *map(str, sorted(out.glob("*.whl")))], check=True)
        subprocess.run([*install, str(tmp / "device"), *map(str, device_only)], check=True)
        env = {**os.environ, "PYTHONPATH": f"{tmp / 'site'}:{tmp / 'device'}", "RAY_USAGE_STATS_ENABLED": "0",
               "RAY_AUTH_MODE": "disabled"}  # else the HTTP API wants the session token
        done = subprocess.run([python, "-c", CHECK_SCRIPT, str(tmp / "ray")], env=env, cwd=tmp, capture_output=True,
                              text=True, timeout=300)
        if done.returncode != 0:
            raise SystemExit(f"error: the check failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
        print(f"check: {done.stdout.strip()} ({len(device_only)} device packages simulated)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_ray.wheels", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=REPO / ".whl", help="where the wheels go (default: REPO/.whl)")
    p.add_argument("--repo", type=Path, default=REPO, help="the checkout whose working tree travels with them")
    p.add_argument("--check", metavar="PYTHON", help="a CPython 3.12 to install and import the result with")
    p.add_argument("--also", default="", metavar="NAME,...",
                   help="packages of Ray's closure to carry though the device has them, e.g. protobuf when "
                        "the device's `pip check` (in report.json) finds its version too old for a carried one")
    args = p.parse_args(argv)
    also = {canonicalize_name(n) for n in args.also.split(",") if n.strip()}
    closure, left = make(args.out.resolve(), args.repo.resolve(), also)
    if left < 0:
        print(f"error: the wheels and the working tree exceed the 64 MiB that travels by {mib(-left)} MiB",
              file=sys.stderr)
        return 2
    if args.check:
        check(args.check, args.out.resolve(), closure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
