"""The suite as a package: pyproject's entry point, the pinned requirements it reads, the command."""
import importlib
import re
import shutil
import subprocess
import tomllib

import pytest

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_entry_point_names_a_function_of_the_package():
    (target,) = PYPROJECT["project"]["scripts"].values()
    module, function = target.split(":")
    assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize("listed", [["dependencies"], ["optional-dependencies", "test"]])
def test_requirements_files_pyproject_reads_are_pinned(listed):
    entry = PYPROJECT["tool"]["setuptools"]["dynamic"]
    for key in listed:
        entry = entry[key]
    for name in entry["file"]:
        lines = [line for line in (REPO / name).read_text().splitlines() if line and not line.startswith("#")]
        assert lines and all(re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[0-9][0-9A-Za-z.]*", line)
                             for line in lines), name


def test_installed_command_plans_the_quickstart():
    command = shutil.which("daformer-suite")
    if command is None:
        pytest.skip("the suite is not installed here (pip install -e \".[test]\" puts daformer-suite on the path)")
    done = subprocess.run([command, "configs/quickstart.yaml", "--dry-run"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "dry run: nothing trained, nothing written" in done.stdout
