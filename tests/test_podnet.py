"""PODNet on the method seam: its losses, its local similarity classifier, its finetuning on a
memory balanced at the old classes' share, its resume inside a task."""
import pytest
import torch
import torch.nn.functional as F

from suite.config import load
from suite.learner.learner import Learner
from suite.learner.losses import nca_loss, pod_spatial_loss
from suite.learner.optim import epoch_cosine
from suite.models.cosine import CosineCNN
from suite.models.resnet import BACKBONE_BUILDERS
from tests.conftest import TINY, data_of
from tests.runs import resumed_inside_a_task

pytestmark = pytest.mark.usefixtures("one_thread")

PODNET = [*TINY, "method=podnet", "model.proxies=3", "train.epochs=2", "finetune.epochs=2", "finetune.lr=0.005",
          "train.optimizer=sgd", "train.scale_lr=false", "train.lr=0.05", "train.schedule=cosine_epoch",
          "memory.selection=herding_greedy", "memory.size=24"]


def test_nca_counts_the_row_maximum_in_the_true_class_place():
    """-(s_y - log(sum over the other classes of exp(s_j) + exp(max_j s_j))): what PODNet's release
    and PyCIL compute once their margin, subtracted from every class alike, has cancelled."""
    torch.manual_seed(0)
    s, y = torch.randn(6, 5) * 3, torch.tensor([0, 1, 2, 3, 4, 0])
    expected = []
    for row, label in zip(s, y):
        others = torch.cat([row[:label], row[label + 1:]])
        expected.append(-(row[label] - torch.log(others.exp().sum() + row.max().exp())))
    assert torch.allclose(nca_loss(s, y), torch.stack(expected).mean(), atol=1e-5)
    assert torch.allclose(nca_loss(s + 7.0, y), nca_loss(s, y), atol=1e-5)  # a shift of every class: no change


def test_pod_spatial_compares_width_and_height_pooled_squares_per_stage():
    torch.manual_seed(0)
    maps = (torch.randn(4, 3, 6, 5), torch.randn(4, 2, 3, 3))
    assert pod_spatial_loss(maps, maps) == 0
    other = tuple(m + 0.5 * torch.randn_like(m) for m in maps)
    expected = []
    for a, b in zip(maps, other):
        pooled = [F.normalize(torch.cat([x.pow(2).sum(3).flatten(1), x.pow(2).sum(2).flatten(1)], 1), dim=1)
                  for x in (a, b)]
        expected.append(torch.sqrt(((pooled[0] - pooled[1]) ** 2).sum(1)).mean())
    assert torch.allclose(pod_spatial_loss(maps, other), torch.stack(expected).mean(), atol=1e-6)


def test_the_cosine_backbone_has_projection_shortcuts_and_no_last_relu():
    """PyCIL's cosine_resnet32 has 466,256 parameters (counted in its checkout); its features can be
    negative, those of the plain ResNet-32 (a ReLU last) cannot."""
    torch.manual_seed(0)
    cosine, plain = BACKBONE_BUILDERS["cifar_resnet32_cosine"](), BACKBONE_BUILDERS["cifar_resnet32"]()
    assert sum(p.numel() for p in cosine.parameters()) == 466_256
    images = torch.randn(4, 3, 32, 32)
    assert (cosine.eval()(images) < 0).any() and (plain.eval()(images) >= 0).all()
    assert [m.shape[1:] for m in cosine.feature_maps(images)] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    resnet18 = BACKBONE_BUILDERS["cifar_resnet18"]().eval()
    assert [m.shape[1] for m in resnet18.feature_maps(images)] == [64, 128, 256, 512]


def test_a_class_scores_the_softmax_weighted_cosine_of_its_proxies_times_sigma():
    torch.manual_seed(0)
    model = CosineCNN("cifar_resnet32_cosine", 3, proxies=4)
    model.add_task(2)
    model.add_task(3)
    with torch.no_grad():
        model.sigma.fill_(2.5)
    model.eval()
    images = torch.randn(2, 3, 16, 16)
    out = model(images)
    unit = F.normalize(model.backbone(images), dim=1)
    weights = F.normalize(torch.cat([h.weight for h in model.heads]), dim=1).view(5, 4, -1)
    cosines = torch.einsum("bf,cpf->bcp", unit, weights)
    assert torch.allclose(out.logits, 2.5 * (cosines.softmax(-1) * cosines).sum(-1), atol=1e-5)
    model.set_phase("finetune")
    assert not any(p.requires_grad for p in model.heads[0].parameters())
    assert model.heads[1].weight.requires_grad and model.sigma.requires_grad


def test_the_per_epoch_cosine_holds_its_lr_through_an_epoch():
    """torch's CosineAnnealingLR stepped once per epoch (PyCIL): the lr of epoch e for all its steps."""
    factors = [epoch_cosine(step, batches=3, epochs=4, floor=0.0) for step in range(12)]
    assert factors[:3] == [1.0] * 3 and factors[3:6] == [pytest.approx(0.5 + 0.5 * 2 ** -0.5)] * 3
    assert factors[9] == pytest.approx(0.5 - 0.5 * 2 ** -0.5)


def test_finetuning_reads_a_memory_herded_at_the_old_classes_share_and_distils():
    """From the second task on: train, the new classes herded at the old classes' share (24 // 2 old
    classes = 12 each at task 2), finetuning on that memory with the teacher, then the memory's
    update to 24 // classes seen; results.json's memory sizes record only the last."""
    lines, epochs, teachers = [], [], []
    cfg = load([], PODNET)
    learner = Learner(cfg, *data_of(cfg), log=lines.append, on_epoch_end=epochs.append)
    loss = learner.strategy.loss

    def spy(out, teacher_out, targets, phase):
        teachers.append((phase.name, teacher_out is not None))
        return loss(out, teacher_out, targets, phase)

    learner.strategy.loss = spy
    learner.run()
    assert [(e["task"], e["phase"]) for e in epochs] == [(1, "train")] * 2 + [(2, "train")] * 2 + \
        [(2, "finetune")] * 2 + [(3, "train")] * 2 + [(3, "finetune")] * 2
    assert "task 2/3 finetuning memory: 48 exemplars (12 per class, herding_greedy)" in lines
    assert "task 3/3 finetuning memory: 36 exemplars (6 per class, herding_greedy)" in lines
    assert learner.history.memory_size == [24, 24, 24]
    assert ("finetune", True) in teachers and ("train", False) in teachers
    assert len(learner.history.by_classifier["nme"]["acc"]) == 3


def test_podnet_resumed_inside_its_finetuning_ends_as_an_uninterrupted_run():
    reference, reference_epochs, resumed, resumed_epochs = resumed_inside_a_task(
        load([], [*PODNET, "train.checkpoint_every=1"]), lambda learner: learner.mid_task.phase == "finetune")
    assert [(e["task"], e["phase"], e["epoch"]) for e in resumed_epochs][0] == (2, "finetune", 2)
    assert [e["loss"] for e in resumed_epochs] == [e["loss"] for e in reference_epochs][5:]
    assert resumed.history.acc_matrix == reference.history.acc_matrix
    assert resumed.history.memory_size == reference.history.memory_size
