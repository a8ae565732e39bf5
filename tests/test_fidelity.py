"""The suite trains as the DAFormer and DyTox releases train: their recipes, defaults and details.

Release values below are typed from the releases' option files (wangsfan/DAFormer
options/model/cifar_dual.yaml; arthurdouillard/dytox options/model/cifar_dytox*.yaml and
imagenet_dytox*.yaml) and their argparse defaults (lr 5e-4, min lr 1e-5, 5 warm-up epochs,
finetuning lr 5e-5, smoothing 0.1, aa rand-m9-mstd0.5-inc1, repeated augmentation on).
"""
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch
from timm.data import create_transform
from torchvision.transforms import v2
from torch.utils.data import DistributedSampler

from suite.config import Config, DataConfig, load
from suite.data.dataset import build_transform
from suite.data.registry import DataSet, Split
from suite.data.sampler import RepeatedAugmentationSampler
from suite.errors import UserError
from suite.learner.asam import ASAM
from suite.learner.learner import Learner
from suite.methods import METHODS
from suite.models import build_model
from suite.models.base import TaskHead
from suite.run.plan import check_config
from tests.conftest import REPO, TINY, data_of

PRESETS = REPO / "configs" / "model"

# What every CIFAR preset shares: the DyTox release's base recipe.
CIFAR_BASE = {
    "model.embed_dim": 384, "model.depth": 5, "model.num_heads": 12, "model.patch_size": 4, "model.mlp_ratio": 4.0,
    "model.drop_path": 0.1, "data.augment": True, "data.auto_augment": "rand-m9-mstd0.5-inc1",
    "data.repeated_augmentation": 3, "memory.size": 2000, "memory.selection": "herding",
    "train.epochs": 500, "train.batch_size": 128, "train.lr": 5e-4, "train.incremental_lr": 5e-4, "train.min_lr": 1e-5, "train.warmup_epochs": 5,
    "train.weight_decay": 1e-6, "train.loss": "bce", "train.divergence_weight": 0.1, "finetune.epochs": 20,
    "finetune.lr": 5e-5, "finetune.mixup": True, "distill.tau": 1.0, "distill.kd_reduction": "mean",
    "distill.knn_weight": 0.0,
}
NO_MIXUP = {"train.mixup": 0.0, "train.label_smoothing": 0.0, "train.asam_rho": 0.0}
MIXUP = {"train.mixup": 0.8, "train.label_smoothing": 0.1, "train.asam_rho": 0.0}
ASAM_ON = {"train.mixup": 0.8, "train.label_smoothing": 0.1, "train.asam_rho": 3.0, "train.asam_eta": 0.0}
IMAGENET = {"model.patch_size": 16, "data.input_size": 224}


def value(cfg: Config, key: str):
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


@pytest.mark.parametrize("preset, method, expected", [
    ("cifar_dytox", "dytox", {**CIFAR_BASE, **NO_MIXUP, "train.precision": "fp32", "model.task_token_init": "random"}),
    ("cifar_dytox_plus", "dytox", {**CIFAR_BASE, **MIXUP, "train.precision": "fp32"}),
    ("cifar_dytox_plusplus", "dytox", {**CIFAR_BASE, **ASAM_ON, "train.precision": "fp32"}),
    ("cifar_dual", "daformer_m", {**CIFAR_BASE, **ASAM_ON, "train.precision": "fp32", "model.out_proj": False}),
    ("imagenet_dytox", "dytox", {**CIFAR_BASE, **NO_MIXUP, **IMAGENET}),
    ("imagenet_dytox_plus", "dytox", {**CIFAR_BASE, **MIXUP, **IMAGENET}),
    ("imagenet_dual", "daformer_m", {**CIFAR_BASE, **ASAM_ON, **IMAGENET, "train.precision": "fp32",
                                     "model.out_proj": False}),
])
def test_preset_resolves_to_the_release_recipe(preset, method, expected):
    cfg = load([PRESETS / f"{preset}.yaml"])
    assert cfg.method == method
    assert {key: value(cfg, key) for key in expected} == expected


def test_defaults_are_the_releases():
    cfg = Config()
    assert cfg.distill.knn_weight == 0
    assert cfg.model.out_proj is False
    assert cfg.model.task_token_init == "random"
    assert cfg.train.asam_eta == 0
    assert cfg.finetune.mixup is True
    assert cfg.data.auto_augment == "rand-m9-mstd0.5-inc1"
    assert cfg.data.repeated_augmentation == 3


@pytest.mark.parametrize("method", ["dytox", "replay", "finetune", "joint"])
def test_knn_is_refused_for_methods_other_than_daformer(method):
    with pytest.raises(UserError, match="only DAFormer"):
        check_config(load([], TINY + [f"method={method}", "distill.knn_weight=0.5"]))


def test_knn_daformer_is_labelled_ours(tmp_path):
    check_config(load([], TINY + ["method=daformer_m", "distill.knn_weight=0.5"]))
    assert METHODS["daformer_m"].display_label(0.5) == "DAFormer-M + KNN (ours)"
    assert METHODS["daformer_m"].display_label(0.0) == "DAFormer-M"
    assert METHODS["dytox"].display_label(0.5) == "DyTox"


def test_knn_refusal_through_the_cli_is_one_line(cli, tmp_path):
    out = cli("configs/quickstart.yaml", "--set", "method=dytox", "--set", "distill.knn_weight=0.5",
              "--output-basedir", tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "distill.knn_weight" in out.stderr
    assert not any(tmp_path.iterdir())


def test_include_layers_a_preset_under_the_file(tmp_path):
    (tmp_path / "mine.yaml").write_text("include: ../model/cifar_dytox.yaml\ntrain:\n  epochs: 7\n")
    preset_dir = tmp_path / "model"
    preset_dir.mkdir()
    (preset_dir / "cifar_dytox.yaml").write_text((PRESETS / "cifar_dytox.yaml").read_text())
    nested = tmp_path / "sub"
    nested.mkdir()
    (nested / "mine.yaml").write_text((tmp_path / "mine.yaml").read_text())
    cfg = load([nested / "mine.yaml"])
    assert cfg.method == "dytox" and cfg.train.epochs == 7 and cfg.model.embed_dim == 384


def test_include_cycle_is_one_user_error(tmp_path):
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(UserError, match="includes itself"):
        load([tmp_path / "a.yaml"])


# ------------------------------------------------------------------ the learner's recipe details

def small_learner(*sets):
    cfg = load([], TINY + list(sets))
    data, scenario = data_of(cfg)
    return Learner(cfg, data, scenario, log=lambda m: None)


def optimizer_lrs(monkeypatch, learner) -> list[float]:
    """Run the learner; the lr of every optimizer it built, in order (main phase, finetuning, ...)."""
    seen = []
    real = Learner._optimizer

    def spy(self, lr, steps, warmup, **options):
        seen.append(lr)
        return real(self, lr, steps, warmup, **options)

    monkeypatch.setattr(Learner, "_optimizer", spy)
    learner.run()
    return seen


def test_finetune_lr_is_scaled_by_global_batch(monkeypatch):
    learner = small_learner("method=daformer_m", "train.batch_size=32", "finetune.lr=0.0008")
    seen = optimizer_lrs(monkeypatch, learner)
    main_lr = learner.cfg.train.lr * 32 / 512
    assert seen[:2] == pytest.approx([main_lr, main_lr])  # tasks 1 and 2, main phase
    assert seen[2] == pytest.approx(0.0008 * 32 / 512)  # task 2's finetuning


def test_tasks_after_the_first_train_at_the_incremental_lr(monkeypatch):
    """The releases' incremental_lr: the first task at lr, every later one at incremental_lr."""
    learner = small_learner("method=dytox", "train.batch_size=32", "train.lr=0.004", "train.incremental_lr=0.001",
                            "finetune.lr=0.0008")
    scale = 32 / 512
    # task 1; task 2 and its finetuning; task 3 and its finetuning
    assert optimizer_lrs(monkeypatch, learner) == pytest.approx(
        [0.004 * scale, 0.001 * scale, 0.0008 * scale, 0.001 * scale, 0.0008 * scale])



def test_weight_decay_spares_biases_and_one_dimensional_parameters():
    """timm's create_optimizer (the releases') puts no weight decay on biases and 1-D parameters."""
    learner = small_learner("method=dytox", "train.weight_decay=0.05")
    learner.model.add_task(2)
    learner.model.set_phase("train")
    optimizer, _ = learner._optimizer(1e-3, 10, warmup=0)
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(learner.model.named_parameters())
    assert decay_of[id(named["tab.q.weight"])] == 0.05
    assert decay_of[id(named["task_tokens.0"])] == 0.05  # 2-D, as the release's (1, 1, C) token
    assert decay_of[id(named["tab.proj.bias"])] == 0.0
    assert decay_of[id(named["tab.norm1.weight"])] == 0.0
    assert set(decay_of) == {id(p) for p in learner.model.parameters() if p.requires_grad}


def test_finetuning_reads_the_memory_in_the_order_classes_were_learnt(monkeypatch):
    """The releases' memory grows by concatenation, task by task; unshuffled finetuning sees that."""
    learner = small_learner("method=replay", "scenario.class_order=[3, 1, 4, 0, 5, 2]", "finetune.shuffle=false")
    finetuned = []
    real = Learner._loader

    def spy(self, indices, shuffle, seed_offset, repeats):
        if seed_offset >= 1000:
            finetuned.append(self.data.train.labels[indices].tolist())
        return real(self, indices, shuffle, seed_offset, repeats)

    monkeypatch.setattr(Learner, "_loader", spy)
    learner.run()
    labels = finetuned[-1]
    first_seen = list(dict.fromkeys(labels))
    assert first_seen == [3, 1, 4, 0, 5, 2]
    assert labels == sorted(labels, key=first_seen.index)  # each class in one block


@pytest.mark.parametrize("images", ["clean", "augmented"])
def test_herding_ranks_clean_or_augmented_images(monkeypatch, images):
    """The releases herd on one pass of the training transform; ours by default on the test one."""
    learner = small_learner("method=replay", f"memory.herding_images={images}")
    used = []
    real = Learner._features

    def spy(self, indices, transform):
        used.append(transform)
        return real(self, indices, transform)

    monkeypatch.setattr(Learner, "_features", spy)
    learner.run()
    expected = learner.train_transform if images == "augmented" else learner.test_transform
    assert used and all(t is expected for t in used)
    assert len(learner.memory) == 12

@pytest.mark.parametrize("keep", [True, False])
def test_finetuning_keeps_the_recipes_mixup(monkeypatch, keep):
    learner = small_learner("method=daformer_m", "train.mixup=0.8", f"finetune.mixup={str(keep).lower()}")
    phases = []
    real = Learner._run_phase

    def spy(self, task, phase):
        phases.append((phase.name, phase.mixup is not None))
        return real(self, task, phase)

    monkeypatch.setattr(Learner, "_run_phase", spy)
    learner.run()
    assert ("finetune", keep) in phases and ("finetune", not keep) not in phases
    assert ("train", True) in phases


def test_randaugment_policy_is_timms():
    learner = small_learner("data.image_size=32")
    ours = next(t for t in build_transform(learner.data, learner.cfg.data, train=True).transforms
                if type(t).__name__ == "RandAugment")
    theirs = next(t for t in create_transform(32, is_training=True, auto_augment="rand-m9-mstd0.5-inc1",
                                              interpolation="bicubic").transforms
                  if type(t).__name__ == "RandAugment")
    describe = lambda ra: [(op.name, op.prob, op.magnitude, op.magnitude_std, op.hparams["translate_const"],
                            op.hparams["img_mean"]) for op in ra.ops]
    assert describe(ours) == describe(theirs)
    assert ours.num_layers == theirs.num_layers == 2


def test_randaugment_runs_at_full_magnitude_on_this_pillow():
    """Increasing posterize keeps 0 bits at magnitude 10, which Pillow 13 refuses; ours gives black."""
    learner = small_learner("data.image_size=16", "data.auto_augment=rand-m10-mstd0-inc1-n15")
    transform = build_transform(learner.data, learner.cfg.data, train=True)
    image = torch.from_numpy(learner.data.train.images[0].transpose(2, 0, 1).copy())
    for _ in range(20):
        assert transform(image).shape == (3, 16, 16)


def test_repeated_augmentation_sampler_deals_each_copy_to_one_worker():
    size, workers, repeats = 50, 3, 3
    samplers = [RepeatedAugmentationSampler(size, workers, rank, repeats, seed=4) for rank in range(workers)]
    shards = [list(s) for s in samplers]
    assert all(len(shard) == math.ceil(size / workers) for shard in shards)  # an epoch as long as without it
    dealt = samplers[0].epoch_indices()
    for rank, shard in enumerate(shards):  # positions rank, rank + workers, ...: no position twice
        assert shard == dealt[rank::workers][:len(shard)].tolist()
    order = dealt[::repeats]
    assert torch.equal(dealt, order.repeat_interleave(repeats))  # each image `repeats` times in a row
    counts = torch.bincount(torch.tensor(sum(shards, [])), minlength=size)
    assert set(counts.tolist()) <= {0, repeats - 1, repeats}  # copies of an image stay together (but the last)
    assert (counts == repeats).sum() >= size // repeats - 1
    again = RepeatedAugmentationSampler(size, workers, 1, repeats, seed=4)
    assert list(again) == shards[1]
    again.set_epoch(1)
    assert list(again) != shards[1]


def test_repeated_augmentation_on_one_worker_puts_copies_in_one_batch():
    shard = list(RepeatedAugmentationSampler(12, 1, 0, 3, seed=0))
    assert len(shard) == 12 and all(len(set(shard[i:i + 3])) == 1 for i in range(0, 12, 3))


@pytest.mark.parametrize("shuffle", [True, False])
def test_one_repeat_is_torchs_distributed_sampler(shuffle):
    for rank in range(3):
        ours = RepeatedAugmentationSampler(10, 3, rank, 1, shuffle=shuffle, seed=5)
        theirs = DistributedSampler(range(10), num_replicas=3, rank=rank, shuffle=shuffle, seed=5)
        ours.set_epoch(2)
        theirs.set_epoch(2)
        assert list(ours) == list(theirs)


# ------------------------------------------------------------------ model details

def tiny_model(cfg: Config):
    """The run's model for 8-pixel RGB images and 3 tasks."""
    return build_model(cfg.method, 8, 3, 3, **asdict(cfg.model))


def dytox(*sets):
    cfg = load([], TINY + ["method=dytox", *sets])
    return tiny_model(cfg)


def test_dytox_new_task_token_is_freshly_initialised():
    model = dytox()
    model.add_task(2)
    with torch.no_grad():
        model.task_tokens[0].fill_(1.0)
    model.add_task(2)
    token = model.task_tokens[1]
    assert not torch.allclose(token, model.task_tokens[0])
    assert token.abs().max() < 0.2  # trunc_normal(std 0.02), not a copy of the ones


def test_dytox_token_copy_is_a_choice():
    model = dytox("model.task_token_init=copy")
    model.add_task(2)
    model.add_task(2)
    assert torch.equal(model.task_tokens[0], model.task_tokens[1])


@pytest.mark.parametrize("method", ["dytox", "daformer_m"])
def test_divergence_head_is_layernorm_and_linear(method):
    model = tiny_model(load([], TINY + [f"method={method}"]))
    model.add_task(2)
    assert model.div_head is None
    model.add_task(2)
    assert isinstance(model.div_head, TaskHead)
    assert isinstance(model.div_head[0], torch.nn.LayerNorm) and model.div_head[1].out_features == 3


def test_plain_vit_has_no_divergence_head():
    model = tiny_model(load([], TINY + ["method=replay"]))
    model.add_task(2)
    model.add_task(2)
    assert model.div_head is None


def test_asam_with_eta_zero_leaves_zero_parameters_unperturbed():
    torch.manual_seed(0)
    zero = torch.nn.Parameter(torch.zeros(5))
    other = torch.nn.Parameter(torch.randn(5))
    optimizer = torch.optim.SGD([zero, other], lr=0.1)
    ((zero * torch.randn(5)).sum() + (other ** 2).sum()).backward()
    assert zero.grad.abs().sum() > 0
    asam = ASAM(optimizer, rho=3.0, eta=0.0)
    before = other.detach().clone()
    asam.ascend()
    assert torch.equal(zero.detach(), torch.zeros(5))
    assert not torch.equal(other.detach(), before)
    ASAM(optimizer, rho=3.0, eta=0.01).ascend()
    assert not torch.equal(zero.detach(), torch.zeros(5))  # Kwon et al.'s eta moves them


def test_asam_eta_zero_matches_the_releases_adaptive_step():
    """The release: e = rho * w^2 * g / ||w * g||."""
    torch.manual_seed(1)
    w = torch.nn.Parameter(torch.randn(7))
    (w ** 3).sum().backward()
    g = w.grad.clone()
    expected = 3.0 * w.detach() ** 2 * g / (w.detach().abs() * g).norm()
    start = w.detach().clone()
    ASAM(torch.optim.SGD([w], lr=0.1), rho=3.0).ascend()
    assert torch.allclose(w.detach() - start, expected, atol=1e-6)


def test_paper_sweep_runs_each_method_with_its_release_recipe(tmp_path):
    from suite.sweep.spec import load_sweep

    sweep = load_sweep(REPO / "configs" / "sweeps" / "paper_cifar100.yaml", lambda p: REPO / p, {}, [], None,
                       tmp_path)
    for trial in sweep.trials:
        cfg = trial.cfg
        if cfg.method == "dytox":
            assert cfg.train.mixup == 0 and cfg.train.asam_rho == 0
        elif METHODS[cfg.method].architecture == "cnn":  # the DER/DyTox table's protocol
            assert cfg.model.backbone == "cifar_resnet18" and cfg.train.optimizer == "sgd" and cfg.memory.size == 2000
            assert cfg.finetune.retrain_classifier == (cfg.method == "der")
            assert (cfg.train.epochs, cfg.train.warmup_epochs, cfg.train.milestones) == (170, 10, [100, 120])
        else:
            assert cfg.train.mixup == 0.8 and cfg.train.asam_rho == 3.0 and cfg.model.out_proj is False
        assert cfg.distill.knn_weight == 0
    assert {t.cfg.method for t in sweep.trials} == {"daformer_s", "daformer_m", "dytox", "icarl", "ucir", "wa", "bic",
                                                   "podnet", "der", "foster"}


def test_a_recipe_for_a_method_no_trial_runs_is_refused(tmp_path):
    from suite.sweep.spec import load_sweep

    path = tmp_path / "s.yaml"
    path.write_text("base: [configs/quickstart.yaml]\nrecipes:\n  dytox: configs/model/cifar_dytox.yaml\n"
                    "axes:\n  method: [daformer_m]\n")
    with pytest.raises(UserError, match="recipes name dytox"):
        load_sweep(path, lambda p: REPO / p, {}, [], None, tmp_path)


def test_reports_label_a_knn_run_as_ours(tmp_path):
    from suite.report.aggregate import finished_runs, runs_frame
    from suite.report.load import load_results
    from tests.fake_results import make_result, write_run

    for seed, knn in enumerate([0.0, 0.5]):
        result = make_result("daformer_m", seed=seed, num_keys=None)
        result["config"]["distill"] = {"knn_weight": knn}
        write_run(tmp_path, f"run{seed}", result)
    runs = finished_runs(runs_frame(load_results(tmp_path)))
    labels = dict(zip(runs["seed"], runs["label"]))
    assert labels[0].startswith("DAFormer-M") and "KNN" not in labels[0]
    assert labels[1].startswith("DAFormer-M + KNN (ours)")


def daformer(*sets):
    return tiny_model(load([], TINY + ["method=daformer_m", *sets]))


def test_encoder_layernorms_use_the_releases_eps():
    model = daformer()
    norms = [m for m in model.encoder.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and {m.eps for m in norms} == {1e-5}  # nn.LayerNorm's, as both releases' blocks


def test_first_key_starts_as_the_releases_key_convolution_and_later_keys_at_zero():
    model = daformer()
    model.add_task(2)
    model.add_task(2)
    block = model.dual
    bound = block.head_dim ** -0.5  # torch's Conv2d default: uniform within 1/sqrt(fan in), weight and bias
    first, bias = block.keys[0], block.key_biases[0]
    assert first.abs().max() <= bound and bias.abs().max() <= bound
    assert first.std() > bound / 4  # spread over the interval, not zero
    assert not block.keys[1].any() and not block.key_biases[1].any()


def test_dual_block_draws_a_drop_path_mask_per_sample_and_key():
    model = daformer("model.drop_path=0.9")  # the dual block's rate: the last of the linear schedule
    for _ in range(3):
        model.add_task(2)
    block = model.dual.train()
    torch.manual_seed(0)
    x = torch.randn(64, model.encoder.num_tokens, model.embed_dim)
    emb = block(x)  # (B, K, C)
    # both residual branches dropped: the embedding is the tokens' mean, whatever the key
    dropped = torch.isclose(emb, x.mean(dim=1, keepdim=True), atol=1e-6).all(dim=2)  # (B, K)
    assert dropped.any()
    assert (dropped[:, 0] != dropped[:, 1]).any()  # a mask shared by a sample's keys never gives this


def test_imagenet_pipeline_resizes_bicubically_as_the_releases(tmp_path):
    files = np.array([str(tmp_path / "a.jpg")])
    data = DataSet("imagefolder", Split(files, np.array([0])), Split(files, np.array([0])), ["a"], 224, 3,
                   (0.5,) * 3, (0.5,) * 3)
    for train in (True, False):
        resizes = [t for t in build_transform(data, DataConfig(), train).transforms if hasattr(t, "interpolation")]
        assert resizes and all(t.interpolation == v2.InterpolationMode.BICUBIC for t in resizes)
