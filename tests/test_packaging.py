"""The suite as a package: pyproject's entry point and pins, what requirements.txt installs, the command."""
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


@pytest.mark.parametrize("listed", [PYPROJECT["project"]["dependencies"],
                                    PYPROJECT["project"]["optional-dependencies"]["test"]], ids=["run", "test"])
def test_pyproject_pins_every_requirement(listed):
    assert listed and all(re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[0-9][0-9A-Za-z.]*", r) for r in listed)


def test_requirements_file_installs_the_package_with_its_tests():
    lines = [line for line in (REPO / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert lines == ["-e .[test]"]


def test_installed_command_plans_the_quickstart():
    command = shutil.which("daformer-suite")
    if command is None:
        pytest.skip("the suite is not installed here (pip install -r requirements.txt puts daformer-suite on the path)")
    done = subprocess.run([command, "configs/quickstart.yaml", "--dry-run"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "dry run: nothing trained, nothing written" in done.stdout
