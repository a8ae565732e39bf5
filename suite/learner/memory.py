"""The rehearsal memory: exemplars kept as data-set indices, ranked best first per class."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from suite.config import MemoryConfig


def per_class_budget(cfg: MemoryConfig, seen_classes: int) -> int:
    """Exemplars per class: fixed per class, or the fixed total shared by the classes seen."""
    if cfg.per_class is not None:
        return cfg.per_class
    return cfg.size // seen_classes


def herding_ranking(features: torch.Tensor, m: int) -> list[int]:
    """iCaRL herding as iCaRL's authors and the DyTox and DAFormer releases run it
    (continual/rehearsal.py `icarl_selection`): a running target starts at the class mean μ of the
    L2-normalised features; each iteration takes the sample best aligned with it and moves it by
    μ − that sample, also when the sample was taken before (it is then not taken twice). At most
    1000 iterations; samples never reached come last, in index order.

    Returns positions into `features` (n, F), best first."""
    f = features.double()
    f = f / (f.norm(dim=1, keepdim=True) + 1e-8)
    mu = f.mean(dim=0)
    target = mu.clone()
    want = min(m, len(f))
    taken: set[int] = set()
    ranking: list[int] = []
    for _ in range(1000):
        if len(ranking) == want:
            break
        i = int((f @ target).argmax())
        if i not in taken:
            taken.add(i)
            ranking.append(i)
        target += mu - f[i]
    return ranking + [i for i in range(len(f)) if i not in taken][:want - len(ranking)]


def greedy_herding_ranking(features: torch.Tensor, m: int) -> list[int]:
    """Herding without revisiting: each step takes, among the samples not taken yet, the one that
    brings the mean of those taken closest to the class mean (PyCIL's `_construct_exemplar`).

    Returns positions into `features` (n, F), best first; features are L2-normalised first.
    """
    f = F.normalize(features.double(), dim=1)
    mu = f.mean(dim=0)
    running = torch.zeros_like(mu)
    taken = torch.zeros(len(f), dtype=torch.bool)
    ranking: list[int] = []
    for k in range(1, min(m, len(f)) + 1):
        distance = ((mu - (running + f) / k) ** 2).sum(dim=1).masked_fill(taken, float("inf"))
        i = int(distance.argmin())
        ranking.append(i)
        taken[i] = True
        running += f[i]
    return ranking


RANKINGS = {"herding": herding_ranking, "herding_greedy": greedy_herding_ranking}  # memory.selection's herdings


def random_ranking(n: int, m: int, rng: np.random.Generator) -> list[int]:
    return rng.permutation(n)[:m].tolist()


@dataclass
class Memory:
    ranked: dict[int, list[int]] = field(default_factory=dict)  # original class id -> indices, best first

    def __len__(self) -> int:
        return sum(len(v) for v in self.ranked.values())

    def indices(self) -> np.ndarray:
        """Classes in the order they were learnt, each best first: the releases' memory order, which
        unshuffled finetuning (finetune.shuffle=false) reads as it is."""
        return np.array([i for idx in self.ranked.values() for i in idx], dtype=np.int64)

    def trim(self, per_class: int) -> None:
        """Old classes keep only their best-ranked exemplars."""
        self.ranked = {cls: idx[:per_class] for cls, idx in self.ranked.items()}

    def add(self, cls: int, indices: list[int]) -> None:
        self.ranked[int(cls)] = [int(i) for i in indices]

    def state(self) -> dict:
        return {"classes": list(self.ranked), "indices": [torch.tensor(v, dtype=torch.int64) for v in self.ranked.values()]}

    @classmethod
    def from_state(cls, state: dict) -> "Memory":
        return cls({int(c): t.tolist() for c, t in zip(state["classes"], state["indices"])})


def select_exemplars(features: torch.Tensor, labels: np.ndarray, indices: np.ndarray, classes, m: int,
                     selection: str, rng: np.random.Generator) -> dict[int, list[int]]:
    """For each new class, its `m` best exemplars as data-set indices (herding or random)."""
    chosen = {}
    for cls in classes:
        pos = np.flatnonzero(labels == cls)
        if selection in RANKINGS:
            order = RANKINGS[selection](features[torch.from_numpy(pos)], m)
        else:
            order = random_ranking(len(pos), m, rng)
        chosen[int(cls)] = indices[pos[order]].tolist()
    return chosen
