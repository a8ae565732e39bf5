"""The suite as a package: pyproject's entry point and ranges, the tested pins, what requirements.txt installs."""
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
REQUIREMENT = re.compile(r"([A-Za-z0-9_.\-]+)(\[[a-z,]+\])?(.*)")
CONSTRAINTS = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                   if line and not line.startswith("#"))


def name(requirement: str) -> str:
    return REQUIREMENT.fullmatch(requirement).group(1).lower()


@pytest.mark.parametrize("listed", [PYPROJECT["project"]["dependencies"], *EXTRAS.values()],
                         ids=["run", *EXTRAS])
def test_pyproject_gives_ranges_and_constraints_pin_each_to_a_version_inside_it(listed):
    """Every requirement a range with a lower and an upper bound (continuum, the tests' oracle, exactly
    the version whose quirks they document; six, which continuum needs undeclared, from a floor), or
    another extra of the suite's own; constraints.txt pins each, inside its range."""
    from packaging.specifiers import SpecifierSet

    own = [r for r in listed if OWN_EXTRA.fullmatch(r)]
    assert all(set(OWN_EXTRA.fullmatch(r).group(1).split(",")) <= set(EXTRAS) for r in own)
    for requirement in (r for r in listed if r not in own):
        package, _, spec = REQUIREMENT.fullmatch(requirement).groups()
        operators = {s.operator for s in SpecifierSet(spec)}
        assert operators in ({">=", "<"}, {"=="}) or (package, operators) == ("six", {">="}), requirement
        pinned = {k.lower(): v for k, v in CONSTRAINTS.items()}[package.lower()]
        assert pinned in SpecifierSet(spec), f"{package}=={pinned} outside {spec}"


def test_the_core_install_leaves_out_the_test_oracle_and_the_trackers():
    core = {name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert not core & {"continuum", "six", "pytest", "wandb", "mlflow-skinny", "tensorboard"}


def test_requirements_file_installs_the_package_with_its_tests_at_the_tested_versions():
    lines = [line for line in (REPO / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert lines == ["-c constraints.txt", "-e .[test]"]
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+]*", version) for version in CONSTRAINTS.values())


def test_installed_command_plans_the_quickstart():
    command = shutil.which("daformer-suite")
    if command is None:
        pytest.skip("the suite is not installed here (pip install -r requirements.txt puts daformer-suite on the path)")
    done = subprocess.run([command, "configs/quickstart.yaml", "--dry-run"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "dry run: nothing trained, nothing written" in done.stdout
