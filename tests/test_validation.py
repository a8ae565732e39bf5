"""The validation split (data.validation_fraction) and sweeps that select on it (select_on).

The split itself (disjoint, seeded, per class, rank-independent), the learner with it (held out of
training and of the memory, evaluated after every task, kept through a mid-task resume), real runs
in process and on two Ray Train workers, the sweep summary's ranking, and the one-line refusals.
"""
import contextlib
import io
import json

import numpy as np
import pytest
import torch
import yaml

from suite import cli
from suite.config import load
from suite.data.dataset import indices_of_classes
from suite.data.registry import load_dataset
from suite.data.validation import held_out_count, validation_split
from suite.errors import UserError
from suite.learner import dist
from suite.learner.learner import Learner
from suite.run.checkpoints import load as load_checkpoint, payload, restore, save as save_checkpoint
from suite.run.layout import CHECKPOINT
from suite.sweep.spec import load_sweep
from suite.sweep.summary import best_trials, summary_frame
from tests.conftest import TINY, data_of, run_cli, sets
from tests.ray_nodes import ENV as RAY_ENV

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = ["train.epochs=1", "finetune.epochs=1", "model.embed_dim=16", "model.depth=1", "model.num_heads=2",
         "train.precision=fp32", "memory.selection=random",  # random exemplars: the same whatever the model
         "report.at_end=false"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset(load(["configs/quickstart.yaml"]).data)


def memory_of(state: dict) -> set[int]:
    return {i for t in state["learner"]["memory"]["indices"] for i in t.tolist()}


# ---------------------------------------------------------------- the split

def test_split_is_disjoint_from_training_and_test_by_index_and_pixels(digits):
    trained, held = validation_split(digits.train.labels, 0.2, seed=0)
    assert np.intersect1d(trained, held).size == 0
    assert np.array_equal(np.sort(np.concatenate([trained, held])), np.arange(len(digits.train)))
    pixels = lambda images: {image.tobytes() for image in images}
    assert not pixels(digits.train.images[held]) & pixels(digits.train.images[trained])
    assert not pixels(digits.train.images[held]) & pixels(digits.test.images)


def test_split_is_fixed_by_the_seed(digits):
    labels = digits.train.labels
    first, again, other = (validation_split(labels, 0.2, seed)[1] for seed in (0, 0, 1))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_split_is_proportional_per_class(digits):
    labels = digits.train.labels
    _, held = validation_split(labels, 0.2, seed=0)
    for cls in range(10):
        images = int((labels == cls).sum())
        assert (labels[held] == cls).sum() == held_out_count(0.2, images) == round(0.2 * images)
    _, few = validation_split(labels, 0.001, seed=0)
    assert np.array_equal(np.bincount(labels[few]), np.ones(10))  # at least one image per class


def test_no_fraction_holds_out_nothing():
    labels = np.array([0, 1, 1, 0])
    trained, held = validation_split(labels, 0.0, seed=3)
    assert trained.tolist() == [0, 1, 2, 3] and held.size == 0


def test_a_class_that_would_keep_no_training_image_is_refused():
    with pytest.raises(UserError, match=r"data.validation_fraction = 0.5 leaves class 2 no training image"):
        validation_split(np.array([0, 0, 1, 1, 2]), 0.5, seed=0)


def test_every_worker_holds_out_the_same_images(monkeypatch):
    """What each rank's learner computes for itself, whatever its rank and the world size."""
    cfg = load([], TINY + ["data.validation_fraction=0.25"])
    data, scenario = data_of(cfg)
    seen = []
    for rank, world in ((0, 1), (0, 2), (1, 2)):
        monkeypatch.setattr(dist, "rank", lambda rank=rank: rank)
        monkeypatch.setattr(dist, "world_size", lambda world=world: world)
        learner = Learner(cfg, data, scenario, log=lambda m: None)
        seen.append((learner.trained.tolist(), learner.validation.tolist()))
    assert seen[0] == seen[1] == seen[2] and len(seen[0][1]) == 6 * 5  # 5 of each class's 20


# ---------------------------------------------------------------- the learner

def test_training_and_memory_leave_the_validation_images_out():
    off, on = (Learner(cfg, *data_of(cfg), log=lambda m: None)
               for cfg in (load([], TINY), load([], TINY + ["data.validation_fraction=0.25"])))
    classes = off.scenario.tasks[0]
    assert np.array_equal(off._training_images(classes), indices_of_classes(off.data.train, classes))
    assert len(on._training_images(classes)) == 2 * 15
    assert not set(on._training_images(classes)) & set(on.validation.tolist())


def test_a_mid_task_resume_keeps_the_validation_history(tmp_path):
    cfg = load([], TINY + ["data.validation_fraction=0.25", "train.checkpoint_every=1"])
    reference = Learner(cfg, *data_of(cfg), log=lambda m: None)
    reference.run()
    h = reference.history
    assert [len(row) for row in h.val_acc_matrix] == [1, 2, 3] and len(h.val_acc) == len(h.val_acc_top5) == 3

    path = tmp_path / "mid.pt"

    def stop(learner):  # the first mid-task checkpoint: task 2, after its main phase
        save_checkpoint(path, payload(learner, cfg))
        raise Stop

    with pytest.raises(Stop):
        Learner(cfg, *data_of(cfg), log=lambda m: None, on_checkpoint=stop).run()
    state = load_checkpoint(path)
    assert state["learner"]["mid_task"] is not None and len(state["learner"]["history"]["val_acc"]) == 1
    fresh = Learner(cfg, *data_of(cfg), log=lambda m: None)
    restore(fresh, cfg, state, str(path))
    fresh.run()
    for key in ("val_images", "val_acc", "val_acc_top5", "val_acc_matrix", "acc_matrix"):
        assert getattr(fresh.history, key) == getattr(h, key), key


class Stop(Exception):
    """Stops a run at a checkpoint, as a pre-emption would."""


# ---------------------------------------------------------------- real runs

@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """The quickstart, tiny, in process with a 0.2 validation split and without one: fraction ->
    (run directory, console output)."""
    base = tmp_path_factory.mktemp("runs")
    runs = {}
    for fraction in (0.2, 0):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main([*sets(*QUICK, f"data.validation_fraction={fraction}"), "configs/quickstart.yaml",
                             "--in-process", "--output-basedir", str(base), "--name", f"f{fraction}"]) == 0
        runs[fraction] = base / f"f{fraction}", out.getvalue()
    return runs


def held_out(fraction=0.2):
    data = load_dataset(load(["configs/quickstart.yaml"]).data)
    return data, validation_split(data.train.labels, fraction, seed=0)[1]


def check_validation(doc: dict, data, held) -> None:
    """Shapes as the test's, percentages, and every held-out image of the classes seen evaluated once."""
    validation = doc["validation"]
    assert validation["fraction"] == 0.2 and validation["images"] == len(held)
    assert [len(row) for row in validation["acc_matrix"]] == [len(row) for row in doc["acc_matrix"]]
    assert len(validation["acc"]) == len(validation["acc_top5"]) == len(doc["acc"])
    values = [*validation["acc"], *validation["acc_top5"], *(a for row in validation["acc_matrix"] for a in row)]
    assert all(0 <= a <= 100 for a in values)
    assert validation["avg_incremental_accuracy"] == pytest.approx(np.mean(validation["acc"]))
    assert validation["last_accuracy"] == validation["acc"][-1]
    for task, acc in enumerate(validation["acc"]):
        seen = [c for t in doc["classes_per_task"][: task + 1] for c in t]
        count = np.isin(data.train.labels[held], seen).sum()
        assert acc * count / 100 == pytest.approx(round(acc * count / 100))


def test_an_in_process_run_evaluates_the_validation_split(in_process):
    run_dir, out = in_process[0.2]
    data, held = held_out()
    doc = json.loads((run_dir / "results.json").read_text())
    check_validation(doc, data, held)
    tasks = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["val_acc"] for r in tasks if r["event"] == "task"] == doc["validation"]["acc"]
    assert out.count("validation top-1") == 5 and f"on the validation split ({len(held)} held-out" in out
    memory = memory_of(torch.load(run_dir / CHECKPOINT, weights_only=True))
    assert len(memory) == 200 and not memory & set(held.tolist())


def test_without_a_fraction_nothing_changes(in_process):
    run_dir, out = in_process[0]
    doc = json.loads((run_dir / "results.json").read_text())
    assert doc["validation"] is None and "validation" not in out
    assert doc["memory_size"] == [200 // seen * seen for seen in (2, 4, 6, 8, 10)]  # the budget, all of it
    assert all("val_acc" not in json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines())
    assert len(memory_of(torch.load(run_dir / CHECKPOINT, weights_only=True))) == 200


@pytest.mark.slow
def test_two_ray_train_workers_hold_out_the_same_images_and_share_one_memory(in_process, ray_head, tmp_path):
    """Through Ray Train, 2 workers: the split is the in-process run's (the random memory, drawn from
    the images trained on, is the same), and each worker evaluates its share of it. The memory is
    one global memory: the budget is not doubled, and the exemplars are the one-process run's."""
    proc = run_cli("configs/quickstart.yaml", *sets(*QUICK, "data.validation_fraction=0.2", "ray.num_workers=2"),
                   "--output-basedir", tmp_path, "--name", "two", "--address", ray_head.address, env=RAY_ENV)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "two" / "results.json").read_text())
    assert doc["provenance"]["world_size"] == 2
    check_validation(doc, *held_out())
    last = sorted((tmp_path / "two" / "ray" / "two").glob("task_*"))[-1] / "learner.pt"
    in_process_memory = memory_of(torch.load(in_process[0.2][0] / CHECKPOINT, weights_only=True))
    assert memory_of(torch.load(last, weights_only=True)) == in_process_memory
    assert doc["memory_size"] == json.loads((in_process[0.2][0] / "results.json").read_text())["memory_size"]


# ---------------------------------------------------------------- sweeps

SWEEP = {"base": ["configs/quickstart.yaml"], "set": {"data.validation_fraction": 0.1},
         "axes": {"memory.size": [50, 100, 150]}}


def sweep_of(tmp_path, **spec):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, **spec}))
    return load_sweep(path, cli.resolve_config_path, {}, [], "s", tmp_path)


def write_results(tmp_path, trial: str, test_avg: float, validation_avg: float, status="finished") -> None:
    doc = {"status": status, "method": "daformer_m", "dataset": "digits", "setting": "B0-5steps", "tasks_done": 5,
           "avg_incremental_accuracy": test_avg, "last_accuracy": test_avg - 10, "forgetting": 1.0, "bwt": -1.0,
           "validation": {"avg_incremental_accuracy": validation_avg}, "config": {}}
    (tmp_path / "s" / trial).mkdir(parents=True, exist_ok=True)
    (tmp_path / "s" / trial / "results.json").write_text(json.dumps(doc))


@pytest.fixture
def three_trials(tmp_path):
    """Test and validation disagree on the best trial; the third is still running."""
    write_results(tmp_path, "size-50", test_avg=80.0, validation_avg=60.0)
    write_results(tmp_path, "size-100", test_avg=70.0, validation_avg=75.5)
    write_results(tmp_path, "size-150", test_avg=90.0, validation_avg=90.0, status="running")
    return tmp_path


def test_select_on_validation_ranks_on_the_validation_split(three_trials):
    sweep = sweep_of(three_trials, select_on="validation")
    frame = summary_frame(sweep, three_trials / "s")
    assert frame["select_on"].tolist() == ["validation"] * 3
    assert frame["selected_avg"].tolist() == [60.0, 75.5, 90.0]
    assert frame["rank"].tolist()[:2] == [2, 1] and frame["rank"].isna().tolist() == [False, False, True]
    assert best_trials(frame) == ["best daformer_m on validation: size-100 (avg 75.5)"]


def test_select_on_test_is_the_default(three_trials):
    frame = summary_frame(sweep_of(three_trials), three_trials / "s")
    assert frame["select_on"].tolist() == ["test"] * 3 and frame["rank"].tolist()[:2] == [1, 2]
    assert best_trials(frame) == ["best daformer_m on test: size-50 (avg 80.0)"]
    assert "ranked on test" in sweep_of(three_trials).describe()


def one_line_error(capsys, args) -> str:
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_select_on_validation_without_a_fraction_is_refused(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, "set": {}, "select_on": "validation"}))
    err = one_line_error(capsys, ["--sweep", str(path), "--dry-run", "--output-basedir", str(tmp_path / "runs")])
    assert str(path) in err and "'select_on' = 'validation'" in err and "data.validation_fraction = 0" in err
    assert "size-50 (and 2 more)" in err


def test_an_unknown_select_on_is_refused(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, "select_on": "train"}))
    err = one_line_error(capsys, ["--sweep", str(path), "--dry-run", "--output-basedir", str(tmp_path / "runs")])
    assert str(path) in err and "'select_on' = 'train'; expected one of test, validation" in err


@pytest.mark.parametrize("value, expected", [("-0.1", "is too small; expected at least 0.0"),
                                             ("0.9", "is too large; expected at most 0.5"),
                                             ("lots", "has the wrong type; expected float")])
def test_bad_fractions_are_one_line_and_exit_2(value, expected, tmp_path, capsys):
    err = one_line_error(capsys, [*sets(*TINY, f"data.validation_fraction={value}"), "--in-process",
                                  "--output-basedir", str(tmp_path / "runs")])
    assert "'data.validation_fraction' = " in err and expected in err
    assert not (tmp_path / "runs").exists()


def test_a_class_of_one_image_is_refused_before_the_run(tmp_path, capsys):
    err = one_line_error(capsys, [*sets(*TINY, "data.train_per_class=1", "data.validation_fraction=0.5"),
                                  "--in-process", "--output-basedir", str(tmp_path / "runs")])
    assert "data.validation_fraction = 0.5 leaves class 0 no training image (it has 1)" in err
    assert not (tmp_path / "runs").exists()
