"""The package's layers, read from its imports (ast: top-level and inside functions alike).

    config, methods, metrics, errors, atomic   plain modules every layer may use
    data -> models -> learner                  know nothing of Ray, files or reports
    run/ (one run) and sweep/ (Ray Tune)       the only places Ray is imported
    report/                                    reads results files (run/schema.py) only
    cli.py                                     parses and dispatches
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "suite"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved, `from x import y` as x.y when y is a module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


SCRIPT = PACKAGE / "run.py"  # `python suite/run.py`, run by path: the package suite/run/ shadows it as a module
MODULES = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py")) if p != SCRIPT}


def modules_in(*prefixes: str) -> dict[str, set[str]]:
    return {m: i for m, i in MODULES.items() if any(m == p or m.startswith(p + ".") for p in prefixes)}


def arrows(sources: dict[str, set[str]], *targets: str) -> list[str]:
    """'a -> b' for every import of a target module (or a module inside it)."""
    return sorted(f"{m} -> {i}" for m, found in sources.items() for i in found
                  if any(i == t or i.startswith(t + ".") for t in targets))


def test_the_scan_sees_the_package():
    assert {"suite.cli", "suite.config", "suite.learner.learner", "suite.run.plan", "suite.sweep.tune",
            "suite.report.load", "suite.models.daformer"} <= set(MODULES)
    assert "ray.train" in MODULES["suite.run.ray_train"]
    assert "suite.config" in MODULES["suite.learner.learner"]


@pytest.mark.parametrize("layer", ["suite.models", "suite.learner", "suite.metrics", "suite.data",
                                   "suite.config", "suite.methods", "suite.report"])
def test_no_ray_below_the_run_layer(layer):
    assert arrows(modules_in(layer), "ray") == []


def test_ray_only_in_the_run_and_sweep_layers():
    outside = {m: i for m, i in MODULES.items() if not m.startswith(("suite.run.", "suite.sweep."))}
    assert arrows(outside, "ray") == []


@pytest.mark.parametrize("layer", ["suite.models", "suite.report"])
def test_no_config_in_models_or_report(layer):
    assert arrows(modules_in(layer), "suite.config") == []


def test_report_reads_result_files_only():
    """Of the run layer the report knows the results file's schema and the history file's name, nothing else."""
    run = arrows(modules_in("suite.report"), "suite.run", "suite.sweep", "suite.learner", "suite.models", "suite.cli")
    targets = {arrow.split(" -> ")[1] for arrow in run}
    assert targets == {"suite.run", "suite.run.schema", "suite.run.history", "suite.run.history.LOG"}
    assert {arrow for arrow in run if "history" in arrow.split(" -> ")[1]} == {
        "suite.report.history -> suite.run.history", "suite.report.history -> suite.run.history.LOG"}


@pytest.mark.parametrize("layer", ["suite.models", "suite.learner", "suite.data", "suite.metrics"])
def test_the_core_knows_nothing_of_runs_sweeps_or_reports(layer):
    assert arrows(modules_in(layer), "suite.run", "suite.sweep", "suite.report", "suite.cli") == []


def test_models_take_plain_arguments():
    """Models import only each other and the method records."""
    internal = {i for found in modules_in("suite.models").values() for i in found if i.startswith("suite")}
    assert {i for i in internal if not i.startswith(("suite.models", "suite.methods"))} == set()


def test_run_and_sweep_are_one_folder_each():
    assert (PACKAGE / "run" / "__init__.py").is_file() and (PACKAGE / "sweep" / "__init__.py").is_file()
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == {"__init__", "atomic", "cli", "config", "errors", "methods", "metrics", "report_options", "run"}
    assert not (PACKAGE / "distributed").exists()


def test_cli_only_parses_and_dispatches():
    """The CLI hands a config to the run's or the sweep's command; it trains, plans and reports nothing itself."""
    cli = {"suite.cli": MODULES["suite.cli"]}
    assert arrows(cli, "ray", "suite.learner", "suite.models", "suite.data", "suite.report", "suite.run.plan",
                  "suite.run.local", "suite.run.ray_train", "suite.sweep.tune") == []
    assert {"suite.run.command.run_command", "suite.sweep.command.sweep_command"} <= MODULES["suite.cli"]
    assert "from suite.cli import console" in SCRIPT.read_text()


def test_no_benchmark_code_in_the_package():
    assert not (PACKAGE / "perf").exists()
    assert arrows(MODULES, "bench") == []
