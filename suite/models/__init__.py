"""Models, one file per method family, each registering its builders by method name."""
from suite.methods import METHODS
from suite.models.base import BUILDERS, IncrementalModel, Output, register_builder
from suite.models import daformer, dytox, vit  # noqa: F401  (each file registers its builders)

__all__ = ["BUILDERS", "IncrementalModel", "Output", "register_builder", "build_model"]


def build_model(cfg, image_size: int, channels: int, num_tasks: int) -> IncrementalModel:
    """The method's model for a run of `num_tasks` tasks (before any task is added)."""
    return BUILDERS[cfg.method](cfg.model, image_size, channels, num_tasks, METHODS[cfg.method])
