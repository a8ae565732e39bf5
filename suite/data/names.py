"""The data sets config accepts, by name (plain data: config and the report read it without torch).

Each has a loader registered under the same name in suite/data/sources/ (tests/test_registries.py
checks the two agree).
"""

DATASETS = ("digits", "cifar100", "tinyimagenet", "imagenet_subset", "imagenet", "imagefolder", "synthetic")
TOP5_DATASETS = ("tinyimagenet", "imagenet_subset", "imagenet")  # ImageNet-like: papers print top-5 beside top-1
