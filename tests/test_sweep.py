"""Sweeps: validation and --dry-run in-process; a real Ray Tune sweep killed part-way and continued."""
import json
import os
import signal

import pandas as pd
import pytest

from suite import cli
from tests.conftest import REPO, run_cli, start_cli
from tests.ray_nodes import ENV
from tests.runs import wait_for

TINY_SWEEP = """
name: tiny
base: [configs/quickstart.yaml]
set:
  method: daformer
  train.epochs: 1
  finetune.epochs: 1
  scenario.increment: 5
  ray.cpus_per_worker: 1
  logging.backend: [tensorboard, mlflow]
axes:
  memory.size: [50, 100, 150]
max_concurrent_trials: 1
"""


def test_quick_sweep_dry_run_lists_8_trials(capsys, tmp_path):
    assert cli.main(["--sweep", "configs/sweeps/quick.yaml", "--dry-run", "--output-basedir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "8 trial(s), at most 2 at a time" in out
    assert "class_order-seed1_size-200_num_keys-5" in out
    assert "scenario.class_order='seed:1', memory.size=200, model.num_keys=5; 1 worker(s) x (1 CPU)" in out
    assert not tmp_path.joinpath("quick").exists()


def test_sweep_dry_run_checks_the_resources_as_a_run_does(capsys, tmp_path):
    """Every trial's request against this machine (no --address): a warning the trials share, once."""
    sweep_file = tmp_path / "big.yaml"
    sweep_file.write_text(TINY_SWEEP.replace("ray.cpus_per_worker: 1", "ray.cpus_per_worker: 10000"))
    assert cli.main(["--sweep", str(sweep_file), "--dry-run", "--output-basedir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.count("need more than the") == 1 and "CPU(s) of this machine" in err and "(3 trials)" in err
    assert not (tmp_path / "tiny").exists()


def test_paper_sweep_has_thirty_trials_per_setting(capsys, tmp_path):
    from tests.data_files import make_cifar

    make_cifar(tmp_path / "cifar" / "cifar-100-python", train_per_class=25)
    code = cli.main(["--sweep", "configs/sweeps/paper_cifar100.yaml", "--dry-run", "--data-path",
                     str(tmp_path / "cifar"), "--output-basedir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0
    assert "90 trial(s)" in out
    assert out.count("scenario.increment=5,") == 30
    # priced at the GPU step rates measured (the ViTs'); the CNN baselines named as unpriced
    assert out.count(" GPU-h at ") == 27 and out.count("no GPU step rate measured for its method and model") == 63
    assert "not priced (no step rate measured on a GPU): bic, der, foster, icarl, podnet, ucir, wa" in out


def test_imagenet_sweep_has_every_method_of_dytoxs_imagenet_table(capsys, tmp_path):
    """configs/sweeps/imagenet100.yaml: the ViTs with their releases' recipes, the CNN baselines of
    DyTox's ImageNet-100 table on the DER/DyTox protocol (ResNet-18; DER's pre-activation one for DER),
    each trial on 2 GPUs."""
    from tests.data_files import make_imagenet_subset

    make_imagenet_subset(tmp_path / "in100", [f"n{k:08d}" for k in range(100)], train_per_class=1)
    code = cli.main(["--sweep", "configs/sweeps/imagenet100.yaml", "--dry-run", "--data-path", str(tmp_path / "in100"),
                     "--output-basedir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0 and "7 trial(s)" in out
    for method in ("daformer_s", "daformer_m", "dytox", "icarl", "wa", "bic", "der"):
        assert f"method={method!r}; 2 worker(s) x (8 CPU + 1 GPU)" in out, method
    # the ViTs' rates are the CIFAR model's (32x32, patch 4), no CNN is timed on a GPU yet: none priced
    assert " GPU-h at " not in out and out.count("no GPU step rate measured for its method and model") == 7
    assert "not priced (no step rate measured on a GPU): bic, daformer_m, daformer_s, der, dytox, icarl, wa" in out


def _results(path):
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.mark.slow
def test_killed_sweep_continues_without_rerunning_finished_trials(ray_head, tmp_path):
    """On a cluster: the sweep's driver killed once its first trial has finished, then run again."""
    sweep_file = tmp_path / "tiny.yaml"
    sweep_file.write_text(TINY_SWEEP)
    first = tmp_path / "tiny" / "size-50" / "results.json"
    proc = start_cli("--sweep", sweep_file, "--output-basedir", tmp_path, "--address", ray_head.address, env=ENV)
    try:  # the two trials left take seconds each: the kill lands before the sweep's end
        wait_for(lambda: _results(first).get("status") == "finished", "the first trial to finish", proc, timeout=400)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished_at = first.stat().st_mtime_ns

    again = run_cli("--sweep", sweep_file, "--output-basedir", tmp_path, "--address", ray_head.address, env=ENV)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "continuing the sweep" in again.stdout
    # a line per trial that ends; the one finished before the kill ends at once, out of the ETA's rate
    ended = [line for line in again.stdout.splitlines() if line.startswith("sweep     trial ")]
    assert [line.split(" (")[0] for line in ended] == [
        "sweep     trial 1/3 done", "sweep     trial 2/3 done", "sweep     trial 3/3 done"]
    assert ended[0].endswith("eta ?") and ended[-1].endswith("eta 0:00")
    assert first.stat().st_mtime_ns == finished_at  # the finished trial did not run again
    for name in ("size-100", "size-150"):
        result = _results(tmp_path / "tiny" / name / "results.json")
        assert result["status"] == "finished" and len(result["timings"]["per_task_s"]) == 2
    # the continued trials ran one at a time (max_concurrent_trials), not all at once
    (start_2, end_2), (start_3, end_3) = (_active(tmp_path / "tiny" / name) for name in ("size-100", "size-150"))
    assert end_2 <= start_3 or end_3 <= start_2, ((start_2, end_2), (start_3, end_3))
    summary = pd.read_csv(tmp_path / "tiny" / "summary.csv")
    assert list(summary["trial"]) == ["size-50", "size-100", "size-150"]
    assert list(summary["status"]) == ["finished", "finished", "finished"]
    assert (tmp_path / "tiny" / "report" / "index.html").exists()
    tune_results = "".join(p.read_text() for p in (tmp_path / "tiny" / "tune").rglob("result.json"))
    assert '"event": "task"' in tune_results  # every task's accuracy reaches Tune
    # logging.backend through Tune's loggers: TensorBoard events per trial, one MLflow run per trial;
    # the trials' runs log to none themselves
    assert len(list((tmp_path / "tiny" / "tune").rglob("events.out.tfevents.*"))) >= 2
    assert (tmp_path / "tiny" / "mlruns" / "mlflow.db").is_file()
    assert not (tmp_path / "tiny" / "size-100" / "tensorboard").exists()


def _active(run_dir) -> tuple[float, float]:
    """When a run trained: the times of its first and last log.jsonl records."""
    times = [json.loads(line)["time"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return min(times), max(times)


@pytest.mark.parametrize("sweep, trials, varied", [
    ("baselines_pycil_cifar100", 21, "seed=2"), ("baselines_der_cifar100", 21, "='cifar100_order3'")])
def test_baseline_sweeps_take_the_method_as_an_axis_with_its_recipe(sweep, trials, varied, capsys, tmp_path):
    from tests.data_files import make_cifar

    make_cifar(tmp_path / "cifar" / "cifar-100-python", train_per_class=25)
    code = cli.main(["--sweep", f"configs/sweeps/{sweep}.yaml", "--dry-run", "--data-path", str(tmp_path / "cifar"),
                     "--output-basedir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0 and f"{trials} trial(s)" in out and out.count(varied) == trials // 3
    assert all(out.count(f"method='{m}'") == 3 for m in ("icarl", "ucir", "wa", "bic", "der", "podnet", "foster"))


def test_the_tiny_imagenet_sweep_gives_each_family_its_cpu_recipe(tmp_path):
    """The CPU table: the ViTs on the quickstart's recipe (joint to convergence), the CNN baselines and
    their bounds on PyCIL's protocol at the parity benchmark's schedule; 3 orders of each."""
    from suite.methods import METHODS
    from suite.sweep.spec import load_sweep
    from tests.data_files import make_tiny_imagenet

    make_tiny_imagenet(tmp_path / "tiny", [f"n{i:08d}" for i in range(25)])
    sweep = load_sweep(REPO / "configs" / "sweeps" / "tinyimagenet.yaml", lambda p: REPO / p,
                       {"data.path": str(tmp_path / "tiny")}, [], None, tmp_path / "runs")
    by_method = {}
    for trial in sweep.trials:
        by_method.setdefault(trial.cfg.method, []).append(trial.cfg)
    assert len(by_method) == 15 and all(len(cfgs) == 3 for cfgs in by_method.values())
    for method, cfgs in by_method.items():
        cfg = cfgs[0]
        assert cfg.data.name == "tinyimagenet" and cfg.memory.size == 500
        if METHODS[method].architecture == "cnn":
            cosine = "_cosine" if method in ("podnet", "ucir") else ""
            assert (cfg.model.backbone, cfg.train.optimizer, cfg.train.epochs, cfg.train.drop_last) == (
                f"cifar_resnet32{cosine}", "sgd", 10, False)
        else:
            assert (cfg.train.mixup, cfg.train.asam_rho, cfg.train.loss, cfg.model.patch_size) == (0.0, 0.0, "ce", 4)
            assert cfg.train.epochs == (30 if method == "joint" else 15)
