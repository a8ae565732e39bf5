"""The package's layers, read from its imports (ast: top-level and inside functions alike).

    config, methods, datasets, schema,         plain modules every layer may use (config knows no
    metrics, errors, atomic                    data set but by name: suite/datasets.py)
    data -> models -> learner                  know nothing of Ray, files or reports
    run/ (one run) and sweep/ (Ray Tune)       the only places Ray is imported; neither knows the report
    report/                                    reads results files (suite/schema.py) only
    commands/                                  the doors: plan, execute, report (run and report composed)
    cli.py                                     parses and dispatches to a command
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
    """The report knows a run by its files' schema (suite/schema.py), nothing of the layers that write them."""
    assert arrows(modules_in("suite.report"), "suite.run", "suite.sweep", "suite.learner", "suite.models", "suite.cli",
                  "suite.commands") == []
    assert any("suite.schema" in found for found in modules_in("suite.report").values())


def test_run_and_sweep_know_nothing_of_the_report():
    """A run's command composes the run and its report (suite/commands/); neither imports the other."""
    assert arrows(modules_in("suite.run", "suite.sweep"), "suite.report", "suite.commands", "suite.cli") == []
    assert {"suite.report.build_report", "suite.run.plan.plan_run"} <= MODULES["suite.commands.run"]
    assert {"suite.report.build_report", "suite.run.plan.plan_run"} <= MODULES["suite.commands.sweep"]


def test_config_sits_below_the_data_layer():
    """config validates data.name against the names in suite/datasets.py; it imports no data code."""
    assert arrows({"suite.config": MODULES["suite.config"]}, "suite.data", "suite.models", "suite.learner") == []
    assert "suite.datasets.DATASETS" in MODULES["suite.config"]


def test_the_results_file_is_parsed_by_its_schema_only():
    """Every module that names results.json reads it through suite/schema.py (read, parse), never as raw JSON."""
    naming = [p for p in PACKAGE.rglob("*.py") if p.name != "schema.py" and "RESULTS" in p.read_text()]
    assert naming, "the scan finds the modules that name the results file"
    for path in naming:
        calls = {node.func.attr for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
        assert not calls & {"load", "loads"} or "json" not in imports_of(path), path


def test_a_run_loads_its_data_in_its_plan_only():
    """The data set is loaded once, by plan_run in the driver; the paths that execute a plan (in process,
    Ray Train's workers, a sweep's trials) and the session they share take it from the plan."""
    loaders = sorted(m for m, found in MODULES.items() if "suite.data.registry.load_dataset" in found)
    assert loaders == ["suite.run.plan"]
    assert "suite.run.session.run_session" in MODULES["suite.run.local"]
    assert "suite.run.session.run_session" in MODULES["suite.run.ray_train"]


@pytest.mark.parametrize("layer", ["suite.models", "suite.learner", "suite.data", "suite.metrics"])
def test_the_core_knows_nothing_of_runs_sweeps_or_reports(layer):
    assert arrows(modules_in(layer), "suite.run", "suite.sweep", "suite.report", "suite.cli") == []


def test_models_take_plain_arguments():
    """Models import only each other and the method records (and the phase names they define)."""
    internal = {i for found in modules_in("suite.models").values() for i in found if i.startswith("suite")}
    assert {i for i in internal if not i.startswith(("suite.models", "suite.methods"))} == set()


def test_run_and_sweep_are_one_folder_each():
    for folder in ("run", "sweep", "commands"):
        assert (PACKAGE / folder / "__init__.py").is_file()
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == {"__init__", "atomic", "cli", "config", "datasets", "errors", "methods", "metrics", "report_options",
                   "run", "schema"}
    assert not (PACKAGE / "distributed").exists()


def test_cli_only_parses_and_dispatches():
    """The CLI hands a config to its command (suite/commands/); it trains, plans and reports nothing itself."""
    cli = {"suite.cli": MODULES["suite.cli"]}
    assert arrows(cli, "ray", "suite.learner", "suite.models", "suite.data", "suite.report", "suite.run.plan",
                  "suite.run.local", "suite.run.ray_train", "suite.sweep.tune") == []
    assert {"suite.commands.run.run_command", "suite.commands.sweep.sweep_command"} <= MODULES["suite.cli"]
    assert "from suite.cli import console" in SCRIPT.read_text()


def test_no_benchmark_code_in_the_package():
    assert not (PACKAGE / "perf").exists()
    assert arrows(MODULES, "bench") == []
