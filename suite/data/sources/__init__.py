"""Importing this package registers every data set loader."""
from suite.data.sources import cifar, digits, imagefolder, synthetic, tinyimagenet  # noqa: F401
