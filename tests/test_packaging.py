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


EXTRAS = PYPROJECT["project"]["optional-dependencies"]
OWN_EXTRA = re.compile(rf"{PYPROJECT['project']['name']}\[([a-z,]+)\]")  # e.g. the test extra's daformer-suite[trackers]


@pytest.mark.parametrize("listed", [PYPROJECT["project"]["dependencies"], *EXTRAS.values()],
                         ids=["run", *EXTRAS])
def test_pyproject_pins_every_requirement(listed):
    """Every requirement pinned, or another extra of the suite's own (whose pins are checked there)."""
    own = [r for r in listed if OWN_EXTRA.fullmatch(r)]
    assert all(set(OWN_EXTRA.fullmatch(r).group(1).split(",")) <= set(EXTRAS) for r in own)
    pinned = [r for r in listed if r not in own]
    assert listed and all(re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[0-9][0-9A-Za-z.]*", r) for r in pinned)


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
