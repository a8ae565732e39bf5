"""A run's data is loaded once, in its plan: the in-process path, the Ray path and a sweep's trials
execute that plan (suite/run/plan.py plan_run) and load nothing again. The loader is counted where
every path would have to call it (the data set's registered loader)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray

from suite.cli import absolute_paths, resolve_config_path
from suite.commands.run import RunOptions, run_command
from suite.commands.sweep import sweep_command
from suite.config import load
from suite.data.registry import _loader
from suite.sweep.spec import load_sweep
from tests.conftest import TINY


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The names of the data sets loaded while the test runs."""
    calls: list[str] = []
    loader = _loader("synthetic")
    real = loader.load

    def counted(data_cfg):
        calls.append(data_cfg.name)
        return real(data_cfg)

    monkeypatch.setattr(loader, "load", counted)
    return calls


def tiny_config(tmp_path: Path, *extra: str):
    return absolute_paths(load([], TINY + [f"output.basedir={tmp_path}", "output.name=run", *extra]))


def test_an_in_process_run_loads_its_data_once(loads, tmp_path, one_thread):
    assert run_command(tiny_config(tmp_path), RunOptions(in_process=True)) == 0
    assert loads == ["synthetic"]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "finished"


def test_a_dry_run_loads_its_data_once(loads, tmp_path, capsys):
    assert run_command(tiny_config(tmp_path), RunOptions(dry_run=True)) == 0
    assert loads == ["synthetic"] and "dry run: nothing trained" in capsys.readouterr().out


def test_a_sweep_loads_each_data_set_once_for_all_its_trials(loads, tmp_path, capsys):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("name: once\nset:\n" + "".join(f"  {pair.replace('=', ': ', 1)}\n" for pair in TINY)
                          + "axes:\n  memory.size: [6, 12]\n  seed: [0, 1]\n")
    spec = load_sweep(sweep_file, resolve_config_path, {}, [], None, tmp_path, {})
    assert len(spec.trials) == 4
    assert sweep_command(spec, tmp_path, dry_run=True, address=None) == 0
    assert loads == ["synthetic"]


@pytest.mark.slow
def test_a_run_on_ray_loads_its_data_once_in_the_driver(loads, tmp_path, ray_head):
    """Two workers train from the driver's plan (Ray's object store): the driver's loader ran once, and
    the workers, which cannot see the counted loader, load nothing (tests/test_architecture.py holds
    that no module but the plan calls the loader)."""
    cfg = tiny_config(tmp_path, "ray.num_workers=2", "ray.cpus_per_worker=1")
    try:
        assert run_command(cfg, RunOptions(address=ray_head.address)) == 0
    finally:
        ray.shutdown()  # this process joined the cluster as the run's driver: leave it for the next test
    assert loads == ["synthetic"]
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    assert doc["status"] == "finished" and doc["provenance"]["world_size"] == 2
