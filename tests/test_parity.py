"""bench/parity without the releases: the CIFAR-layout pack, our side's quick run, the report."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.parity import pack, pycil, report
from bench.parity.__main__ import main as parity_main
from suite.config import DataConfig, load
from suite.data.sources.cifar import load as load_cifar

REPO = Path(__file__).resolve().parents[1]


def fake_tiny_imagenet(root: Path, classes: int = 100, train: int = 2, val: int = 1) -> list[str]:
    """Stanford's layout with small random JPEGs (64x64; every tenth class greyscale)."""
    rng = np.random.default_rng(0)
    wnids = [f"n{9000000 - i:08d}" for i in range(classes)]  # written unsorted on purpose
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    annotations, k = [], 0
    for c, wnid in enumerate(wnids):
        mode, shape = ("L", (64, 64)) if c % 10 == 0 else ("RGB", (64, 64, 3))
        images = root / "train" / wnid / "images"
        images.mkdir(parents=True)
        for i in range(train):
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(images / f"{wnid}_{i}.JPEG")
        for _ in range(val):
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / "val" / "images" / f"val_{k}.JPEG")
            annotations.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63")
            k += 1
    (root / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    return wnids


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    base = tmp_path_factory.mktemp("parity")
    wnids = fake_tiny_imagenet(base / "tiny")
    manifest = pack.pack(base / "tiny", base / "pack")
    return base, wnids, manifest


def test_pack_is_read_by_our_cifar100_source(packed):
    base, wnids, manifest = packed
    data = load_cifar(DataConfig(name="cifar100", path=str(base / "pack")))
    assert data.train.images.shape == (200, 32, 32, 3) and data.test.images.shape == (100, 32, 32, 3)
    assert data.class_names == sorted(wnids) == manifest["classes"]
    assert sorted(np.bincount(data.train.labels).tolist()) == [2] * 100
    last = sorted(wnids)[-1]  # label 99, written first: a greyscale source, converted to RGB
    expected = Image.open(base / "tiny" / "train" / last / "images" / f"{last}_0.JPEG").convert("RGB")
    expected = np.asarray(expected.resize((32, 32), Image.Resampling.BICUBIC))
    assert data.train.labels[198] == 99 and np.array_equal(data.train.images[198], expected)
    val_labels = [sorted(wnids).index(line.split("\t")[1])
                  for line in (base / "tiny" / "val" / "val_annotations.txt").read_text().splitlines()]
    assert data.test.labels.tolist() == val_labels


def test_pack_pickles_load_like_cifar(packed):
    """torchvision's reader (latin1: str keys) and CIFAR's own recipe (encoding='bytes': b'data')."""
    base, _, _ = packed
    folder = base / "pack" / pack.RELEASE_DIR
    latin1 = pickle.loads((folder / "train").read_bytes(), encoding="latin1")
    raw = pickle.loads((folder / "train").read_bytes(), encoding="bytes")
    assert {"data", "fine_labels", "filenames", "batch_label"} <= set(latin1)
    assert np.array_equal(raw[b"data"], latin1["data"]) and raw[b"fine_labels"] == latin1["fine_labels"]
    assert len(pickle.loads((folder / "meta").read_bytes(), encoding="latin1")["fine_label_names"]) == 100


def test_pack_is_kept_when_the_source_is_unchanged(packed):
    base, _, _ = packed
    train = base / "pack" / pack.RELEASE_DIR / "train"
    before = train.stat().st_mtime_ns
    pack.pack(base / "tiny", base / "pack")
    assert train.stat().st_mtime_ns == before


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert parity_main(["--tiny-imagenet", str(tmp_path / "none"), "--quick", "--no-timing", "--impl", "ours"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    fake_tiny_imagenet(tmp_path / "tiny", classes=100, train=1, val=1)
    code = parity_main(["--tiny-imagenet", str(tmp_path / "tiny"), "--quick", "--no-timing", "--impl", "release",
                        "--release-python", sys.executable, "--daformer", str(tmp_path / "missing")])
    assert code == 2 and "missing mainDual.py" in capsys.readouterr().err


def test_quick_ours_runs_and_reports(packed, tmp_path):
    """Our side of --quick end to end: 4 classes in 2 tasks, stopped after task 2, then the report."""
    base, _, _ = packed
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bench.parity", "--quick", "--impl", "ours", "--no-timing", "--seeds", "0",
           "--methods", "DyTox", "--tiny-imagenet", str(base / "tiny"), "--data-dir", str(base / "pack"),
           "--work-dir", str(tmp_path / "work"), "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((out / "runs" / "quick-dytox-ours-seed0.json").read_text())
    assert record["status"] == "finished", record.get("log_tail")
    assert len(record["acc"]) == 2 and len(record["acc_matrix"][1]) == 2
    assert record["avg_incremental_accuracy"] == pytest.approx(sum(record["acc"]) / 2)
    assert "| DyTox | ours | 0 | finished |" in (out / "README.md").read_text()


def _record(method, impl, seed, avg, last):
    return {"key": f"{method}-{impl}-{seed}", "method": method, "impl": impl, "seed": seed, "status": "finished",
            "avg_incremental_accuracy": avg, "last_accuracy": last, "acc": [avg, last], "wall_s": 10.0,
            "command": ["python", impl]}


def test_compare_gap_and_seed_spread():
    records = [_record("DyTox", "release", 0, 50.0, 40.0), _record("DyTox", "release", 1, 54.0, 42.0),
               _record("DyTox", "ours", 0, 51.0, 30.0), _record("DyTox", "ours", 1, 53.0, 31.0)]
    (row,) = report.compare(records)
    avg, last = row["avg_incremental_accuracy"], row["last_accuracy"]
    assert avg["gap"] == pytest.approx(0.0) and avg["within_spread"] is True
    assert last["gap"] == pytest.approx(-10.5) and last["within_spread"] is False
    assert avg["release"]["range"] == pytest.approx(4.0) and avg["release"]["n"] == 2


def test_report_writes_readme_and_json(tmp_path):
    records = [_record("DAFormer-M", impl, s, 40.0 + s, 30.0 + s) for impl in ("release", "ours") for s in (0, 1)]
    recipe = {"classes": 4, "increment": 2, "tasks": 2, "embed_dim": 32, "encoder_depth": 1, "num_heads": 2,
              "patch_size": 4, "epochs": 1, "finetune_epochs": 1, "memory": 100, "batch_size": 32, "lr": 5e-4, "incremental_lr": 5e-4,
              "finetune_lr": 5e-5, "num_workers": 2}
    meta = {"recipe": recipe, "git_commit": "abc", "suite_dirty": False, "written": "now",
            "machine": {"cpu": "CPU", "cores": 2, "isa": "AVX2", "memory_gib": 24.0, "python": "3.11"},
            "sources": {"daformer release": {"path": "/x", "tree_sha256": "0" * 64, "commit": "c0ffee"}},
            "release_python": "py", "release_versions": "v", "ours_python": "py", "ours_versions": "v",
            "data": {"source": "tiny", "pack": "pack", "resize": "bicubic"}, "benchmark_command": "python -m bench.parity",
            "release_environment": ["note"]}
    timing = {"rows": [{"keys": 1, "batch": 8, "repeats": 2, "release_ms": 20.0, "ours_ms": 10.0,
                        "ratio_release_over_ours": 2.0, "release_params": 5, "ours_params": 4}],
              "threads": 1, "peak_rss_mib": 100.0}
    text = report.write(tmp_path, records, meta, timing).read_text()
    assert "| DAFormer-M | avg incremental |" in text and "| 1 | 8 | 2 | 20 | 10 | 2.00 |" in text
    assert "commit `c0ffee`" in text and "torch.distributed.init_process_group" in text
    saved = json.loads((tmp_path / "runs.json").read_text())
    assert len(saved["runs"]) == 4 and saved["comparison"][0]["method"] == "DAFormer-M"


def test_equivalence_needs_the_90_percent_interval_inside_the_margin():
    close = [_record("DyTox", impl, s, v, v) for impl, values in (("release", (50.0, 51.0, 49.0, 50.5, 49.5)),
                                                                  ("ours", (50.2, 50.9, 49.4, 50.8, 49.9)))
             for s, v in enumerate(values)]
    (row,) = report.compare(close, margin=1.5)
    low, high = row["avg_incremental_accuracy"]["ci90"]
    assert low == pytest.approx(-0.605, abs=1e-3) and high == pytest.approx(1.085, abs=1e-3)  # gap 0.24, Welch
    assert row["avg_incremental_accuracy"]["equivalent"] is True
    (row,) = report.compare(close, margin=1.0)  # the same runs cannot exclude a gap of one point
    assert row["avg_incremental_accuracy"]["equivalent"] is False
    far = [{**r, "avg_incremental_accuracy": r["avg_incremental_accuracy"] + (3.0 if r["impl"] == "ours" else 0.0)}
           for r in close]
    (row,) = report.compare(far, margin=1.5)
    assert row["avg_incremental_accuracy"]["equivalent"] is False


def test_wrapper_varies_the_releases_sample_order_with_the_seed(tmp_path, monkeypatch):
    package = tmp_path / "continual"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "samplers.py").write_text("class RASampler:\n    def set_epoch(self, epoch):\n        self.epoch = epoch\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "continual", raising=False)
    monkeypatch.delitem(sys.modules, "continual.samplers", raising=False)
    from bench.parity import wrapper

    wrapper.seed_sample_order(["--epochs", "3", "--seed", "2"])
    from continual.samplers import RASampler

    sampler = RASampler()
    sampler.set_epoch(5)
    assert sampler.epoch == 2005


# ---------------------------------------------------------------- PyCIL (the classic baselines)

@pytest.mark.parametrize("name", sorted(set(pycil.BASELINES) - {"PODNet", "FOSTER"}))
def test_pycil_and_ours_are_given_the_same_recipe(name):
    """Our side's config (the method's PyCIL-protocol preset + the recipe's keys) against the constants
    PyCIL's side sets in its models/<method>.py."""
    baseline, recipe = pycil.BASELINES[name], pycil.CnnRecipe()
    theirs = pycil.pycil_hyper_parameters(baseline, recipe)
    ours = load([f"configs/model/cifar_{baseline.ours_method}.yaml"], pycil.ours_sets(baseline, recipe, seed=3))
    t = ours.train
    assert ours.method == baseline.ours_method and ours.model.backbone == "cifar_resnet32" and ours.seed == 3
    assert (t.incremental_epochs, t.incremental_lr, t.incremental_milestones, t.incremental_weight_decay) == (
        theirs["epochs"], theirs["lrate"], theirs["milestones"], theirs["weight_decay"])
    assert (t.epochs, t.lr, t.milestones, t.weight_decay) == (
        theirs.get("init_epoch", theirs["epochs"]), theirs.get("init_lr", theirs["lrate"]),
        theirs.get("init_milestones", theirs["milestones"]), theirs.get("init_weight_decay", theirs["weight_decay"]))
    assert (t.batch_size, ours.distill.tau, t.lr_decay, ours.memory.size) == (
        theirs["batch_size"], theirs["T"], theirs["lrate_decay"], recipe.memory)
    assert (t.optimizer, t.momentum, t.scale_lr, t.schedule, t.loss) == ("sgd", 0.9, False, "multistep", "ce")
    assert (ours.memory.selection, ours.memory.herding_images, ours.finetune.epochs) == ("herding_greedy", "clean", 0)
    assert ours.data.color_jitter == pytest.approx(63 / 255, abs=1e-6) and ours.data.auto_augment is None


def test_pycil_and_ours_are_given_the_same_podnet_recipe():
    """PODNet: one cosine schedule stepped per epoch and one weight decay for every task, its
    finetuning's epochs and lr, on PyCIL's cosine ResNet-32 (convnet_type cosine_resnet32)."""
    baseline, recipe = pycil.BASELINES["PODNet"], pycil.CnnRecipe()
    theirs = pycil.pycil_hyper_parameters(baseline, recipe)
    ours = load(["configs/model/cifar_podnet.yaml"], pycil.ours_sets(baseline, recipe, seed=3))
    t = ours.train
    assert baseline.convnet == "cosine_resnet32" and ours.model.backbone == "cifar_resnet32_cosine"
    assert (t.epochs, t.incremental_epochs, t.lr, t.incremental_lr, t.batch_size) == (
        theirs["epochs"], theirs["epochs"], theirs["lrate"], theirs["lrate"], theirs["batch_size"])
    assert (t.weight_decay, t.incremental_weight_decay) == (theirs["weight_decay"],) * 2
    assert (t.schedule, t.min_lr, t.warmup_epochs, t.optimizer, t.momentum, t.scale_lr) == (
        "cosine_epoch", 0.0, 0, "sgd", 0.9, False)
    assert (ours.finetune.epochs, ours.finetune.lr) == (theirs["ft_epochs"], theirs["ft_lrate"])
    assert (ours.model.proxies, ours.distill.pod_flat, ours.distill.pod_spatial) == (10, 1.0, 5.0)  # PyCIL's
    assert ours.memory.size == recipe.memory and ours.memory.selection == "herding_greedy"


def test_pycil_and_ours_are_given_the_same_foster_recipe():
    """FOSTER: PyCIL reads its hyper-parameters from its args; one cosine schedule stepped per epoch and
    one weight decay for the first task and the boosting; the compression's epochs at the same lr."""
    baseline, recipe = pycil.BASELINES["FOSTER"], pycil.CnnRecipe()
    theirs = pycil.pycil_hyper_parameters(baseline, recipe)
    ours = load(["configs/model/cifar_foster.yaml"], pycil.ours_sets(baseline, recipe, seed=3))
    t, d = ours.train, ours.distill
    assert baseline.by_args and ours.model.backbone == "cifar_resnet32"
    assert (t.epochs, t.lr, t.weight_decay) == (theirs["init_epochs"], theirs["init_lr"], theirs["init_weight_decay"])
    assert (t.incremental_epochs, t.incremental_lr, t.incremental_weight_decay) == (
        theirs["boosting_epochs"], theirs["lr"], theirs["weight_decay"])
    assert (d.compress_epochs, d.compress_lr) == (theirs["compression_epochs"], theirs["lr"])
    assert (d.foster_beta1, d.foster_beta2, d.tau) == (theirs["beta1"], theirs["beta2"], theirs["T"])
    assert (t.schedule, t.min_lr, t.batch_size, t.optimizer, t.scale_lr) == (
        "cosine_epoch", 0.0, theirs["batch_size"], "sgd", False)
    assert (theirs["oofc"], theirs["is_teacher_wa"], theirs["is_student_wa"], theirs["lambda_okd"]) == ("ft", False, False, 1)


# ---------------------------------------------------------------- UCIR against its authors' release

def test_ucir_release_and_ours_are_given_the_same_recipe():
    """Our side's config against what the release's script runs: its constants (batch 128, lr 0.1, weight
    decay 5e-4 in every task, no colour jitter), run.sh's full-UCIR flags, the recipe's epochs, milestones
    and growing memory, and the class order the script draws from its seed."""
    from bench.parity import ucir, ucir_side

    recipe = ucir.UcirRecipe()
    ours = load(["configs/model/cifar_ucir.yaml"], ucir.ours_sets(recipe, seed=3))
    t = ours.train
    assert ours.method == "ucir" and ours.model.backbone == "cifar_resnet32_cosine" and ours.seed == 3
    assert (t.batch_size, t.lr, t.incremental_lr, t.weight_decay, t.incremental_weight_decay) == (
        128, 0.1, 0.1, 5e-4, 5e-4)
    assert (t.epochs, t.incremental_epochs) == (recipe.epochs,) * 2
    assert t.milestones == t.incremental_milestones == list(recipe.milestones) == [recipe.epochs // 2, recipe.epochs * 3 // 4]
    assert (t.optimizer, t.momentum, t.scale_lr, t.schedule, t.lr_decay, t.drop_last) == (
        "sgd", 0.9, False, "multistep", 0.1, False)
    assert (ours.memory.per_class, ours.memory.selection, ours.memory.herding_images, ours.memory.means_second_view) == (
        recipe.per_class, "herding", "clean", "reversed_channels")
    assert ours.data.color_jitter == 0.0 and ours.distill.less_forget == 5.0 and ours.finetune.epochs == 0
    rng_state = np.random.get_state()
    np.random.seed(3)
    drawn = np.arange(recipe.classes)
    np.random.shuffle(drawn)  # what the script does with --random_seed 3
    np.random.set_state(rng_state)
    assert ours.scenario.class_order == drawn.tolist() == ucir.class_order(3, recipe.classes)
    flags = ucir_side.flags(ucir.release_settings(recipe, seed=3))
    assert " ".join(flags).startswith(f"--nb_cl_fg {recipe.increment} --nb_cl {recipe.increment} --num_classes "
                                      f"{recipe.classes} --nb_protos {recipe.per_class} --epochs {recipe.epochs}")
    for flag in ("--imprint_weights", "--less_forget", "--adapt_lamda", "--mr_loss", "--random_seed 3", "--lamda 5",
                 "--dist 0.5", "--K 2", "--lw_mr 1", "--rs_ratio 0.0"):
        assert flag in " ".join(flags)


def test_ucir_side_reads_each_tasks_accuracy_from_a_confusion_matrix():
    from bench.parity.ucir_side import accuracy_row

    matrix = np.array([[8, 2, 0, 0], [1, 9, 0, 0], [5, 0, 5, 0], [0, 0, 4, 6]])  # true x predicted, 2 tasks of 2
    row = accuracy_row(matrix, increment=2)
    assert row["top1"] == pytest.approx(100 * 28 / 40) and row["row"] == pytest.approx([85.0, 55.0])


def test_ucir_side_serves_the_images_the_release_assigns_and_decays_at_the_recipes_milestones(packed, monkeypatch):
    """The old torchvision attributes the script re-points (test_data / test_labels) are what the reader
    serves; the scheduler the script builds with [80, 120] decays at the recipe's milestones."""
    import torch
    import torchvision.datasets.cifar as tv_cifar

    from bench.parity.ucir_side import legacy_cifar100, release_milestones, with_milestones

    base, _, _ = packed
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)  # as ucir_side: not CIFAR's md5
    reader = legacy_cifar100(tv_cifar.CIFAR100)(root=str(base / "pack"), train=False, download=True)
    assert len(reader) == len(reader.test_data) == 100 and reader[0][1] == reader.test_labels[0]
    reader.test_data, reader.test_labels = reader.test_data[5:7], np.array([4, 2])
    image, label = reader[1]
    assert len(reader) == 2 and label == 2 and np.array_equal(np.asarray(image), reader.test_data[1])
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    recipe = [3]  # a decay at the start of epoch 3, as ours decays
    scheduler = with_milestones(torch.optim.lr_scheduler.MultiStepLR, release_milestones(recipe))(
        optimizer, milestones=[80, 120], gamma=0.1)
    rates = []
    for _ in range(5):  # the script's loop: the scheduler stepped at each epoch's start, then the epoch trains
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1])


def test_pycil_quick_ours_runs_and_reports_both_classifiers(packed, tmp_path):
    base, _, _ = packed
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bench.parity", "pycil", "--quick", "--impl", "ours", "--seeds", "0",
           "--methods", "iCaRL", "--pycil", str(tmp_path), "--release-python", sys.executable,
           "--tiny-imagenet", str(base / "tiny"), "--data-dir", str(base / "pack"),
           "--work-dir", str(tmp_path / "work"), "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((out / "runs" / "quick-icarl-ours-seed0.json").read_text())
    assert record["status"] == "finished", record.get("log_tail")
    assert record["acc"] == record["nme"]["acc"] and len(record["cnn"]["acc"]) == 2  # NME is iCaRL's headline
    readme = (out / "README.md").read_text()
    assert "| iCaRL | ours | 0 | finished |" in readme and "| iCaRL (cnn) | ours | 0 | finished |" not in readme


def test_the_cpu_table_runs_the_cnn_baselines_on_the_parity_recipe():
    """configs/model/cpu_cnn*.yaml (the Tiny-ImageNet table's CNN rows) are the recipe the PyCIL parity
    benchmark compared (bench/parity/pycil.py): the same schedule, and PODNet's and FOSTER's scaled phases."""
    recipe = pycil.CnnRecipe()
    for preset, method in (("cpu_cnn", "icarl"), ("cpu_cnn_podnet", "podnet"), ("cpu_cnn_foster", "foster"),
                           ("cpu_cnn_ucir", "ucir")):
        cfg = load([f"configs/model/{preset}.yaml"], [f"method={method}"])
        t = cfg.train
        assert (t.epochs, t.lr, t.batch_size, t.weight_decay) == (recipe.epochs, recipe.lr, recipe.batch_size,
                                                                  recipe.weight_decay), preset
        assert cfg.distill.tau == recipe.temperature
        if method in ("podnet", "foster"):  # PyCIL's own schedule for them: cosine per epoch, one weight decay
            assert (t.schedule, t.incremental_weight_decay) == ("cosine_epoch", recipe.weight_decay)
        else:
            assert (t.schedule, t.milestones) == ("multistep", list(recipe.milestones))
    podnet = load(["configs/model/cpu_cnn_podnet.yaml"], ["method=podnet"])
    assert (podnet.finetune.epochs, podnet.finetune.lr) == (pycil.FINETUNE_EPOCHS, recipe.lr / 20)
    foster = load(["configs/model/cpu_cnn_foster.yaml"], ["method=foster"])
    assert (foster.distill.compress_epochs, foster.distill.compress_lr) == (pycil.COMPRESSION_EPOCHS, recipe.lr)
