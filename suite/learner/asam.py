"""ASAM (adaptive sharpness-aware minimisation, Kwon et al. 2021) around any optimizer.

Not in torch or timm; small enough to keep here. The perturbation is e = ρ·T²∇ / ‖T∇‖ with
T = |w| + η; η = 0 is the DyTox/DAFormer releases' ASAM (a zero weight is never perturbed), Kwon et
al. use η = 0.01. Use: loss.backward(); ascend(); zero grads;
recompute the loss and backward at the perturbed weights; descend() (restores and steps).
"""
from __future__ import annotations

import torch


class ASAM:
    def __init__(self, optimizer: torch.optim.Optimizer, rho: float, eta: float = 0.0):
        self.optimizer = optimizer
        self.rho = rho
        self.eta = eta
        self._perturbation: dict[torch.Tensor, torch.Tensor] = {}

    def _params(self):
        return [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]

    @torch.no_grad()
    def ascend(self) -> None:
        params = self._params()
        scaled = [(p.abs() + self.eta) * p.grad for p in params]
        norm = torch.norm(torch.stack([s.norm(2) for s in scaled]), 2) + 1e-12
        for p, s in zip(params, scaled):
            e = (p.abs() + self.eta) * s * (self.rho / norm)
            p.add_(e)
            self._perturbation[p] = e

    @torch.no_grad()
    def descend(self) -> None:
        for p, e in self._perturbation.items():
            p.sub_(e)
        self._perturbation.clear()
        self.optimizer.step()
