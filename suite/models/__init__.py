"""Models, one file per method family, each registering its builders by method name."""
from suite.methods import METHODS
from suite.models.base import BUILDERS, IncrementalModel, Output, register_builder
from suite.models import daformer, dytox, vit  # noqa: F401  (each file registers its builders)

__all__ = ["BUILDERS", "IncrementalModel", "Output", "register_builder", "build_model"]


def build_model(method: str, image_size: int, channels: int, num_tasks: int, **options) -> IncrementalModel:
    """The method's model for a run of `num_tasks` tasks (before any task is added); `options` are
    the `model.*` keys by name (each builder takes the ones its model has)."""
    return BUILDERS[method](METHODS[method], image_size, channels, num_tasks, **options)
