"""Models, one file per method family, each registering its builders by method name.

Every module of this package is imported here, so a new method's file registers itself: adding a
method is that file plus its record in suite/methods.py (README, "Adding a method").
"""
import importlib
import pkgutil

from suite.methods import METHODS
from suite.models.base import BUILDERS, IncrementalModel, Output, register_builder

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["BUILDERS", "IncrementalModel", "Output", "register_builder", "build_model"]


def build_model(method: str, image_size: int, channels: int, num_tasks: int, **options) -> IncrementalModel:
    """The method's model for a run of `num_tasks` tasks (before any task is added); `options` are
    the `model.*` keys by name (each builder takes the ones its model has)."""
    return BUILDERS[method](METHODS[method], image_size, channels, num_tasks, **options)
