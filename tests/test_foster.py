"""FOSTER on the method seam: its losses, the boosted network and its student, the compression, its
resume inside the compression."""

import pytest
import torch

from suite.config import load
from suite.learner.learner import Learner
from suite.learner.losses import balanced_distillation, class_balanced_weights, soft_distillation
from suite.models.foster import FOSTERNet
from tests.conftest import TINY, data_of
from tests.runs import resumed_inside_a_task, states_after_phases

pytestmark = pytest.mark.usefixtures("one_thread")

FOSTER = [*TINY, "method=foster", "train.epochs=2", "train.optimizer=sgd", "train.scale_lr=false", "train.lr=0.05",
          "train.loss=ce", "distill.tau=2", "distill.compress_epochs=2", "memory.size=24"]


def test_class_weights_are_the_effective_number_normalised_to_the_class_count():
    weights = class_balanced_weights((20, 20, 500), beta=0.9)
    raw = torch.tensor([(1 - 0.9) / (1 - 0.9 ** n) for n in (20, 20, 500)])
    assert torch.allclose(weights, raw / raw.sum() * 3) and weights[0] > weights[2]
    student, teacher = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.allclose(balanced_distillation(student, teacher, torch.ones(3), 2.0),
                          soft_distillation(student, teacher, 2.0))  # even weights: PyCIL's plain KD


def test_each_later_task_boosts_the_last_student_with_a_copy_of_its_backbone():
    torch.manual_seed(0)
    net = FOSTERNet("cifar_resnet32", 3)
    net.add_task(2)
    assert len(net.backbones) == 1 and net.div_head is None and net.student is None
    net.add_task(3)
    old_backbone = net.backbones[0]
    assert len(net.backbones) == 2 and [h.in_features for h in net.heads] == [128, 128]
    assert [h.in_features for h in net.old_heads] == [64] and net.div_head.out_features == 5
    assert all(torch.equal(a, b) for a, b in zip(net.backbones[1].state_dict().values(),
                                                 old_backbone.state_dict().values()))
    net.set_phase("train")
    assert not any(p.requires_grad for p in [*old_backbone.parameters(), *net.old_heads.parameters(),
                                              *net.student.parameters()])
    net.start_compression()
    assert torch.equal(net.student.heads[0].weight, net.old_heads[0].weight)
    student_backbone = net.student.backbone
    net.add_task(1)
    assert net.backbones[0] is student_backbone and [h.out_features for h in net.old_heads] == [2, 3]
    assert net.div_head.out_features == 6 and [h.in_features for h in net.heads] == [128] * 3


def test_compression_trains_the_student_alone_and_the_boosted_network_is_evaluated():
    cfg = load([], FOSTER)
    epochs = []
    learner = Learner(cfg, *data_of(cfg), log=lambda line: None, on_epoch_end=epochs.append)
    states = states_after_phases(learner, 1)
    learner.run()
    assert [(e["task"], e["phase"]) for e in epochs] == [(1, "train")] * 2 + [(2, "train")] * 2 + \
        [(2, "compress")] * 2 + [(3, "train")] * 2 + [(3, "compress")] * 2
    changed = {k for k in states["train"] if not torch.equal(states["train"][k], states["compress"][k])}
    assert changed and all(k.startswith("student.") for k in changed)  # the teacher's BatchNorm statistics too
    model = learner.model
    backbone = sum(p.numel() for p in model.backbones[0].parameters())
    assert learner.history.num_params[-1] == 2 * backbone + 3 * (2 * 128 + 2)  # two backbones, the boosted heads
    by = learner.history.by_classifier
    assert len(by["nme"]["acc"]) == 3 and len(by["student"]["acc"]) == 3  # PyCIL's "darknet": the student's own
    assert by["student"]["acc_matrix"][0] == by["cnn"]["acc_matrix"][0]  # the first task's network is its own student
    # the student counts its own network: one backbone and a head a task
    assert by["student"]["num_params"] == [backbone + tasks * (128 + 2) for tasks in (1, 2, 3)]
    assert by["student"]["num_params"][0] == learner.history.num_params[0]
    assert by["cnn"]["num_params"] == by["nme"]["num_params"] == learner.history.num_params


def test_a_checkpoint_from_before_the_classifiers_counts_keeps_each_count_on_its_task():
    """History restored from a checkpoint whose classifiers carry no num_params: the next evaluation's
    count lands on its own task, the earlier ones unknown (None)."""
    cfg = load([], FOSTER)
    learner = Learner(cfg, *data_of(cfg), log=lambda line: None)
    learner.run()
    for numbers in learner.history.by_classifier.values():
        del numbers["num_params"]
    learner.evaluate(2)
    student = learner.history.by_classifier["student"]
    assert len(student["acc"]) == 4 and student["num_params"][:3] == [None] * 3 and student["num_params"][3] > 0


def test_foster_resumed_inside_its_compression_ends_as_an_uninterrupted_run():
    reference, reference_epochs, resumed, resumed_epochs = resumed_inside_a_task(
        load([], [*FOSTER, "train.checkpoint_every=1"]), lambda learner: learner.mid_task.phase == "compress")
    assert [(e["task"], e["phase"], e["epoch"]) for e in resumed_epochs][0] == (2, "compress", 2)
    assert [e["loss"] for e in resumed_epochs] == [e["loss"] for e in reference_epochs][5:]
    assert resumed.history.acc_matrix == reference.history.acc_matrix


def test_foster_refuses_a_memory_that_leaves_a_class_without_an_exemplar():
    from suite.errors import UserError
    from suite.run.plan import check_config

    cfg = load([], [*FOSTER, "memory.size=0"])
    with pytest.raises(UserError, match="FOSTER's class weights need at least one image of each class"):
        check_config(cfg)
