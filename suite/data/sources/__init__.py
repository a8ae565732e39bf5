"""Importing this package registers every data set loader: each module of it registers its own
(a new data set is a file here plus its name in suite/datasets.py)."""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
