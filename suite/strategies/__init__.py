"""Strategies: what each method does inside the learner's protocol, one file per method family.

Every module of this package is imported here, so a method's file registers its strategy (under
the name of its record in suite/methods.py) just by being in this folder.
"""
import importlib
import pkgutil

from suite.strategies.base import STRATEGIES, Strategy, register_strategy

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["STRATEGIES", "Strategy", "register_strategy", "strategy_for"]


def strategy_for(cfg) -> Strategy:
    """The strategy of the run's method."""
    return STRATEGIES[cfg.method](cfg)
