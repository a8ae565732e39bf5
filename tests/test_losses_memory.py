"""The rehearsal memory and the losses.

Pure functions are checked against hand-worked values; the budgets over a run of tasks use a
tiny synthetic Learner (three tasks of two classes, well under a second per run).
"""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from suite.config import MemoryConfig, load
from suite.learner.learner import Learner
from suite.learner.losses import (
    classification_loss, divergence_targets, knn_invariant_distillation, logit_distillation,
)
from suite.learner.memory import (
    RANKINGS, Memory, greedy_herding_ranking, herding_ranking, per_class_budget, random_ranking, select_exemplars,
)
from tests.conftest import TINY, data_of


pytestmark = pytest.mark.usefixtures("one_thread")


def _run_recording_memory(*sets):
    """Run the tiny config; return (learner, [copy of memory.ranked after each task])."""
    cfg = load([], TINY + list(sets))
    data, scenario = data_of(cfg)
    learner = Learner(cfg, data, scenario, log=lambda m: None)
    snapshots = []
    learner.run(lambda task, lrn: snapshots.append(copy.deepcopy(lrn.memory.ranked)))
    return learner, snapshots


# ---------------------------------------------------------------- herding / random selection

def _reference_icarl_loop(features: np.ndarray, m: int) -> list[int]:
    """iCaRL's herding loop as the releases run it, written out plainly: a running target, the
    sample best aligned with it, the target moved by the mean minus that sample (taken or not)."""
    f = features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-8)
    mu = f.mean(axis=0)
    target, order = mu.copy(), []
    for _ in range(1000):
        if len(order) == min(m, len(f)):
            break
        best = int(np.argmax(f @ target))
        if best not in order:
            order.append(best)
        target = target + mu - f[best]
    return order


def test_herding_is_the_releases_loop_on_random_features():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(30, 8))
    for m in (1, 5, 30):
        assert herding_ranking(torch.from_numpy(feats), m) == _reference_icarl_loop(feats, m)


def test_the_releases_loop_and_greedy_herding_differ_where_a_sample_is_hit_again():
    # The loop's target lands on sample 0's side of the mean twice before it reaches 3 and 2; greedy
    # herding, which never looks at a taken sample again, goes 1, 2, 0, 3.
    feats = torch.tensor([[0.7, 0.3], [0.1, 0.1], [0.8, 0.9], [0.6, 0.8]])
    assert herding_ranking(feats, 4) == [1, 0, 3, 2]
    assert greedy_herding_ranking(feats, 4) == [1, 2, 0, 3]
    assert herding_ranking(feats, 2) == [1, 0]  # a smaller budget is a prefix


def test_herding_choices_are_the_configs():
    choices = MemoryConfig.__dataclass_fields__["selection"].metadata["choices"]
    assert set(choices) == set(RANKINGS) | {"random"}


def _reference_herding(features: np.ndarray, m: int) -> list[int]:
    """Greedy herding (no sample visited twice) written out plainly, as an independent reference."""
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    mu = f.mean(axis=0)
    chosen, total = [], np.zeros_like(mu)
    for k in range(1, min(m, len(f)) + 1):
        best, best_d = None, math.inf
        for i in range(len(f)):
            if i in chosen:
                continue
            d = float(np.sum((mu - (total + f[i]) / k) ** 2))
            if d < best_d:
                best, best_d = i, d
        chosen.append(best)
        total += f[best]
    return chosen


def test_greedy_herding_hand_worked_example():
    # After L2 normalisation: a = (1, 0), b = (0, 1), c = (0.8, 0.6); class mean mu = (0.6, 0.5333).
    # k=1: |mu - a|^2 = 0.444, |mu - b|^2 = 0.578, |mu - c|^2 = 0.044       -> c
    # k=2: |mu - (c+a)/2|^2 = 0.144, |mu - (c+b)/2|^2 = 0.111               -> b
    # k=3: a.  (Ordering by distance to the mean alone would give c, a, b: herding differs.)
    # The raw norms differ on purpose: herding works on normalised features.
    feats = torch.tensor([[3.0, 0.0], [0.0, 0.5], [8.0, 6.0]])
    assert greedy_herding_ranking(feats, 3) == [2, 1, 0]
    assert greedy_herding_ranking(feats, 2) == [2, 1]  # a smaller budget is a prefix
    assert greedy_herding_ranking(feats, 10) == [2, 1, 0]  # never more than there are samples
    assert herding_ranking(feats, 10) == herding_ranking(feats, 3)  # nor does the loop


@pytest.mark.parametrize("ranking", [herding_ranking, greedy_herding_ranking])
def test_herding_first_pick_is_closest_to_mean_when_symmetric(ranking):
    # Four points mirrored about the direction (1, 1, 0) plus one point on it: the mean lies on that
    # direction, so the point on it is the mean's nearest and goes first. (Later picks tie between
    # mirror images, so only the first pick and the permutation are pinned.)
    s = 1 / math.sqrt(2)
    feats = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [s, s, 0.0], [0.9, 0.1, 0.3], [0.1, 0.9, -0.3]])
    order = ranking(feats, 5)
    assert order[0] == 2
    assert sorted(order) == [0, 1, 2, 3, 4]


def test_greedy_herding_matches_reference_on_random_features():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(30, 8))
    for m in (1, 5, 30):
        assert greedy_herding_ranking(torch.from_numpy(feats), m) == _reference_herding(feats, m)


def test_random_ranking_reproducible_for_the_same_seed():
    a = random_ranking(50, 10, np.random.default_rng(7))
    b = random_ranking(50, 10, np.random.default_rng(7))
    c = random_ranking(50, 10, np.random.default_rng(8))
    assert a == b
    assert a != c
    assert len(set(a)) == 10 and all(0 <= i < 50 for i in a)
    assert len(random_ranking(3, 10, np.random.default_rng(0))) == 3


def test_select_exemplars_returns_dataset_indices_per_class():
    # Class 5 sits at positions 1, 3, 4 with the hand-worked herding example's features (order a, b, c).
    feats = torch.tensor([[9.0, 9.0], [3.0, 0.0], [1.0, -1.0], [0.0, 0.5], [8.0, 6.0]])
    labels = np.array([7, 5, 7, 5, 5])
    indices = np.array([100, 101, 102, 103, 104])
    chosen = select_exemplars(feats, labels, indices, [5, 7], 2, "herding_greedy", np.random.default_rng(0))
    assert chosen[5] == [104, 103]
    assert len(chosen[7]) == 2 and set(chosen[7]) == {100, 102}
    random_a = select_exemplars(feats, labels, indices, [5, 7], 2, "random", np.random.default_rng(3))
    random_b = select_exemplars(feats, labels, indices, [5, 7], 2, "random", np.random.default_rng(3))
    assert random_a == random_b
    assert set(random_a[5]) <= {101, 103, 104} and set(random_a[7]) <= {100, 102}


def test_per_class_budget():
    assert per_class_budget(MemoryConfig(size=2000), 10) == 200
    assert per_class_budget(MemoryConfig(size=2000), 30) == 66
    assert per_class_budget(MemoryConfig(size=2000, per_class=20), 30) == 20
    assert per_class_budget(MemoryConfig(size=4), 6) == 0


# ---------------------------------------------------------------- memory budgets over a run

@pytest.mark.parametrize("size, expected", [(12, [12, 12, 12]), (4, [4, 4, 0])])
def test_fixed_total_memory_over_tasks(size, expected):
    learner, snaps = _run_recording_memory(f"memory.size={size}", "memory.selection=herding")
    tasks = learner.scenario.tasks
    labels = learner.data.train.labels
    assert learner.history.memory_size == expected
    for t, ranked in enumerate(snaps):
        seen = [c for task in tasks[: t + 1] for c in task]
        m = size // len(seen)  # 12: 6, 3, 2 per class; 4: 2, 1, 0
        assert sorted(ranked) == sorted(seen)
        for c, idx in ranked.items():
            assert len(idx) == m
            assert len(set(idx)) == m
            assert all(labels[i] == c for i in idx)
        if t > 0:  # old classes keep exactly the best-ranked prefix of their earlier ranking
            for c in snaps[t - 1]:
                assert ranked[c] == snaps[t - 1][c][:m]
    assert learner.memory.ranked == snaps[-1]
    assert len(learner.memory) == expected[-1]


def test_fixed_per_class_memory_over_tasks():
    learner, snaps = _run_recording_memory("memory.per_class=3")
    tasks = learner.scenario.tasks
    assert learner.history.memory_size == [6, 12, 18]  # memory.size does not cap a per-class budget
    for t, ranked in enumerate(snaps):
        seen = [c for task in tasks[: t + 1] for c in task]
        assert sorted(ranked) == sorted(seen)
        assert all(len(idx) == 3 for idx in ranked.values())
        if t > 0:  # nothing is trimmed or reselected
            for c in snaps[t - 1]:
                assert ranked[c] == snaps[t - 1][c]


def test_random_selection_uses_the_task_seeded_generator():
    learner, snaps = _run_recording_memory("memory.selection=random")
    cfg, tasks, labels = learner.cfg, learner.scenario.tasks, learner.data.train.labels
    for t, ranked in enumerate(snaps):
        m = 12 // (2 * (t + 1))
        rng = np.random.default_rng([cfg.seed, t])
        for c in tasks[t]:
            pos = np.flatnonzero(labels == c)
            assert ranked[c] == pos[random_ranking(len(pos), m, rng)].tolist()


def test_memory_state_round_trip(tmp_path):
    mem = Memory()
    mem.add(3, [5, 1, 2])
    mem.add(np.int64(0), [np.int64(7)])
    mem.add(9, [])
    again = Memory.from_state(mem.state())
    assert again.ranked == {3: [5, 1, 2], 0: [7], 9: []}
    assert again.indices().tolist() == [5, 1, 2, 7]  # the order classes were added in
    # ... and through a file that loads with weights_only=True, as checkpoints do
    torch.save(mem.state(), tmp_path / "mem.pt")
    loaded = Memory.from_state(torch.load(tmp_path / "mem.pt", weights_only=True))
    assert loaded.ranked == again.ranked
    assert Memory.from_state(Memory().state()).ranked == {}
    mem.trim(1)
    assert mem.ranked == {3: [5], 0: [7], 9: []}


# ---------------------------------------------------------------- losses

def test_knn_distillation_zero_for_identical_features():
    g = torch.randn(12, 10, generator=torch.Generator().manual_seed(0))
    assert abs(float(knn_invariant_distillation(g, g.clone(), 3, 0.1))) < 1e-6
    # k larger than the batch is clipped; a batch of one has no neighbours
    assert abs(float(knn_invariant_distillation(g, g.clone(), 50, 0.1))) < 1e-6
    assert float(knn_invariant_distillation(g[:1], g[:1] + 1, 3, 0.1)) == 0.0


def test_knn_distillation_positive_when_neighbourhoods_change():
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(12, 10, generator=gen)
    f = g[torch.randperm(12, generator=gen)]  # each sample takes another's features
    loss = knn_invariant_distillation(g, f, 3, 0.1)
    assert float(loss) > 1e-3
    f_noisy = (g + 0.5 * torch.randn(12, 10, generator=gen)).requires_grad_(True)
    loss = knn_invariant_distillation(g, f_noisy, 3, 0.1)
    assert float(loss.detach()) > 0
    loss.backward()
    assert f_noisy.grad is not None and torch.isfinite(f_noisy.grad).all()


def test_knn_distillation_invariant_to_feature_scale():
    gen = torch.Generator().manual_seed(2)
    g = torch.randn(10, 6, generator=gen)
    f = g + 0.3 * torch.randn(10, 6, generator=gen)
    base = knn_invariant_distillation(g, f, 4, 0.2)
    scaled = knn_invariant_distillation(3.0 * g, 0.25 * f, 4, 0.2)
    assert torch.allclose(base, scaled, atol=1e-6)


def test_logit_distillation_hand_computed():
    # teacher (0, 0) -> p = (1/2, 1/2); student (ln 3, 0) -> q = (3/4, 1/4):
    # KL(p || q) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3)
    teacher = torch.tensor([[0.0, 0.0]])
    student = torch.tensor([[math.log(3.0), 0.0]])
    kl = 0.5 * math.log(4 / 3)
    assert float(logit_distillation(student, teacher, 1.0, "batchmean")) == pytest.approx(kl, rel=1e-6)
    assert float(logit_distillation(student, teacher, 1.0, "mean")) == pytest.approx(kl / 2, rel=1e-6)
    # tau = 2: q = softmax(ln3 / 2, 0) = (sqrt3, 1) / (sqrt3 + 1); the KL is scaled by tau^2 = 4
    r3 = math.sqrt(3.0)
    q = (r3 / (r3 + 1), 1 / (r3 + 1))
    kl2 = 4 * (0.5 * math.log(0.5 / q[0]) + 0.5 * math.log(0.5 / q[1]))
    assert float(logit_distillation(student, teacher, 2.0, "batchmean")) == pytest.approx(kl2, rel=1e-6)


def test_logit_distillation_batch_and_reductions():
    gen = torch.Generator().manual_seed(3)
    teacher, student = torch.randn(5, 4, generator=gen), torch.randn(5, 4, generator=gen)
    tau = 2.0
    p, q = F.softmax(teacher / tau, dim=1), F.softmax(student / tau, dim=1)
    per_sample = (p * (p.log() - q.log())).sum(dim=1)
    batchmean = float(per_sample.mean()) * tau ** 2
    assert float(logit_distillation(student, teacher, tau, "batchmean")) == pytest.approx(batchmean, rel=1e-5)
    assert float(logit_distillation(student, teacher, tau, "mean")) == pytest.approx(batchmean / 4, rel=1e-5)
    for reduction in ("mean", "batchmean"):
        assert abs(float(logit_distillation(teacher, teacher.clone(), tau, reduction))) < 1e-6


def test_divergence_targets_merge_old_classes_into_bucket_zero():
    soft = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    merged = divergence_targets(soft, 2)
    assert torch.allclose(merged, torch.tensor([[0.3, 0.3, 0.4], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert torch.allclose(merged.sum(dim=1), torch.ones(3))
    assert divergence_targets(soft, 3).shape == (3, 2)


def test_classification_loss_matches_torch():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(6, 5, generator=gen)
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    one_hot = F.one_hot(labels, 5).float()
    assert torch.allclose(classification_loss(logits, one_hot, "ce"), F.cross_entropy(logits, labels), atol=1e-6)
    assert torch.allclose(classification_loss(logits, one_hot, "bce"),
                          F.binary_cross_entropy_with_logits(logits, one_hot), atol=1e-6)
    soft = torch.softmax(torch.randn(6, 5, generator=gen), dim=1)
    assert torch.allclose(classification_loss(logits, soft, "ce"), F.cross_entropy(logits, soft), atol=1e-6)
