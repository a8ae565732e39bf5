"""Every registry against what config accepts, and new methods added the way the README says.

The README's "Adding a method": the method's record in suite/methods.py, its strategy in
suite/strategies/ (its loss, its phases, its teacher) and, for a new architecture, its model in
suite/models/ (a model class and its builder, registered by name); nothing else changes.
"""
from __future__ import annotations

import json

import pytest
import torch

from suite.config import Config, load
from suite.datasets import DATASETS
from suite.models.resnet import BACKBONE_BUILDERS
from suite.data.registry import LOADERS, _loader
from suite.methods import BACKBONES, METHODS, Method
from suite.models import BUILDERS, build_model
from suite.models.base import IncrementalModel, encoder_args, register_builder
from suite.models.cnn import build_cnn
from suite.report.load import load_results
from suite.run.local import run_in_process
from suite.run.plan import plan_run
from suite.run.layout import CHECKPOINT
from suite.schema import RESULTS
from suite.strategies import STRATEGIES, Strategy, register_strategy
from suite.strategies.transformers import ReleaseRecipe
from tests.conftest import TINY


def test_every_method_has_a_record_a_model_a_strategy_and_a_config_choice():
    assert set(BUILDERS) == set(METHODS)
    assert set(STRATEGIES) == set(METHODS)
    assert set(Config.__dataclass_fields__["method"].metadata["choices"]) == set(METHODS)


def test_every_backbone_has_a_builder_and_a_config_choice():
    assert set(BACKBONE_BUILDERS) == set(BACKBONES)
    assert set(Config().model.__dataclass_fields__["backbone"].metadata["choices"]) == set(BACKBONES)


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
    register_strategy("mean_pool")(ReleaseRecipe)  # trained as the releases train theirs
    monkeypatch.setitem(METHODS, "mean_pool", Method("mean_pool", "MeanPool", "mean-pooled tokens, rehearsal"))
    yield "mean_pool"
    del BUILDERS["mean_pool"], STRATEGIES["mean_pool"]


def test_a_new_method_runs_and_reports_with_nothing_else_changed(mean_pool, tmp_path):
    cfg = load([], TINY + [f"method={mean_pool}"])  # the config accepts it
    assert isinstance(build_model(mean_pool, 8, 3, 3, embed_dim=16, depth=1, num_heads=2, patch_size=4), MeanPool)
    results = run_in_process(plan_run(cfg, tmp_path / "run"), resume=False)
    assert results["status"] == "finished" and results["label"] == "MeanPool"
    assert len(results["acc_matrix"]) == 3 and all(0 <= a <= 100 for a in results["acc"])
    runs = load_results(tmp_path)
    assert set(runs["method_name"]) == {"MeanPool"} and runs["task"].tolist() == [0, 1, 2]
    assert json.loads((tmp_path / "run" / RESULTS).read_text())["method"] == mean_pool



class FeatureDistillation(Strategy):
    """A method written only through the seam: cross-entropy, plus the squared distance of the
    features to the previous model's; classified by the nearest mean of exemplars; its classifier
    rows rescaled to unit norm after each task's training."""

    calls: list = []

    def loss(self, out, teacher_out, targets, phase):
        loss = torch.sum(-targets * torch.log_softmax(out.logits, dim=-1), dim=-1).mean()
        self.calls.append((phase.name, teacher_out is not None))
        if teacher_out is None:
            return loss
        return loss + (out.features - teacher_out.features).pow(2).sum(dim=1).mean()

    @torch.no_grad()
    def after_phase(self, model, task, phase):
        for head in model.heads:
            head.weight.div_(head.weight.norm(dim=1, keepdim=True))


@pytest.fixture
def feature_distillation(monkeypatch):
    register_builder("feature_kd", build_cnn)
    register_strategy("feature_kd")(FeatureDistillation)
    monkeypatch.setitem(METHODS, "feature_kd", Method(
        "feature_kd", "Feature KD", "a CNN, feature distillation, nearest mean", divergence=False,
        freezes_old_heads=False, classifiers=("nme", "cnn"), architecture="cnn"))
    FeatureDistillation.calls.clear()
    yield "feature_kd"
    del BUILDERS["feature_kd"], STRATEGIES["feature_kd"]


def test_a_method_written_through_the_seam_runs_end_to_end(feature_distillation, tmp_path):
    cfg = load([], TINY + [f"method={feature_distillation}", "train.loss=ce", "memory.size=12"])
    results = run_in_process(plan_run(cfg, tmp_path / "run"), resume=False)
    assert results["status"] == "finished" and results["classifier"] == "nme"
    assert set(results["classifiers"]) == {"nme", "cnn"}
    assert results["acc"] == results["classifiers"]["nme"]["acc"]
    assert results["memory_size"] == [12, 12, 12]
    # its loss ran in every main-phase step, with a teacher from the second task on; no finetuning
    assert {name for name, _ in FeatureDistillation.calls} == {"train"}
    assert any(has for _, has in FeatureDistillation.calls) and not FeatureDistillation.calls[0][1]
    model = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["learner"]["model"]
    norms = torch.cat([model[f"heads.{t}.weight"].norm(dim=1) for t in range(3)])
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)  # its after_phase ran on the last task too
