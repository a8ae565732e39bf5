"""The command line: the original code's flags and --dry-run (user errors: tests/test_bad_inputs.py)."""
import json

import pytest
import torch

from suite import cli
from suite.config import load
from suite.data.scenario import plan_scenario
from suite.run.plan import count_params, resource_warnings, worker_cpus
from suite.data.registry import load_dataset
from suite.errors import UserError
from suite.run.local import device_of
from tests.data_files import make_cifar

SEED_ARGS = ["--options", "options/data/cifar100_10-10.yaml", "options/data/cifar100_order1.yaml",
             "options/model/cifar_dual.yaml", "--name", "DualVit", "--memory-size", "2000"]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    make_cifar(root / "cifar-100-python", train_per_class=25)
    return root


def test_seed_command_resolves_to_the_paper_protocol(cifar_root, tmp_path, capsys):
    out_dir = tmp_path / "checkpoint"
    code = cli.main(SEED_ARGS + ["--data-path", str(cifar_root), "--output-basedir", str(out_dir), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert "setting   B0-10steps: 10 task(s)" in out
    assert "task   1:  10 classes [87, 0, 52, 58, 44, 91, 68, 97, 51, 15]" in out  # order1
    assert "memory    total 2000, herding" in out
    assert "embed 384, depth 5+1, heads 12, patch 4" in out
    assert "(10.60M)" in out  # the release's model after 10 tasks less its unused projection and divergence head
    assert f"output    {out_dir / 'DualVit'}" in out
    assert not out_dir.exists()  # a dry run writes nothing


def test_the_releases_flags_set_their_keys(tmp_path, capsys):
    """DyTox's and DAFormer's common flags are aliases of config keys; the dry run plans what they say."""
    argv = ["configs/model/cifar_dual.yaml", "--epochs", "3", "--lr", "5e-4", "--seed", "1", "--batch-size", "32",
            "--incremental-lr", "1e-4", "--increment", "5", "--initial-increment", "0", "--memory-size", "200", "--dry-run",
            "--output-basedir", str(tmp_path)]
    cfg, _ = cli.load_config(cli.parse(argv))
    assert (cfg.train.epochs, cfg.train.lr, cfg.seed, cfg.train.batch_size, cfg.train.incremental_lr,
            cfg.scenario.increment) == (3, 5e-4, 1, 32, 1e-4, 5)
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "training  3 epochs/task, batch 32/worker, lr 0.0005" in out and "2 task(s)" in out


def test_a_release_command_line_as_written_plans_with_a_warning_for_its_memory(tmp_path, capsys):
    """The CIFAR preset's 2000 exemplars on the default data (1,347 digits to train on): the memory
    keeps every image, which the plan says in a warning; it plans what the flags say."""
    argv = ["configs/model/cifar_dual.yaml", "--epochs", "3", "--lr", "5e-4", "--seed", "1", "--dry-run",
            "--output-basedir", str(tmp_path)]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "training  3 epochs/task, batch 128/worker, lr 0.0005" in captured.out
    assert "warning: memory.size = 2000 is larger than the 1347 training images of 'digits'" in captured.err
    assert not list(tmp_path.iterdir())


def test_small_photos_blown_up_to_the_imagenet_side_are_warned_of(tmp_path, capsys):
    """An ImageFolder of 16-pixel images: the ImageNet pipeline's 224 by default, warned of with the
    key that trains them at their own size; at that size, no warning."""
    from PIL import Image

    root = tmp_path / "photos"
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (16, 12)).save(root / split / c / f"{i}.png")
    args = ["--set", "data.name=imagefolder", "--set", "scenario.increment=1", "--set", "method=finetune",
            "--set", "model.patch_size=8", "--data-path", str(root), "--output-basedir", str(tmp_path / "runs"), "--dry-run"]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "are about 16x16 pixels, and would be trained at 224x224" in err and "--set data.input_size=16" in err
    assert cli.main([*args, "--set", "data.input_size=16"]) == 0
    assert "would be trained" not in capsys.readouterr().err


def test_cifar_preset_parameter_counts(cifar_root):
    """About 10.75M for DAFormer-M and 10.73M for DyTox after 10 tasks, as the releases print them;
    the DAFormer release counts its dual block's output projection, built and never applied."""
    files = [cli.resolve_config_path(f) for f in SEED_ARGS[1:4]]
    counts = {}
    for method in ("daformer_m", "dytox", "daformer_s"):
        cfg = load(files, [f"method={method}", f"data.path={cifar_root}"])
        data = load_dataset(cfg.data)
        counts[method] = count_params(cfg, data, plan_scenario(cfg, 100))
    unused_projection = 384 * 384 + 384
    assert counts["daformer_m"][-1] + unused_projection == pytest.approx(10.75e6, rel=2e-3)
    assert counts["dytox"][-1] == pytest.approx(10.73e6, rel=2e-3)
    per_task_m = [b - a for a, b in zip(counts["daformer_m"], counts["daformer_m"][1:])]
    per_task_s = [b - a for a, b in zip(counts["daformer_s"], counts["daformer_s"][1:])]
    head = 2 * 384 + 384 * 10 + 10  # LayerNorm + Linear(384, 10)
    key = 64 * 32 + 64  # M_k (P x d) + b_k
    assert per_task_m == [head + key] * 9  # one key per task
    assert per_task_s == [head] * 9  # one shared key


def test_in_process_run_persists_to_a_storage_directory(tmp_path):
    """output.storage_path as a plain directory: results and checkpoint there, the run directory
    gets a copy of the results and the report."""
    from tests.conftest import TINY

    runs, store = tmp_path / "runs", tmp_path / "store"
    args = [a for item in TINY for a in ("--set", item)]
    assert cli.main([*args, "--in-process", "--name", "r", "--output-basedir", str(runs),
                     "--set", f"output.storage_path={store}", "--set", "report.at_end=true"]) == 0
    stored = json.loads((store / "r" / "results.json").read_text())
    assert stored["status"] == "finished" and (store / "r" / "checkpoints" / "latest.pt").is_file()
    assert json.loads((runs / "r" / "results.json").read_text()) == stored
    assert (runs / "r" / "report" / "index.html").is_file() and not (runs / "r" / "checkpoints").exists()


def test_a_run_told_not_to_report_writes_its_results_only(tmp_path, capsys):
    from tests.conftest import TINY

    args = [a for item in TINY for a in ("--set", item)]
    assert cli.main([*args, "--in-process", "--name", "r", "--output-basedir", str(tmp_path)]) == 0
    assert "report.at_end=false" in TINY and (tmp_path / "r" / "results.json").is_file()
    assert not (tmp_path / "r" / "report").exists() and "report:" not in capsys.readouterr().out


def test_in_process_trains_where_ray_use_gpu_says(monkeypatch):
    """--in-process takes the GPU a Ray Train worker would get, and refuses one that is not there."""
    assert device_of(load([], [])) == torch.device("cpu")
    gpu = load([], ["ray.use_gpu=true"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="ray.use_gpu = true, but this machine has no CUDA device"):
        device_of(gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert device_of(gpu) == torch.device("cuda", 0)


def test_workers_without_a_cpu_count_share_out_the_cpus_they_can_use():
    """CPU workers: every node's CPUs; GPU workers: a GPU node's CPUs per GPU slot, the smallest GPU
    node's, never the head's or other CPU-only nodes' (a GPU worker cannot run there)."""
    head, small, large = {"CPU": 8}, {"CPU": 16, "GPU": 2}, {"CPU": 96, "GPU": 8}
    cpu = load([], ["ray.num_workers=4"]).ray
    assert worker_cpus(cpu, [head, small]) == 6 and worker_cpus(cpu, [{"CPU": 2}]) == 1
    gpu = load([], ["ray.use_gpu=true", "ray.num_workers=4"]).ray
    assert worker_cpus(gpu, [head, large]) == 12  # not (8 + 96) // 4 = 26, which no GPU node can give 8 times
    assert worker_cpus(gpu, [head, small, large]) == 8  # fits on either GPU node
    quarter = load([], ["ray.use_gpu=true", "ray.gpus_per_worker=0.25"]).ray
    assert worker_cpus(quarter, [head, {"CPU": 16, "GPU": 1}]) == 4  # 4 trials share the GPU and its CPUs
    assert worker_cpus(gpu, [head]) == 2  # no GPU node up yet (warned of): the CPU share
    assert worker_cpus(load([], ["ray.use_gpu=true", "ray.cpus_per_worker=3"]).ray, [head, large]) == 3


def test_dry_run_warns_of_requests_the_resources_cannot_meet(capsys):
    """No GPU here: use_gpu is warned of; two NCCL ranks on one GPU and a long CPU-only plan too."""
    gpu = load([], ["ray.use_gpu=true", "ray.num_workers=2", "ray.gpus_per_worker=0.5", "ray.cpus_per_worker=4"])
    lines = resource_warnings(gpu, [{"CPU": 8, "GPU": 1}], "the cluster", epochs=10)
    assert len(lines) == 1 and "NCCL" in lines[0]
    assert any("has no GPU" in line for line in resource_warnings(gpu, [{"CPU": 8}], "the cluster", epochs=10))
    big = load([], ["ray.use_gpu=true", "ray.num_workers=4"])
    [few] = resource_warnings(big, [{"CPU": 8}, {"CPU": 48, "GPU": 1}, {"CPU": 48, "GPU": 1}], "the cluster", 10)
    assert "2 GPU(s) of the cluster" in few and "expected ray.num_workers <= 2" in few
    assert resource_warnings(load([], []), [{"CPU": 2}], "this machine", epochs=10) == []
    assert "5000 epochs on 1 CPU worker(s)" in resource_warnings(load([], []), [{"CPU": 2}], "this machine", 5000)[0]

    assert cli.main(["configs/quickstart.yaml", "--dry-run", "--set", "ray.use_gpu=true"]) == 0
    assert "ray.use_gpu = true, but this machine has no GPU" in capsys.readouterr().err


def test_the_resume_command_of_a_submitted_job_resubmits_it(monkeypatch):
    from suite.run.interrupt import resume_command

    argv = ["configs/quickstart.yaml", "--name", "my run"]
    assert resume_command(argv) == "python suite/run.py configs/quickstart.yaml --name 'my run' --resume"
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")  # what a `ray job submit` driver has
    assert resume_command(argv).startswith("ray job submit --working-dir . -- python suite/run.py ")
