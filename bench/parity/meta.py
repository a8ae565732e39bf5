"""What a report names besides the runs: the machine, the sources and versions, our git state."""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def machine() -> dict:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    flags = set(fields.get("flags\t\t", fields.get("flags", "")).split())
    isa = [name for name, flag in (("AVX-512", "avx512f"), ("AMX", "amx_tile"), ("AVX2", "avx2")) if flag in flags]
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
    return {"cpu": fields.get("model name\t", platform.processor()).strip() or "unknown CPU",
            "cores": os.cpu_count(), "isa": ", ".join(isa) or "no AVX2", "memory_gib": pages / 2**30,
            "python": platform.python_version()}


def machine_line(m: dict) -> str:
    return f"{m['cpu']}, {m['cores']} cores ({m['isa']}), {m['memory_gib']:.0f} GiB, Python {m['python']}, no GPU"


def tree_sha256(root: Path) -> str:
    """Content hash of a checkout's .py/.yaml/.sh files (the exports carry no git metadata)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.suffix in (".py", ".yaml", ".sh") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def source(root: Path) -> dict:
    """A checkout; `.parity-source` (written by the export step, see the README) names its commit."""
    marker = root / ".parity-source"
    return {"path": str(root), "tree_sha256": tree_sha256(root),
            "commit": marker.read_text().strip() if marker.is_file() else None}


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def suite_dirty() -> bool:
    """Uncommitted changes in what our runs execute (suite/, configs/)."""
    out = subprocess.run(["git", "status", "--porcelain", "--", "suite", "configs"], cwd=REPO,
                         capture_output=True, text=True)
    return bool(out.stdout.strip())


def suite_diff_sha256() -> str:
    out = subprocess.run(["git", "diff", "HEAD", "--", "suite", "configs"], cwd=REPO, capture_output=True)
    return hashlib.sha256(out.stdout).hexdigest()


def versions(python: str) -> str:
    """The versions of the packages a side may use, in the venv of `python` ("-" for one it lacks)."""
    code = ("import importlib.metadata as m\n"
            "def v(p):\n"
            "    try: return m.version(p)\n"
            "    except m.PackageNotFoundError: return '-'\n"
            "print(', '.join(f'{p} {v(p)}' for p in ('torch','torchvision','timm','continuum','pillow','numpy',"
            "'scikit-learn')))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip().splitlines()[-1]
