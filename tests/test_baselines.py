"""The classic baselines on the method seam: iCaRL, WA and BiC, their pieces and whole runs.

Runs are the tiny synthetic scenario (6 classes of 8x8 images, three tasks of two) on the CIFAR
ResNet-32, two epochs a phase: a few seconds each.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from suite.config import load
from suite.learner.learner import Learner
from suite.learner.losses import logit_distillation, soft_distillation
from suite.learner.nme import class_means, nearest_mean_scores
from suite.learner.optim import make_optimizer
from suite.methods import BIAS, TRAIN
from suite.models.cnn import IncrementalCNN
from suite.strategies.wa import align_weights
from tests.conftest import TINY, data_of
from tests.runs import resumed_inside_a_task

pytestmark = pytest.mark.usefixtures("one_thread")

CNN = [*TINY, "train.epochs=2", "train.loss=ce", "train.optimizer=sgd", "train.scale_lr=false", "train.lr=0.05",
       "distill.tau=2", "memory.selection=herding_greedy"]


def config_of(method: str, *sets: str):
    return load([], [*CNN, f"method={method}", *sets])


def run(method: str, *sets: str, on_epoch_end=None, on_checkpoint=None) -> Learner:
    cfg = config_of(method, *sets)
    data, scenario = data_of(cfg)
    learner = Learner(cfg, data, scenario, log=lambda line: None, on_epoch_end=on_epoch_end,
                      on_checkpoint=on_checkpoint)
    learner.run()
    return learner


# ---------------------------------------------------------------- pieces

def test_soft_distillation_is_the_kl_without_tau_squared_plus_the_teachers_entropy():
    """PyCIL's KD (soft cross-entropy, no tau^2) = KL(teacher || student) + H(teacher): the same
    gradient as the releases' KL divided by tau^2, a different value."""
    student, teacher, tau = torch.randn(8, 5), torch.randn(8, 5), 2.0
    p = F.softmax(teacher / tau, dim=-1)
    entropy = -(p * p.log()).sum(dim=-1).mean()
    kl = logit_distillation(student, teacher, tau, reduction="batchmean") / tau ** 2
    assert torch.allclose(soft_distillation(student, teacher, tau), kl + entropy, atol=1e-6)


def test_weight_aligning_gives_the_new_rows_the_old_rows_mean_norm_and_spares_the_bias():
    heads = torch.nn.ModuleList([torch.nn.Linear(4, 3), torch.nn.Linear(4, 2)])
    with torch.no_grad():
        heads[1].weight.mul_(5)
    bias = heads[1].bias.detach().clone()
    assert align_weights(heads) < 1
    norms = [float(head.weight.detach().norm(dim=1).mean()) for head in heads]
    assert math.isclose(norms[1], norms[0], rel_tol=1e-5)
    assert torch.equal(heads[1].bias, bias)


def test_nearest_mean_classifies_by_the_closest_normalised_class_mean():
    centres = torch.eye(3) * 4
    features = torch.cat([centres[c] + 0.1 * torch.randn(10, 3) for c in range(3)])
    labels = torch.arange(3).repeat_interleave(10)
    means = class_means(features, labels, 3)
    assert torch.allclose(means.norm(dim=1), torch.ones(3))
    queries = centres * 2 + 0.05 * torch.randn(3, 3)  # scale does not matter: features are normalised
    assert nearest_mean_scores(queries, means).argmax(dim=1).tolist() == [0, 1, 2]


def test_multistep_milestones_count_from_the_end_of_the_warm_up():
    cfg = load([], ["train.optimizer=sgd", "train.schedule=multistep", "train.lr_decay=0.1"]).train
    model = torch.nn.Linear(2, 2)
    optimizer, scheduler = make_optimizer(model, cfg, 1.0, 0.0, steps=20, warmup=4, milestones=[3, 6])
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] < 0.01 and lrs[4:7] == pytest.approx([1.0] * 3)
    assert lrs[7:10] == pytest.approx([0.1] * 3) and lrs[10] == pytest.approx(0.01)


def test_sgd_decays_every_parameter_and_adamw_spares_biases():
    model = torch.nn.Linear(2, 2)
    sgd = make_optimizer(model, load([], ["train.optimizer=sgd"]).train, 0.1, 5e-4, None, 0, [])[0]
    adamw = make_optimizer(model, load([], []).train, 0.1, 5e-4, None, 0, [])[0]
    assert [g["weight_decay"] for g in sgd.param_groups] == [5e-4] and len(sgd.param_groups[0]["params"]) == 2
    assert sorted(g["weight_decay"] for g in adamw.param_groups) == [0.0, 5e-4]


def test_bic_bias_layers_correct_their_own_task_and_train_only_in_their_phase():
    model = IncrementalCNN("cifar_resnet32", channels=3, bias_correction=True)
    model.add_task(2)
    model.add_task(3)
    images = torch.randn(4, 3, 8, 8)
    model.eval()
    before = model(images).logits
    with torch.no_grad():
        model.biases[1].alpha.fill_(2.0)
        model.biases[1].beta.fill_(1.0)
    after = model(images).logits
    assert torch.equal(after[:, :2], before[:, :2]) and torch.allclose(after[:, 2:], 2 * before[:, 2:] + 1)
    model.set_phase(BIAS)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["biases.1.alpha", "biases.1.beta"]
    model.set_phase(TRAIN)
    assert not any(p.requires_grad for p in model.biases.parameters())
    assert all(p.requires_grad for p in model.backbone.parameters())


# ---------------------------------------------------------------- whole runs

def test_icarl_is_judged_by_nearest_mean_and_records_the_logits_beside_it():
    learner = run("icarl")
    h = learner.history
    assert set(h.by_classifier) == {"nme", "cnn"} and h.acc == h.by_classifier["nme"]["acc"]
    assert len(h.by_classifier["cnn"]["acc_matrix"]) == 3
    assert h.memory_size == [12, 12, 12] and learner.memory.ranked.keys() == set(range(6))


def test_an_epoch_keeps_its_last_partial_batch_as_pycil_does_when_drop_last_is_off():
    """40 images at batch 16: the releases' loaders drop the last 8, PyCIL's train on them."""
    for drop_last, batches in ((True, 2), (False, 3)):
        cfg = load([], [*CNN, "method=icarl", f"train.drop_last={str(drop_last).lower()}"])
        learner = Learner(cfg, *data_of(cfg), log=lambda line: None)
        assert len(learner._loader(np.arange(40), shuffle=True, seed_offset=0, repeats=1)) == batches
    for preset in ("pycil_cifar.yaml", "der_cifar.yaml", "der_imagenet.yaml"):  # PyCIL's and DER's loaders
        assert load([f"configs/model/{preset}"], []).train.drop_last is False, preset


def test_the_cnn_bounds_train_the_same_backbone_without_memory_or_in_one_task():
    """finetune_cnn: every task in turn, no memory, logits only; joint_cnn: every class as one task."""
    finetune, joint = run("finetune_cnn"), run("joint_cnn")
    assert isinstance(finetune.model, IncrementalCNN) and isinstance(joint.model, IncrementalCNN)
    assert len(finetune.history.acc) == 3 and finetune.history.memory_size == [0, 0, 0]
    assert not finetune.history.by_classifier
    assert len(joint.history.acc) == 1 and len(joint.model.heads) == 1 and joint.model.heads[0].out_features == 6


def test_wa_aligns_the_last_tasks_rows_and_clips_when_asked():
    aligned = run("wa").model.heads
    old = torch.cat([head.weight.detach() for head in aligned[:-1]]).norm(dim=1).mean()
    assert math.isclose(float(aligned[-1].weight.detach().norm(dim=1).mean()), float(old), rel_tol=1e-5)
    clipped = run("wa", "train.nonnegative_classifier=true").model.heads
    assert all(p.min().item() >= 0 for p in clipped.parameters())


def test_bic_holds_images_out_trains_its_bias_phase_and_keeps_the_first_tasks_layer(monkeypatch):
    epochs, held_out = [], {}
    real = Learner._held_out

    def spy(self, task):
        held_out.setdefault(task, real(self, task))  # its first call: as the main phase sees the memory
        return held_out[task]

    monkeypatch.setattr(Learner, "_held_out", spy)
    learner = run("bic", "memory.size=40", on_epoch_end=epochs.append)
    phases = [(e["task"], e["phase"]) for e in epochs]
    assert phases == [(1, "train")] * 2 + [(2, "train")] * 2 + [(2, "bias")] * 2 + [(3, "train")] * 2 + \
        [(3, "bias")] * 2
    # 10% of the memory over the old classes, per class: 40 * 0.1 / 2 = 2 in task 2, 40 * 0.1 / 4 = 1 in
    # task 3; from the 2 new classes' images and each old class's exemplars
    assert [held_out[t].size for t in range(3)] == [0, 2 * 4, 1 * 6]
    assert sorted(learner.data.train.labels[held_out[2]]) == list(range(6))  # one of each class
    first, *later = learner.model.biases
    assert (first.alpha.item(), first.beta.item()) == (1.0, 0.0)  # never the newest in a BIAS phase
    assert all((b.alpha.item(), b.beta.item()) != (1.0, 0.0) for b in later)


def test_bic_resumed_inside_its_bias_phase_ends_as_an_uninterrupted_run():
    reference, _, resumed, epochs = resumed_inside_a_task(
        config_of("bic", "train.checkpoint_every=3"), lambda learner: learner.mid_task.phase == BIAS)
    assert [(e["task"], e["phase"], e["epoch"]) for e in epochs][0] == (2, "bias", 2)  # inside task 2
    assert resumed.history.acc_matrix == reference.history.acc_matrix
    state, again = reference.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(state[k], again[k]) for k in state)


# ---------------------------------------------------------------- two workers

def _worker(rank: int, store: str, out: str) -> None:
    """One of two gloo workers, as Ray Train starts them: an iCaRL run; what it ends with, saved."""
    import torch.distributed as td

    torch.set_num_threads(1)
    td.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        learner = run("icarl")
        torch.save({"means": learner._class_means(2), "acc": learner.history.by_classifier,
                    "memory": learner.memory.ranked}, f"{out}.{rank}")
    finally:
        td.destroy_process_group()


@pytest.mark.slow
def test_two_workers_share_one_memory_and_the_same_class_means(tmp_path):
    torch.multiprocessing.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path / "out")), nprocs=2)
    ranks = [torch.load(tmp_path / f"out.{r}", weights_only=False) for r in range(2)]
    assert ranks[0]["memory"] == ranks[1]["memory"] and len(ranks[0]["memory"]) == 6
    assert torch.equal(ranks[0]["means"], ranks[1]["means"]) and ranks[0]["means"].shape[0] == 6
    assert ranks[0]["acc"] == ranks[1]["acc"]


def test_channels_last_trains_the_same_model_up_to_float_rounding():
    """The first task's losses (later tasks depend on herding, whose near-ties on these random images
    rounding may break either way)."""
    losses = {layout: [] for layout in ("false", "true")}
    for layout, seen in losses.items():
        learner = run("icarl", f"train.channels_last={layout}",
                      on_epoch_end=lambda e, seen=seen: seen.append(e["loss"]) if e["task"] == 1 else None)
        assert learner.model.backbone.stem[0].weight.is_contiguous(
            memory_format=torch.channels_last if layout == "true" else torch.contiguous_format)
    # the first epoch's mean loss agrees to rounding; SGD's steps then amplify it a little
    assert len(losses["true"]) == 2 and losses["true"][0] == pytest.approx(losses["false"][0], rel=1e-4)
    assert losses["true"][1] == pytest.approx(losses["false"][1], rel=1e-2)
