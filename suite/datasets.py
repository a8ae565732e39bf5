"""The data sets config accepts, by name (plain data: config and the report read it without torch).

Each has a loader registered under the same name in suite/data/sources/ (tests/test_registries.py
checks the two agree).
"""

# by name, as titles and captions print them
TITLES = {"digits": "Digits", "cifar100": "CIFAR-100", "tinyimagenet": "Tiny-ImageNet", "imagenet_subset": "ImageNet-100",
          "imagenet": "ImageNet-1k", "imagefolder": "ImageFolder", "synthetic": "Synthetic"}
DATASETS = tuple(TITLES)
TOP5_DATASETS = ("tinyimagenet", "imagenet_subset", "imagenet")  # ImageNet-like: papers print top-5 beside top-1


def dataset_title(name: str) -> str:
    """'Tiny-ImageNet' for 'tinyimagenet'; a name this suite does not know, as it is."""
    return TITLES.get(name, name)
