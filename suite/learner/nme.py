"""Nearest-mean-of-exemplars classification (iCaRL's; PyCIL's `_compute_means` and `_eval_nme`)."""
from __future__ import annotations

import torch

EPSILON = 1e-8  # PyCIL's, added to every norm


def normalised(features: torch.Tensor) -> torch.Tensor:
    return features / (features.norm(dim=1, keepdim=True) + EPSILON)


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, F): per label, the mean of its samples' L2-normalised features, normalised again."""
    f = normalised(features.double())
    means = torch.stack([f[labels == label].mean(dim=0) for label in range(num_classes)])
    return (means / means.norm(dim=1, keepdim=True)).float()


def nearest_mean_scores(features: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """(B, classes): minus the squared distance of each normalised feature to each class mean, so that
    the largest score is the nearest mean (top-k as for logits)."""
    return -torch.cdist(normalised(features.float()), means.to(features.device)).pow(2)


def second_view(images: torch.Tensor, view: str, mean, std) -> torch.Tensor:
    """Normalised images (B, C, H, W) as `view` sees them (memory.means_second_view): mirrored, or with
    their colour channels reversed before the normalisation by `mean` and `std` (per channel)."""
    if view == "mirror":
        return images.flip(-1)
    if view == "reversed_channels":
        mean, std = (torch.as_tensor(v, dtype=images.dtype).view(1, -1, 1, 1) for v in (mean, std))
        return ((images * std + mean).flip(1) - mean) / std
    return images
