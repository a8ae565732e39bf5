"""The learner end to end: determinism, resume, checkpoints, results.json.

Every run is the same tiny synthetic scenario: 6 classes of 8x8 images, three tasks of two
classes, a one-block model of width 16, one epoch per phase (well under a second per run).
"""
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import suite.run.checkpoints as run_checkpoints
import suite.run.recorder as recorder
from suite.config import load
from suite.errors import UserError
from suite.learner import progress
from suite.learner.learner import Learner, NonFiniteLoss
from suite.learner.work import FORWARD_ONLY
from suite.run.checkpoints import load as load_checkpoint, payload as checkpoint_payload, restore
from suite.run.checkpoints import save as save_checkpoint
from suite.run.layout import CHECKPOINT
from suite.run.local import run_in_process
from suite.run.plan import plan_run
from suite.schema import RESULTS
from tests.conftest import TINY, data_of
from tests.runs import nan_from_task_2

COMPARED = ("acc_matrix", "acc", "acc_top5", "memory_size", "num_params")


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(*sets):
    return load([], TINY + list(sets))


def make_learner(cfg):
    data, scenario = data_of(cfg)
    return Learner(cfg, data, scenario, log=lambda m: None)


def same_history(a, b):
    return all(getattr(a, k) == getattr(b, k) for k in COMPARED)


def same_model(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class _Stop(Exception):
    """Stops a run right after a checkpoint, as a crash would."""


def _run_and_stop_after(cfg, last, paths):
    """Run, saving a checkpoint to paths[t] after each task t <= last; stop after task `last`."""
    learner = make_learner(cfg)

    def on_task_end(t, lrn):
        save_checkpoint(paths[t], checkpoint_payload(lrn, cfg))
        if t == last:
            raise _Stop

    with pytest.raises(_Stop):
        learner.run(on_task_end)
    return learner


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Checkpoints of the tiny config after task 0 and task 1, from a run stopped after task 1."""
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {t: folder / f"after_task_{t}.pt" for t in (0, 1)}
    stopped = _run_and_stop_after(tiny(), 1, paths)
    assert len(stopped.history.acc) == 2 and stopped.next_task == 2
    return paths


@pytest.fixture(scope="module")
def reference():
    """One uninterrupted run of the tiny config, seed 0."""
    learner = make_learner(tiny())
    learner.run()
    return learner


# ---------------------------------------------------------------- determinism

def test_same_seed_same_run(reference):
    again = make_learner(tiny())
    again.run()
    h = reference.history
    assert len(h.acc_matrix) == 3 and [len(r) for r in h.acc_matrix] == [1, 2, 3]
    assert same_history(h, again.history)
    assert reference.memory.ranked == again.memory.ranked
    assert same_model(reference, again)


def test_different_seed_different_model(reference):
    other = make_learner(tiny("seed=1"))
    other.run()
    # Accuracies on 30 test images may well coincide; the trained weights cannot.
    assert not same_model(reference, other)
    assert other.history.num_params == reference.history.num_params


def test_memory_size_is_listed_per_task_without_rehearsal():
    """memory_size is the effective size per task, like num_params; a method with no memory
    ('finetune', the lower bound) has 0 exemplars after every task, not an empty list."""
    learner = make_learner(tiny("method=finetune"))
    learner.run()
    assert len(learner.history.num_params) == 3
    assert learner.history.memory_size == [0, 0, 0]


# ---------------------------------------------------------------- resume

@pytest.mark.parametrize("task", [1, 0])
def test_resume_equals_uninterrupted_run(reference, checkpoints, task):
    cfg = tiny()
    path = checkpoints[task]
    fresh = make_learner(cfg)
    restore(fresh, cfg, load_checkpoint(path), str(path))
    assert fresh.next_task == task + 1
    assert fresh.history.acc_matrix == reference.history.acc_matrix[: task + 1]
    fresh.run()
    for key in COMPARED:
        assert getattr(fresh.history, key) == getattr(reference.history, key), key
    assert len(fresh.history.per_task_s) == 3
    assert fresh.memory.ranked == reference.memory.ranked
    assert same_model(fresh, reference)


def test_run_in_process_resumes_after_a_crash(reference, tmp_path, monkeypatch):
    """Crash right after the checkpoint of task 1, then `resume=True` finishes the run identically."""
    cfg = tiny()
    run_dir = tmp_path / "run"
    real_save = run_checkpoints.save

    def crash_after_task_1(path, payload):
        real_save(path, payload)
        if payload["learner"]["next_task"] == 2:
            raise _Stop

    monkeypatch.setattr(run_checkpoints, "save", crash_after_task_1)
    with pytest.raises(_Stop):
        run_in_process(plan_run(cfg, run_dir), resume=False)
    doc = json.loads((run_dir / RESULTS).read_text())
    assert doc["status"] == "failed" and len(doc["acc_matrix"]) == 2  # the failed write keeps task 1
    monkeypatch.setattr(run_checkpoints, "save", real_save)

    result = run_in_process(plan_run(cfg, run_dir), resume=True)
    doc = json.loads((run_dir / RESULTS).read_text())
    assert doc["status"] == "finished"
    for key in COMPARED:
        assert doc[key] == getattr(reference.history, key), key
        assert result[key] == getattr(reference.history, key), key
    assert len(doc["timings"]["per_task_s"]) == 3

    # resuming a finished run trains nothing and reports the same numbers
    again = run_in_process(plan_run(cfg, run_dir), resume=True)
    assert all(again[k] == result[k] for k in COMPARED)


def test_checkpoint_of_another_config_is_refused(checkpoints):
    path = checkpoints[0]
    payload = load_checkpoint(path)

    other = tiny("memory.size=10")
    with pytest.raises(UserError, match="memory.size"):
        restore(make_learner(other), other, payload, str(path))

    # where the run is stored and how it is scaled may change
    moved = tiny("output.basedir=elsewhere", "ray.num_workers=2")
    learner = make_learner(moved)
    restore(learner, moved, payload, str(path))
    assert learner.next_task == 1


def test_refusal_names_a_top_level_key(checkpoints):
    """A different seed (a top-level key, no section) must be named as 'seed', not 'seed.None'."""
    path = checkpoints[0]
    other = tiny("seed=3")
    with pytest.raises(UserError) as info:
        restore(make_learner(other), other, load_checkpoint(path), str(path))
    message = str(info.value)
    assert "seed" in message
    assert "seed.None" not in message


def test_checkpoint_loads_with_weights_only(checkpoints, tmp_path):
    cfg = tiny()
    path = checkpoints[1]
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"learner", "config"}
    state = raw["learner"]
    assert state["next_task"] == 2 and state["task_sizes"] == [2, 2]
    assert raw["config"] == cfg.to_dict()
    assert sum(len(t) for t in state["memory"]["indices"]) == 12
    assert state["history"]["acc_matrix"] == load_checkpoint(path)["learner"]["history"]["acc_matrix"]

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="garbage.pt"):
        load_checkpoint(garbage)


# ---------------------------------------------------------------- results.json

PROVENANCE = ("python", "torch", "ray", "timm", "continuum", "host", "world_size", "device", "seed", "git_commit")


def _is_pct(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and 0.0 <= x <= 100.0


def test_results_json_schema(tmp_path, monkeypatch):
    cfg = tiny()
    run_dir = tmp_path / "run"
    statuses = []
    real_write = recorder.RunRecorder.write

    def spy(self, learner, status, error=None):
        statuses.append((status, len(learner.history.acc)))
        return real_write(self, learner, status, error)

    monkeypatch.setattr(recorder.RunRecorder, "write", spy)
    returned = run_in_process(plan_run(cfg, run_dir), resume=False)
    assert statuses == [("running", 1), ("running", 2), ("running", 3), ("finished", 3)]
    assert (run_dir / CHECKPOINT).is_file()
    load_checkpoint(run_dir / CHECKPOINT)

    doc = json.loads((run_dir / RESULTS).read_text())
    assert doc["status"] == "finished"
    assert "error" not in doc
    assert doc["method"] == "daformer_m" and doc["dataset"] == "synthetic"
    assert isinstance(doc["setting"], str) and doc["setting"] == "B0-3steps"
    assert doc["class_order"] == [0, 1, 2, 3, 4, 5]
    assert doc["classes_per_task"] == [[0, 1], [2, 3], [4, 5]]
    assert doc["class_names_per_task"] == [["class0", "class1"], ["class2", "class3"], ["class4", "class5"]]

    T = 3
    assert len(doc["acc_matrix"]) == T
    assert [len(row) for row in doc["acc_matrix"]] == [1, 2, 3]
    assert all(_is_pct(a) for row in doc["acc_matrix"] for a in row)
    for key in ("acc", "acc_top5"):
        assert len(doc[key]) == T and all(_is_pct(a) for a in doc[key])
    assert all(t5 >= t1 for t1, t5 in zip(doc["acc"], doc["acc_top5"]))
    assert doc["avg_incremental_accuracy"] == pytest.approx(np.mean(doc["acc"]))
    assert doc["last_accuracy"] == pytest.approx(doc["acc"][-1])
    assert _is_pct(doc["avg_incremental_accuracy"]) and _is_pct(doc["last_accuracy"])
    for key in ("forgetting", "bwt", "bwt_all_pairs"):
        assert isinstance(doc[key], float) and math.isfinite(doc[key])
        assert -100.0 <= doc[key] <= 100.0
    assert len(doc["num_params"]) == T and all(isinstance(n, int) and n > 0 for n in doc["num_params"])
    assert doc["num_params"] == sorted(doc["num_params"])  # the model grows by a head (and a key) per task
    assert doc["memory_size"] == [12, 12, 12]
    per_task = doc["timings"]["per_task_s"]
    assert len(per_task) == T and all(isinstance(s, float) and s >= 0 for s in per_task)
    assert doc["timings"]["total_s"] == pytest.approx(sum(per_task))

    assert doc["config"] == json.loads(json.dumps(cfg.to_dict()))
    assert doc["config"]["memory"]["size"] == 12 and doc["config"]["data"]["name"] == "synthetic"

    prov = doc["provenance"]
    assert set(PROVENANCE) <= set(prov)
    assert prov["world_size"] == 1 and prov["device"] == "cpu" and prov["seed"] == 0
    assert isinstance(prov["python"], str) and isinstance(prov["torch"], str) and isinstance(prov["host"], str)
    assert prov["git_commit"] is None or isinstance(prov["git_commit"], str)

    for key in COMPARED:
        assert returned[key] == doc[key]


def test_non_finite_loss_fails_the_run_and_says_where(tmp_path, monkeypatch):
    """A NaN loss in task 2's main phase: NonFiniteLoss, and results.json says failed, task and epoch."""
    cfg = tiny()
    run_dir = tmp_path / "run"
    nan_from_task_2(monkeypatch)
    with pytest.raises(NonFiniteLoss, match=r"task 2, train epoch 1"):
        run_in_process(plan_run(cfg, run_dir), resume=False)
    doc = json.loads((run_dir / RESULTS).read_text())
    assert doc["status"] == "failed"
    assert isinstance(doc["error"], str)
    assert "NonFiniteLoss" in doc["error"] and "task 2" in doc["error"] and "epoch 1" in doc["error"]
    assert len(doc["acc_matrix"]) == 1 and doc["memory_size"] == [12]  # what was done is kept
    assert load_checkpoint(run_dir / CHECKPOINT)["learner"]["next_task"] == 1


def test_non_finite_batches_can_be_skipped_and_counted(tmp_path, monkeypatch):
    nan_from_task_2(monkeypatch)
    doc = run_in_process(plan_run(tiny("train.skip_nonfinite=true"), tmp_path / "run"), resume=False)
    assert doc["status"] == "finished"
    batches_per_epoch = 3  # (2 classes x 20 images + 12 in memory) / batch 16, last partial batch dropped
    assert doc["skipped_batches"] == [0, batches_per_epoch, batches_per_epoch]


def test_epoch_lines_give_the_rate_the_run_elapsed_and_an_eta(monkeypatch):
    """The form bench/perf/e2e.py and the bench analysis parse; the ETA from the mean epoch so far."""
    clock = iter([0.0, 10.0, 3700.0])  # the run starts, its first epoch ends, its second
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    p = progress.Progress(planned_work=3000)
    assert p.epoch_done("task 1/2 train    epoch 1/2", 0.5, 1000, 10.0, work=1000) == \
        "task 1/2 train    epoch 1/2  loss 0.5000  100 img/s  elapsed 0:10  eta 0:20"
    assert p.epoch_done("task 1/2 train    epoch 2/2", 0.25, 36900, 3690.0, work=1000) == \
        "task 1/2 train    epoch 2/2  loss 0.2500  10 img/s  elapsed 1:01:40  eta 30:50"


def test_a_long_epoch_prints_progress_lines_and_a_short_one_none():
    lines = []
    learner = make_learner(tiny("train.epochs=1", "train.progress_every=1e-9"))  # a line after every batch
    learner.log = lines.append
    learner.run()
    inside = [line for line in lines if "  batch " in line]
    first_task = [line for line in inside if line.startswith("task 1/3 train    epoch 1/1  batch ")]
    assert [line.split("epoch 1/1  ")[1][:9] for line in first_task] == ["batch 1/2"]  # 40 images, batch 16; none after the last
    assert "epoch eta " in first_task[0] and " img/s " in first_task[0]
    quiet = []
    learner = make_learner(tiny("train.epochs=1"))  # the default: a line a minute
    learner.log = quiet.append
    learner.run()
    assert not [line for line in quiet if "  batch " in line]


def test_batch_line_gives_the_epochs_time_left():
    assert progress.batch_line("task 1/2 train    epoch 1/3", 25, 100, 0.5, 4000, 20.0) == \
        "task 1/2 train    epoch 1/3  batch 25/100  loss 0.5000  200 img/s  epoch eta 1:00"


def test_the_eta_plans_each_tasks_work():
    """Later tasks train their images with the memory, finetuning the memory alone, and evaluation
    grows with the classes seen: the plan says so, and a run does exactly the work it planned."""
    learner = make_learner(tiny("train.epochs=2"))
    first, second = learner.work.task(0), learner.work.task(1)
    assert (first.train, second.train) == (40, 40 + 12)  # 2 classes x 20 images; + the memory of 12
    assert (first.finetune, second.finetune) == (0, 12)  # 12 // 4 classes = 3 a class, 4 classes
    assert second.after == pytest.approx(FORWARD_ONLY * (40 + 20))  # herding; 4 classes x 5 test images
    learner.run()
    assert learner.progress.done == pytest.approx(learner.progress.planned)


def test_a_sweep_prices_the_work_a_run_does():
    """The dry run's work count (suite/sweep/cost.py) is the work the learner plans and does."""
    from suite.run.plan import plan_run
    from suite.sweep.cost import cost_lines, trial_work

    cfg = tiny("train.epochs=2", "method=podnet", "model.backbone=cifar_resnet32_cosine", "finetune.epochs=1")
    plan = plan_run(cfg, Path(cfg.output.basedir))  # its directory unused
    learner = Learner(cfg, plan.data, plan.scenario, log=lambda line: None)
    learner.run()
    assert trial_work(plan) == pytest.approx(learner.progress.done)
    vit = {"device": "H200", "rates": {"podnet": {1: 5}}, "model": {"image_size": 8, "patch_size": 4}}
    cnn = {"device": "GPU", "rates": {"podnet": {1: 1, 100: 1000}},
           "model": {"image_size": 8, "backbone": "cifar_resnet32_cosine"}}
    rates = {"measurements": [{**vit, "model": {"image_size": 8, "backbone": "cifar_resnet18"}}, cnn]}
    assert cost_lines({"t": plan}, rates)[1].endswith("images trained; on CPUs")  # a CPU run: no GPU-hours
    on_gpus = dataclasses.replace(plan, cfg=dataclasses.replace(cfg, ray=dataclasses.replace(cfg.ray, use_gpu=True)))
    hours = trial_work(on_gpus) / 1 / 3600  # its backbone's block, at the measured task count nearest its 3 tasks: 1
    total, line = cost_lines({"t": on_gpus}, rates)
    assert hours > 0.1 and f"{hours:.2f} GPU-h at 1 img/s (podnet, 1 tasks, GPU)" in line
    assert "on one GPU (1 trial(s))" in total
    elsewhere = {"measurements": [{**cnn, "model": {**cnn["model"], "image_size": 32}}]}  # another image size
    assert cost_lines({"t": on_gpus}, elsewhere)[1].endswith("no GPU step rate measured for its method and model")


# ---------------------------------------------------------------- a one-process group

@pytest.fixture
def one_process_group(tmp_path):
    """A gloo process group of one, as a one-worker Ray Train run has."""
    import torch.distributed as td

    td.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield td
    td.destroy_process_group()


def test_a_one_process_group_runs_no_collective_and_the_same_run(reference, one_process_group, monkeypatch):
    """Speed (reports/perf/perf.md, part 3): a gloo collective starts an OpenMP team in gloo's
    thread, and two teams on the machine's cores stop libgomp from spin-waiting."""
    def refuse(*args, **kwargs):
        raise AssertionError("a collective ran in a one-process group")

    for name in ("all_reduce", "all_gather_object", "broadcast_object_list", "barrier"):
        monkeypatch.setattr(one_process_group, name, refuse)
    learner = make_learner(tiny())
    learner.run()
    assert same_history(reference.history, learner.history)
    assert same_model(reference, learner)


@pytest.mark.slow
def test_compiled_training_trains_like_eager():
    """train.compile: one task (one compilation, ~45 s on 2 cores), same accuracy, weights to 1e-5."""
    one_task = ("scenario.increment=6",)
    eager, compiled = make_learner(tiny(*one_task)), make_learner(tiny(*one_task, "train.compile=true"))
    eager.run()
    compiled.run()
    assert compiled.history.acc_matrix == eager.history.acc_matrix
    a, b = eager.model.state_dict(), compiled.model.state_dict()
    assert a.keys() == b.keys()
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-5
