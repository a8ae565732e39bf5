"""The training losses, as pure functions of logits, targets and features."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def classification_loss(logits: torch.Tensor, soft_targets: torch.Tensor, kind: str) -> torch.Tensor:
    """Soft-target BCE-with-logits (the DyTox recipe) or cross-entropy, on (mixed) soft targets."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, soft_targets)
    return torch.sum(-soft_targets * F.log_softmax(logits, dim=-1), dim=-1).mean()


def logit_distillation(student_old: torch.Tensor, teacher: torch.Tensor, tau: float,
                       reduction: str = "mean") -> torch.Tensor:
    """tau^2 * KL(softmax(teacher/tau) || softmax(student[:, :C_old]/tau)).

    reduction 'batchmean' is the per-sample KL averaged over the batch; 'mean' (what the DyTox and
    DAFormer releases use) also averages over the C_old logits, i.e. divides that by C_old.
    """
    kl = F.kl_div(F.log_softmax(student_old / tau, dim=-1), F.log_softmax(teacher / tau, dim=-1),
                  reduction="batchmean", log_target=True) * tau ** 2
    return kl / teacher.shape[1] if reduction == "mean" else kl


def soft_distillation(student_old: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """The classic baselines' distillation (PyCIL's `_KD_loss`): the cross-entropy of
    softmax(student[:, :C_old]/tau) against softmax(teacher/tau), summed over classes, averaged
    over the batch, without tau^2."""
    return -(F.softmax(teacher / tau, dim=-1) * F.log_softmax(student_old / tau, dim=-1)).sum(dim=-1).mean()


def divergence_targets(soft_targets: torch.Tensor, num_old: int) -> torch.Tensor:
    """Targets of the divergence head: all old classes merged into bucket 0, then the new classes."""
    return torch.cat([soft_targets[:, :num_old].sum(dim=1, keepdim=True), soft_targets[:, num_old:]], dim=1)


def knn_invariant_distillation(teacher: torch.Tensor, student: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
    """K-nearest-neighbour invariant distillation. The formula is OURS: the paper publishes none.

    g = teacher features, f = student features of the same (old) keys, both (B, F).
    N_K(i) = the k nearest other samples of i in the batch under cosine similarity of g.
    p_i^old = softmax over N_K(i) of cos(g_i, g_j)/T; p_i^new likewise with f on the same N_K(i).
    Returns mean_i KL(p_i^old || p_i^new): zero when the neighbourhoods agree.
    """
    batch = teacher.shape[0]
    k = min(k, batch - 1)
    if k < 1:
        return student.sum() * 0.0
    g = F.normalize(teacher.float(), dim=1)
    f = F.normalize(student.float(), dim=1)
    sim_old = g @ g.T
    sim_new = f @ f.T
    self_mask = torch.eye(batch, dtype=torch.bool, device=g.device)
    neighbours = sim_old.masked_fill(self_mask, float("-inf")).topk(k, dim=1).indices  # (B, k)
    log_p_old = F.log_softmax(sim_old.gather(1, neighbours) / temperature, dim=1)
    log_p_new = F.log_softmax(sim_new.gather(1, neighbours) / temperature, dim=1)
    return F.kl_div(log_p_new, log_p_old, reduction="batchmean", log_target=True)


def nca_loss(similarities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """PODNet's NCA loss on a batch's class similarities (B, classes) and hard labels (B,), as its
    release and PyCIL compute it (`nca`): -(s_y - log sum_j exp(s_j)), the sum over every class but
    the true one plus, in the true one's place, exp of the batch row's maximum (the "excluded" positive
    slot holds 0 after the shift by the maximum). Their margin (0.6) is subtracted from every class
    alike and so changes nothing (a known bug of both codes): left out."""
    shifted = similarities - similarities.max(dim=1, keepdim=True).values
    positive = shifted.gather(1, labels[:, None]).squeeze(1)
    others = shifted.scatter(1, labels[:, None], 0.0)
    return (torch.logsumexp(others, dim=1) - positive).mean()


def pod_spatial_loss(maps: tuple[torch.Tensor, ...], teacher_maps: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """PODNet's POD-spatial distillation: for each stage's output (B, C, H, W), the squared activations
    summed over the width and over the height, the two concatenated and L2-normalised per image; the
    L2 distance to the teacher's, averaged over the batch, then over the stages."""
    def pooled(x: torch.Tensor) -> torch.Tensor:
        x = x.float().pow(2)
        return F.normalize(torch.cat([x.sum(dim=3).flatten(1), x.sum(dim=2).flatten(1)], dim=1), dim=1)

    losses = [(pooled(a) - pooled(b)).norm(dim=1).mean() for a, b in zip(maps, teacher_maps)]
    return torch.stack(losses).mean()


def feature_distillation(features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """1 - cos(f, f_teacher) averaged over the batch: PODNet's POD-flat and UCIR's less-forget
    constraint (torch's CosineEmbeddingLoss with target +1)."""
    return (1 - F.cosine_similarity(features.float(), teacher_features.float(), dim=1)).mean()


def margin_ranking_loss(cosines: torch.Tensor, labels: torch.Tensor, num_old: int, k: int,
                        margin: float) -> torch.Tensor:
    """UCIR's inter-class separation: for each image of an old class, its true class's cosine (not
    scaled by sigma) against each of the `k` highest new-class cosines, max(0, margin - (true - new)),
    averaged over those pairs (torch's MarginRankingLoss); 0 for a batch without old-class images."""
    old = labels < num_old
    if not old.any():
        return cosines.new_zeros(())
    true = cosines[old].gather(1, labels[old, None])
    hardest_new = cosines[old, num_old:].topk(min(k, cosines.shape[1] - num_old), dim=1).values
    return F.relu(margin - (true - hardest_new)).mean()


def class_balanced_weights(images_per_class: tuple[int, ...], beta: float, device=None) -> torch.Tensor:
    """FOSTER's per-class weights (Cui et al.'s effective number): (1 - beta) / (1 - beta^n_c),
    normalised to sum to the number of classes."""
    counts = torch.tensor(images_per_class, dtype=torch.float64)
    weights = (1 - beta) / (1 - beta ** counts)
    return (weights / weights.sum() * len(counts)).float().to(device)


def balanced_distillation(student: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor,
                          tau: float) -> torch.Tensor:
    """FOSTER's compression loss (PyCIL's `BKD`): the soft cross-entropy of softmax(student / tau)
    against softmax(teacher / tau) re-weighted per class by `weights` and renormalised, averaged over
    the batch."""
    soft = F.softmax(teacher / tau, dim=1) * weights
    soft = soft / soft.sum(dim=1, keepdim=True)
    return -(soft * F.log_softmax(student / tau, dim=1)).sum(dim=1).mean()
