"""The command line: the original code's flags, --dry-run, and user errors (exit 2, one line, nothing written)."""
import pytest

from suite import cli
from suite.config import load
from suite.data.scenario import plan_scenario
from suite.plan import count_params
from suite.data.registry import load_dataset
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
    assert "(10.75M)" in out
    assert f"output    {out_dir / 'DualVit'}" in out
    assert not out_dir.exists()  # a dry run writes nothing


def test_cifar_preset_parameter_counts(cifar_root):
    """SPEC section 7: about 10.75M for DAFormer-M and 10.73M for DyTox after 10 tasks."""
    files = [cli.resolve_config_path(f) for f in SEED_ARGS[1:4]]
    counts = {}
    for method in ("daformer_m", "dytox", "daformer_s"):
        cfg = load(files, [f"method={method}", f"data.path={cifar_root}"])
        data = load_dataset(cfg.data)
        counts[method] = count_params(cfg, data, plan_scenario(cfg, 100))
    assert counts["daformer_m"][-1] == pytest.approx(10.75e6, rel=2e-3)
    assert counts["dytox"][-1] == pytest.approx(10.73e6, rel=2e-3)
    per_task_m = [b - a for a, b in zip(counts["daformer_m"], counts["daformer_m"][1:])]
    per_task_s = [b - a for a, b in zip(counts["daformer_s"], counts["daformer_s"][1:])]
    head = 2 * 384 + 384 * 10 + 10  # LayerNorm + Linear(384, 10)
    key = 64 * 32 + 64  # M_k (P x d) + b_k
    assert per_task_m == [head + key] * 9  # one key per task
    assert per_task_s == [head] * 9  # one shared key


def error_of(capsys, *args) -> str:
    assert cli.main(list(args)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("args, expected", [
    (["--set", "memroy.size=5"], "did you mean 'memory.size'"),
    (["--set", "scenario.increment=3"], "scenario.increment = 3 does not divide the 7 classes after the first task of 3 (10 in all)"),
    (["--set", "data.name=cifar100", "--set", "scenario.increment=7"], "does not divide the 93 classes"),
    (["--set", "method=daformer", "--set", "model.num_keys=6"], "model.num_keys = 6 is larger than the 5 tasks"),
    (["--set", "method=daformer_s", "--set", "model.num_keys=3"], "contradicts method 'daformer_s'"),
    (["--set", "scenario.class_order=[0, 0, 1, 2, 3, 4, 5, 6, 7, 8]"], "repeats class ids [0]"),
    (["--set", "scenario.class_order=[0, 1, 2, 3, 4, 5, 6, 7, 8, 10]"], "ids outside 0..9: [10]"),
    (["--set", "scenario.class_order=order9"], "no order file 'order9'"),
    (["--set", "memory.size=5000"], "memory.size = 5000 is larger than the 1347 training images"),
    (["--set", "model.patch_size=3"], "model.patch_size = 3 does not divide the 8-pixel images"),
    (["--set", "data.name=cifar100"], "data.path is not set"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["missing.yaml"], "config file 'missing.yaml' does not exist"),
])
def test_user_errors_exit_2_with_one_line(capsys, tmp_path, args, expected):
    err = error_of(capsys, *args, "--output-basedir", str(tmp_path / "runs"))
    assert expected in err
    assert not (tmp_path / "runs").exists()


def test_data_path_without_pickles(capsys, tmp_path):
    err = error_of(capsys, "--set", "data.name=cifar100", "--data-path", str(tmp_path), "--dry-run")
    assert str(tmp_path) in err and "cifar-100-python" in err


def test_reused_name_is_refused_and_resume_is_suggested(capsys, tmp_path):
    (tmp_path / "quickstart-daformer_m").mkdir()
    err = error_of(capsys, "--output-basedir", str(tmp_path))
    assert "already exists" in err and "--resume" in err


def test_resume_of_a_missing_run(capsys, tmp_path):
    assert "no run at" in error_of(capsys, "--output-basedir", str(tmp_path), "--resume")


def test_script_exit_code_and_one_line(cli, tmp_path):
    """As a user runs it: a subprocess, exit 2, one line on stderr."""
    proc = cli("--set", "memroy.size=5", "--output-basedir", tmp_path / "runs")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --set memroy.size=5: unknown config key 'memroy.size'; "
                                                "did you mean 'memory.size'?"]


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:1", "no Ray cluster answers there"),
    ("nonsense", "is malformed; expected HOST:PORT"),
])
def test_unreachable_address_fails_fast(capsys, tmp_path, address, expected):
    assert expected in error_of(capsys, "--address", address, "--output-basedir", str(tmp_path))
    assert not tmp_path.joinpath("quickstart-daformer_m").exists()


def test_report_of_a_directory_without_results(tmp_path):
    import subprocess
    import sys

    (tmp_path / "results.json").write_text("{ not json")
    proc = subprocess.run([sys.executable, "-m", "suite.report", str(tmp_path)], capture_output=True, text=True,
                          cwd=cli.REPO)
    assert proc.returncode == 2
    warning, error = proc.stderr.strip().splitlines()
    assert warning.startswith("warning: skipping") and str(tmp_path / "results.json") in warning
    assert error.startswith("error: none of the 1 results.json files") and "Traceback" not in proc.stderr
