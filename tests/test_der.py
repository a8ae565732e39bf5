"""DER without pruning on the method seam: the growing network, its loss, its frozen old backbones,
its resume inside a task."""
import copy

import pytest
import torch

from suite.config import load
from suite.learner.learner import Learner
from suite.models.der import DERNet
from suite.models.resnet import BACKBONE_BUILDERS
from tests.conftest import TINY, data_of
from tests.runs import resumed_inside_a_task, states_after_phases

pytestmark = pytest.mark.usefixtures("one_thread")

DER = [*TINY, "method=der", "train.epochs=2", "train.loss=ce", "train.optimizer=sgd", "train.scale_lr=false",
       "train.lr=0.05", "memory.selection=herding_greedy"]
PUBLISHED_M = {10: 112.27, 20: 224.55, 50: 561.39}  # DyTox's CIFAR-100 table, DER w/o P, #P at 10/20/50 steps


def counted(model: torch.nn.Module) -> int:
    """Parameters used at test time, as the plan and results.json count them (the auxiliary head out)."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("div_head"))


def test_the_parameters_grow_by_a_backbone_and_the_classifier_per_task_as_the_references():
    """CIFAR ResNet-18 (the DER/DyTox table's protocol), 100 classes in 10 steps: step t holds t
    backbones and one classifier over their 512·t features (PyCIL's DERNet, the DER release's
    network); the counts are within 0.1% of those DyTox's table prints for DER w/o P."""
    with torch.device("meta"):
        backbone = sum(p.numel() for p in BACKBONE_BUILDERS["cifar_resnet18"]().parameters())
        net = DERNet("cifar_resnet18", 3)
        for t in range(1, 11):
            net.add_task(10)
            assert counted(net) == t * backbone + 512 * t * 10 * t + 10 * t
            assert net.div_head is None if t == 1 else net.div_head.out_features == 11
    for steps, published in PUBLISHED_M.items():
        ours = steps * backbone + 512 * steps * 100 + 100
        assert abs(ours / 1e6 - published) / published < 1e-3, (steps, ours)


def run(*sets: str, on_epoch_end=None, on_checkpoint=None, on_task_end=None) -> Learner:
    cfg = load([], [*DER, *sets])
    learner = Learner(cfg, *data_of(cfg), log=lambda line: None, on_epoch_end=on_epoch_end,
                      on_checkpoint=on_checkpoint)
    learner.run(on_task_end)
    return learner


def test_old_backbones_stay_as_their_task_left_them_and_the_new_rows_are_aligned():
    first_backbone = {}

    def snapshot(task, learner):
        if task == 0:
            first_backbone.update(copy.deepcopy(learner.model.backbones[0].state_dict()))

    learner = run(on_task_end=snapshot)
    model = learner.model
    assert len(model.backbones) == 3 and [h.in_features for h in model.heads] == [3 * model.out_dim] * 3
    after = model.backbones[0].state_dict()
    assert all(torch.equal(first_backbone[k], after[k]) for k in after)  # BatchNorm statistics too
    old = torch.cat([h.weight for h in model.heads[:-1]]).norm(dim=1).mean()
    assert torch.isclose(model.heads[-1].weight.norm(dim=1).mean(), old, rtol=1e-5)
    assert len(learner.history.acc) == 3 and learner.history.memory_size == [12, 12, 12]


def test_the_auxiliary_loss_joins_from_the_second_task():
    losses = []
    run(on_epoch_end=losses.append)
    assert [(e["task"], e["phase"]) for e in losses] == [(1, "train")] * 2 + [(2, "train")] * 2 + [(3, "train")] * 2


def test_der_resumed_inside_a_task_ends_as_an_uninterrupted_run():
    reference, reference_epochs, resumed, resumed_epochs = resumed_inside_a_task(
        load([], [*DER, "train.checkpoint_every=1"]), lambda learner: learner.next_task == 1)  # task 2, epoch 1
    assert [(e["task"], e["epoch"]) for e in resumed_epochs][0] == (2, 2)
    assert [e["loss"] for e in resumed_epochs] == [e["loss"] for e in reference_epochs][3:]
    assert resumed.history.acc_matrix == reference.history.acc_matrix


DECOUPLE = ["finetune.retrain_classifier=true", "finetune.epochs=2", "finetune.lr=0.05", "finetune.milestones=[1]",
            "finetune.temperature=5", "train.warmup_epochs=1"]


def changed_by(learner, hook: str, calls: list) -> None:
    """Wrap the strategy's `hook`: each call appended to `calls` as (its arguments after the model,
    the parameters it changed)."""
    original = getattr(learner.strategy, hook)

    def spy(model, *args):
        before = {k: v.clone() for k, v in model.named_parameters()}
        original(model, *args)
        after = dict(model.named_parameters())
        calls.append((args[:1] if hook == "after_growth" else args,
                      {k for k in after if not torch.equal(before[k], after[k])}))
    setattr(learner.strategy, hook, spy)


@pytest.mark.parametrize("release", [True, False])
def test_the_release_builds_the_classifiers_afresh_each_task_and_resets_them_after_the_warm_up(release):
    """DER's release (its classifier retraining on): each task's classifier without the old rows
    (reuse_oldfc: False), the classifier and the auxiliary one re-initialised after the warm-up's
    last epoch. PyCIL's DER keeps the old rows and resets nothing."""
    cfg = load([], [*DER, *(DECOUPLE if release else ["train.warmup_epochs=1"])])
    learner = Learner(cfg, *data_of(cfg), log=lambda line: None)
    grown, epochs = [], []
    changed_by(learner, "after_growth", grown)
    changed_by(learner, "after_epoch", epochs)
    learner.run()

    def classifiers(task):
        return ({f"heads.{i}.{p}" for i in range(task + 1) for p in ("weight", "bias")} |
                ({"div_head.weight", "div_head.bias"} if task > 0 else set()))
    if release:  # every weight drawn again; the biases at 0 (the new ones were already)
        assert grown == [((task,), {k for k in classifiers(task) if k.endswith("weight")} |
                          {f"heads.{i}.bias" for i in range(task)}) for task in range(3)]
    else:
        assert all(not changed for _, changed in grown)
    reset = [(args, changed) for args, changed in epochs if changed]
    assert reset == ([((task, "train", 1), classifiers(task)) for task in range(3)] if release else [])
    assert len(epochs) == 3 * 2 + (2 * 2 if release else 0)  # every epoch: train, and finetuning from task 2


def test_the_releases_reset_reaches_every_worker_and_needs_an_epoch_after_the_warm_up(monkeypatch):
    """Rebuilt at growth: Kaiming-normal rows (beyond the uniform initialisation's bound), biases 0. At
    the warm-up's end every classifier parameter is sent from rank 0 once; nothing when the warm-up
    fills the phase (the release's epoch loop never reaches its reset then)."""
    from suite.learner import dist
    from suite.strategies import strategy_for

    model = DERNet("cifar_resnet32", 3)
    model.add_task(2)
    model.add_task(2)
    strategy = strategy_for(load([], [*DER, *DECOUPLE]))  # a warm-up epoch of 2
    strategy.after_growth(model, 1, None)
    bound = (3 / (2 * model.out_dim)) ** 0.5  # Kaiming-uniform's, with fan-in 2 x 64
    assert all(head.weight.abs().max() > bound and not head.bias.any() for head in model.heads)
    sent = []
    monkeypatch.setattr(dist, "is_alone", lambda: False)
    monkeypatch.setattr(dist.dist, "broadcast", lambda tensor, src: sent.append((tensor, src)))
    for epochs_done in (1, 2):
        strategy.after_epoch(model, 1, "train", epochs_done)
    classifier = [p for head in (*model.heads, model.div_head) for p in head.parameters()]
    assert [id(t) for t, _ in sent] == [id(p) for p in classifier] and {src for _, src in sent} == {0}
    sent.clear()
    strategy_for(load([], [*DER, *DECOUPLE, "train.warmup_epochs=2"])).after_epoch(model, 1, "train", 2)
    assert not sent


@pytest.mark.parametrize("schedule,epoch", [([], 1), (["train.warmup_epochs=2", "train.epochs=3"], 1)])
def test_der_resumed_around_the_releases_warm_up_reset_ends_as_an_uninterrupted_run(schedule, epoch):
    """From the checkpoint just after the reset (a warm-up epoch), or before it (two)."""
    reference, reference_epochs, resumed, resumed_epochs = resumed_inside_a_task(
        load([], [*DER, *DECOUPLE, *schedule, "train.checkpoint_every=1"]),
        lambda learner: learner.next_task == 1 and learner.mid_task.phase == "train"
        and learner.mid_task.epochs_done == epoch)
    assert [(e["task"], e["phase"], e["epoch"]) for e in resumed_epochs][0] == (2, "train", epoch + 1)
    assert [e["loss"] for e in resumed_epochs] == [e["loss"] for e in reference_epochs][-len(resumed_epochs):]
    assert resumed.history.acc_matrix == reference.history.acc_matrix


def test_the_release_retrains_the_classifier_alone_on_a_balanced_subset_before_the_memory_update():
    cfg = load([], [*DER, *DECOUPLE])
    epochs, balanced = [], {}
    learner = Learner(cfg, *data_of(cfg), log=lambda line: None, on_epoch_end=epochs.append)
    states = states_after_phases(
        learner, 1, lambda: balanced.setdefault("labels", learner.data.train.labels[learner._balanced(1)]))
    learner.run()
    assert [(e["task"], e["phase"]) for e in epochs] == [(1, "train")] * 2 + [(2, "train")] * 2 + \
        [(2, "finetune")] * 2 + [(3, "train")] * 2 + [(3, "finetune")] * 2
    changed = {k for k in states["train"] if not torch.equal(states["train"][k], states["finetune"][k])}
    assert changed and all(k.startswith("heads.") for k in changed)  # the backbones' BatchNorm statistics too
    labels = balanced["labels"]  # task 2: its 2 new classes' images and the 2 old classes' exemplars
    counts = [int((labels == c).sum()) for c in range(4)]
    assert len(set(counts)) == 1 and counts[0] == 12 // 2  # the smallest class: an old one's 6 exemplars


def test_der_resumed_inside_its_classifier_retraining_ends_as_an_uninterrupted_run():
    reference, _, resumed, _ = resumed_inside_a_task(load([], [*DER, *DECOUPLE, "train.checkpoint_every=1"]),
                                                     lambda learner: learner.mid_task.phase == "finetune")
    assert resumed.history.acc_matrix == reference.history.acc_matrix
