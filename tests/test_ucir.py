"""UCIR on the method seam: imprinted weights, the frozen old weights, its losses, class means over
each exemplar and its copy with the colour channels reversed, its resume inside a task."""
import pytest
import torch
import torch.nn.functional as F

from suite.config import load
from suite.learner.learner import Learner
from suite.learner.losses import margin_ranking_loss
from tests.conftest import TINY, data_of
from tests.runs import resumed_inside_a_task

pytestmark = pytest.mark.usefixtures("one_thread")

UCIR = [*TINY, "method=ucir", "model.backbone=cifar_resnet32_cosine", "train.epochs=2", "train.optimizer=sgd",
        "train.scale_lr=false", "train.lr=0.05", "train.loss=ce", "memory.size=24", "memory.means_second_view=reversed_channels"]


def test_margin_ranking_is_torchs_loss_on_old_images_against_the_k_hardest_new_classes():
    """As the release calls nn.MarginRankingLoss: each old-class image's true cosine repeated K times
    against its K highest new-class cosines, target +1."""
    torch.manual_seed(0)
    cosines, labels = torch.rand(8, 7) * 2 - 1, torch.tensor([0, 5, 2, 6, 1, 4, 3, 2])
    old = labels < 4
    true = cosines[old].gather(1, labels[old, None]).repeat(1, 2)
    hardest = cosines[old, 4:].topk(2, dim=1).values
    expected = torch.nn.MarginRankingLoss(margin=0.5)(true.reshape(-1), hardest.reshape(-1), torch.ones(true.numel()))
    assert torch.allclose(margin_ranking_loss(cosines, labels, 4, 2, 0.5), expected)
    assert margin_ranking_loss(cosines, torch.tensor([4, 5] * 4), 4, 2, 0.5) == 0  # no old-class image


def learner_of(*sets: str, **hooks) -> Learner:
    cfg = load([], [*UCIR, *sets])
    return Learner(cfg, *data_of(cfg), log=lambda line: None, **hooks)


def test_new_weights_are_imprinted_and_the_old_ones_stay_frozen():
    learner = learner_of()
    after_growth, seen = learner.strategy.after_growth, {}

    def spy(model, task, new_class_features):
        if task == 1:
            seen["old"] = model.heads[0].weight.detach().clone()
            seen["features"] = new_class_features()
        after_growth(model, task, new_class_features)
        if task == 1:
            seen["imprinted"] = model.heads[1].weight.detach().clone()

    learner.strategy.after_growth = spy
    learner.run()
    features, imprinted = seen["features"], seen["imprinted"]
    assert len(features) == 2 and all(len(f) == 20 for f in features)  # each new class's training images
    assert torch.allclose(imprinted.norm(dim=1), seen["old"].norm(dim=1).mean().expand(2), rtol=1e-5)
    directions = torch.stack([F.normalize(F.normalize(f, dim=1).mean(0), dim=0) for f in features])
    assert torch.allclose(F.normalize(imprinted, dim=1), directions, atol=1e-5)
    assert torch.equal(learner.model.heads[0].weight, seen["old"])  # untouched by tasks 2 and 3


def test_class_means_average_each_exemplar_and_its_copy_with_the_channels_reversed():
    """As UCIR's CIFAR release: its "flipped" copy reverses the channel axis of HWC images."""
    learner = learner_of()
    learner.run()
    indices = learner.memory.indices()
    plain = learner._features(indices, learner.test_transform)
    reversed_channels = learner._features(indices, learner.test_transform, "reversed_channels")
    assert not torch.allclose(plain, reversed_channels)
    labels = torch.as_tensor([learner.label_of_class[c] for c in learner.data.train.labels[indices]])
    expected = []
    for label in range(6):
        both = torch.cat([plain[labels == label], reversed_channels[labels == label]])
        expected.append(F.normalize(F.normalize(both.double(), dim=1).mean(0), dim=0))
    assert torch.allclose(learner._class_means(2).double(), torch.stack(expected), atol=1e-5)


@pytest.mark.parametrize("view, raw_view", [("mirror", lambda x: x.flip(-1)), ("reversed_channels", lambda x: x.flip(1))])
def test_a_second_view_is_the_raw_image_seen_so_then_normalised(view, raw_view):
    from suite.learner.nme import second_view

    mean, std = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
    raw = torch.rand(2, 3, 4, 4)
    normalise = lambda x: (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)  # noqa: E731
    assert torch.allclose(second_view(normalise(raw), view, mean, std), normalise(raw_view(raw)), atol=1e-6)
    assert torch.equal(second_view(normalise(raw), "none", mean, std), normalise(raw))


def test_ucir_resumed_inside_a_task_ends_as_an_uninterrupted_run():
    reference, reference_epochs, resumed, resumed_epochs = resumed_inside_a_task(
        load([], [*UCIR, "train.checkpoint_every=1"]), lambda learner: learner.next_task == 1)  # task 2, epoch 1
    assert [(e["task"], e["epoch"]) for e in resumed_epochs][0] == (2, 2)
    assert [e["loss"] for e in resumed_epochs] == [e["loss"] for e in reference_epochs][3:]
    assert resumed.history.acc_matrix == reference.history.acc_matrix


def test_ucir_and_podnet_refuse_soft_labels_their_losses_cannot_take():
    from suite.errors import UserError
    from suite.run.plan import check_config

    for method in ("ucir", "podnet"):
        cfg = load([], [*UCIR, f"method={method}", "train.mixup=0.8"])
        with pytest.raises(UserError, match=f"{method}'s losses take each image's one label"):
            check_config(cfg)


def test_podnet_refuses_to_finetune_on_no_memory():
    from suite.errors import UserError
    from suite.run.plan import check_config

    with pytest.raises(UserError, match="podnet finetunes on its memory"):
        check_config(load([], [*UCIR, "method=podnet", "memory.size=0", "finetune.epochs=2"]))
