"""Models, one file per method family, registered by name in `METHODS`."""
from suite.models.base import METHODS, IncrementalModel, Method, Output, register_method
from suite.models import daformer, dytox, vit  # noqa: F401  (each file registers its methods)

__all__ = ["METHODS", "IncrementalModel", "Method", "Output", "register_method", "build_model"]


def build_model(cfg, image_size: int, channels: int, num_tasks: int) -> IncrementalModel:
    """The method's model for a run of `num_tasks` tasks (before any task is added)."""
    return METHODS[cfg.method].build(cfg.model, image_size, channels, num_tasks)
