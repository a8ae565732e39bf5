"""A run's model from its config: the one place where config keys become model arguments."""
from __future__ import annotations

from dataclasses import asdict

from suite.config import Config
from suite.data.registry import DataSet
from suite.models import IncrementalModel, build_model


def run_model(cfg: Config, data: DataSet, num_tasks: int) -> IncrementalModel:
    """The method's model for images of `data` (resized to data.input_size if set), before any task."""
    return build_model(cfg.method, cfg.data.input_size or data.image_size, data.channels, num_tasks,
                       **asdict(cfg.model))
