"""Every registry against what config accepts, and a new method added the way the README says.

The README's "Adding a method": one file in suite/models/ (a model class and its builder,
registered by name) plus the method's record in suite/methods.py; nothing else changes.
"""
from __future__ import annotations

import json

import pytest
import torch

from suite.config import Config, load
from suite.data.names import DATASETS
from suite.data.registry import LOADERS, _loader
from suite.methods import METHODS, Method
from suite.models import BUILDERS, build_model
from suite.models.base import IncrementalModel, encoder_args, register_builder
from suite.report.load import load_results
from suite.run.local import run_in_process
from suite.run.schema import RESULTS
from tests.conftest import TINY


def test_every_method_has_a_record_a_model_and_a_config_choice():
    assert set(BUILDERS) == set(METHODS)
    assert set(Config.__dataclass_fields__["method"].metadata["choices"]) == set(METHODS)


def test_every_data_set_has_a_loader_and_a_config_choice():
    _loader("synthetic")  # registers every loader
    assert set(LOADERS) == set(DATASETS)
    assert set(Config().data.__dataclass_fields__["name"].metadata["choices"]) == set(DATASETS)


class MeanPool(IncrementalModel):
    """A method in a few lines: the mean of the encoder's tokens feeds every head."""

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.mean(dim=1, keepdim=True)

    def slot_of_task(self, task: int) -> int:
        return 0


def build_mean_pool(method, image_size, channels, num_tasks, **options):
    return MeanPool(image_size, channels, method.divergence, method.freezes_old_heads, **encoder_args(options))


@pytest.fixture
def mean_pool(monkeypatch):
    """What the README asks of a new method: its builder registered, its record in METHODS."""
    register_builder("mean_pool", build_mean_pool)
    monkeypatch.setitem(METHODS, "mean_pool", Method("mean_pool", "MeanPool", "mean-pooled tokens, rehearsal"))
    yield "mean_pool"
    del BUILDERS["mean_pool"]


def test_a_new_method_runs_and_reports_with_nothing_else_changed(mean_pool, tmp_path):
    cfg = load([], TINY + [f"method={mean_pool}"])  # the config accepts it
    assert isinstance(build_model(mean_pool, 8, 3, 3, embed_dim=16, depth=1, num_heads=2, patch_size=4), MeanPool)
    results = run_in_process(cfg, tmp_path / "run", resume=False)
    assert results["status"] == "finished" and results["label"] == "MeanPool"
    assert len(results["acc_matrix"]) == 3 and all(0 <= a <= 100 for a in results["acc"])
    runs = load_results(tmp_path)
    assert set(runs["method_name"]) == {"MeanPool"} and runs["task"].tolist() == [0, 1, 2]
    assert json.loads((tmp_path / "run" / RESULTS).read_text())["method"] == mean_pool

