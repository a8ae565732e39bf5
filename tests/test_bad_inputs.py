"""The bad-input catalogue: every user mistake is exit 2, one line naming the offending key, path
or value and what is expected, no traceback, and nothing written.

Each case builds its inputs under tmp/in (and, for resumes, a copy of a real finished run under
tmp/runs), then calls the CLI as `python suite/run.py ARGS` would. Afterwards every file under tmp
must be exactly as before and no run or sweep directory may have appeared.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from suite import cli
from suite.report.__main__ import main as report_main
from tests.conftest import REPO, TINY, TINY_RUN, sets
from tests.data_files import make_cifar, make_tiny_imagenet

RUN = TINY_RUN  # the finished run every resume case copies (conftest's tiny_run)


def tiny(*extra: str) -> list[str]:
    """A tiny in-process run: should a case wrongly pass, it trains for seconds, not minutes."""
    return [*sets(*TINY), "--in-process", *extra]


def write(tmp: Path, name: str, text: str | bytes) -> Path:
    path = tmp / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def config_file(text: str):
    return lambda tmp, run: [str(write(tmp, "bad.yaml", text)), *tiny()]


def sweep_file(text: str):
    return lambda tmp, run: ["--sweep", str(write(tmp, "sweep.yaml", "base: [configs/quickstart.yaml]\n" + text)), "--dry-run"]


def cifar(mutate):
    """A tiny CIFAR-100 release under tmp/in, changed by `mutate(directory)`."""
    def setup(tmp):
        directory = make_cifar(tmp / "in" / "cifar-100-python")
        mutate(directory)
        return [*sets("data.name=cifar100", "scenario.increment=10"), "--data-path", str(directory.parent), "--in-process"]
    return lambda tmp, run: setup(tmp)


def image_folder(build):
    """An ImageFolder tree under tmp/in/images with train/ and val/, changed by `build(root)`."""
    def setup(tmp, run):
        root = tmp / "in" / "images"
        for split in ("train", "val"):
            for c in ("a", "b"):
                (root / split / c).mkdir(parents=True)
                Image.new("RGB", (8, 8)).save(root / split / c / "0.png")
        build(root)
        return [*sets("data.name=imagefolder", "scenario.initial_increment=1", "scenario.increment=1",
                      "method=finetune", "model.patch_size=16"), "--data-path", str(root), "--in-process"]
    return setup


def tiny_imagenet(damage):
    """A 4-class Tiny-ImageNet tree under tmp/in/tiny, changed by `damage(root)`."""
    def setup(tmp, run):
        root = make_tiny_imagenet(tmp / "in" / "tiny", ["n01443537", "n01629819", "n01641577", "n01644900"])
        damage(root)
        return [*sets("data.name=tinyimagenet", "data.input_size=16", "model.patch_size=4", "memory.size=4"),
                "--data-path", str(root), "--in-process"]
    return setup


def finished_run(change=lambda run_dir: None, extra=("--resume",)):
    """A copy of the finished tiny run under tmp/runs, changed by `change(run_dir)`, run again with `extra`."""
    def setup(tmp, run):
        run_dir = tmp / "runs" / RUN
        shutil.copytree(run, run_dir)
        change(run_dir)
        return [*tiny("--name", RUN), *extra]
    return setup


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


CASES = {
    # ---- config files
    "yaml unknown key": (config_file("memory:\n  sise: 10\n"), ["memory.sise", "did you mean 'memory.size'"]),
    "yaml unknown section": (config_file("memroy:\n  size: 10\n"), ["memroy"]),
    "yaml wrong type": (config_file("memory:\n  size: lots\n"), ["memory.size", "lots"]),
    "yaml syntax error": (config_file("memory: [size: 1\n"), ["bad.yaml"]),
    "yaml with a python tag": (config_file("memory: !!python/object/apply:os.system ['true']\n"), ["bad.yaml"]),
    "yaml not a mapping": (config_file("- memory.size\n"), ["bad.yaml"]),
    "yaml section not a mapping": (config_file("memory: 5\n"), ["memory"]),
    "yaml key twice": (config_file("method: daformer_m\nseed: 1\nmethod: dytox\n"),
                       ["bad.yaml", "names 'method' twice, at lines 1 and 3"]),
    "yaml nested key twice": (config_file("memory:\n  size: 10\n  size: 20\n"), ["names 'size' twice, at lines 2 and 3"]),
    "config file missing": (lambda tmp, run: ["missing.yaml"], ["config file 'missing.yaml' does not exist"]),
    "--options file missing": (lambda tmp, run: ["--options", "options/data/nothere.yaml"], ["options/data/nothere.yaml"]),
    # ---- values
    "unknown method": (lambda tmp, run: tiny(*sets("method=dafomer")), ["method", "dafomer"]),
    "zero batch size": (lambda tmp, run: tiny(*sets("train.batch_size=0")), ["train.batch_size", "0"]),
    "unknown tracker": (lambda tmp, run: tiny(*sets("logging.backend=[tensorboard, tb]")), ["logging.backend", "'tb'", "mlflow"]),
    "negative checkpoint interval": (lambda tmp, run: tiny(*sets("train.checkpoint_every=-1")), ["train.checkpoint_every", "-1"]),
    "negative memory": (lambda tmp, run: tiny(*sets("memory.size=-1")), ["memory.size", "-1"]),
    "negative lr": (lambda tmp, run: tiny(*sets("train.lr=-0.1")), ["train.lr"]),
    "lr not a number": (lambda tmp, run: tiny(*sets("train.lr=nan")), ["'train.lr' = nan is not a finite number"]),
    "lr infinite": (lambda tmp, run: tiny(*sets("train.lr=inf")), ["'train.lr' = inf is not a finite number"]),
    "yaml infinity": (config_file("distill:\n  tau: .inf\n"), ["bad.yaml", "'distill.tau' = inf is not a finite number"]),
    "zero epochs": (lambda tmp, run: tiny(*sets("train.epochs=0")), ["train.epochs"]),
    "bool of a number": (lambda tmp, run: tiny(*sets("train.skip_nonfinite=7")), ["train.skip_nonfinite"]),
    "increment does not divide": (lambda tmp, run: tiny(*sets("scenario.increment=4")), ["scenario.increment = 4", "does not divide"]),
    "increment does not divide cifar": (lambda tmp, run: sets("data.name=cifar100", "scenario.increment=7"), ["does not divide the 93 classes"]),
    "first task too large": (lambda tmp, run: tiny(*sets("scenario.initial_increment=7")), ["scenario.initial_increment", "7"]),
    "order with duplicates": (lambda tmp, run: tiny(*sets("scenario.class_order=[0, 0, 1, 2, 3, 4]")), ["repeats class ids [0]"]),
    "order with foreign ids": (lambda tmp, run: tiny(*sets("scenario.class_order=[0, 1, 2, 3, 4, 9]")), ["ids outside 0..5: [9]"]),
    "order too short": (lambda tmp, run: tiny(*sets("scenario.class_order=[0, 1, 2]")), ["lists 3 classes", "has 6"]),
    "order file missing": (lambda tmp, run: tiny(*sets("scenario.class_order=order9")), ["no order file 'order9'"]),
    "order seed malformed": (lambda tmp, run: tiny(*sets("scenario.class_order=seed:x")), ["seed:x", "seed:N"]),
    "more keys than tasks": (lambda tmp, run: tiny(*sets("method=daformer", "model.num_keys=4")), ["model.num_keys = 4 is larger than the 3 tasks"]),
    "keys contradict daformer_s": (lambda tmp, run: tiny(*sets("method=daformer_s", "model.num_keys=3")), ["contradicts method 'daformer_s'"]),
    "patch does not divide": (lambda tmp, run: tiny(*sets("model.patch_size=3")), ["model.patch_size = 3 does not divide the 8-pixel images"]),
    "heads do not divide": (lambda tmp, run: tiny(*sets("model.num_heads=3")), ["model.num_heads", "3"]),
    "storage URI in-process": (lambda tmp, run: tiny(*sets("output.storage_path=s3://bucket/runs")),
                               ["output.storage_path", "s3://bucket/runs", "needs Ray"]),
    "unknown data set": (lambda tmp, run: tiny(*sets("data.name=cifar1000")), ["data.name", "cifar1000"]),
    # ---- flags
    "unknown flag": (lambda tmp, run: ["--bogus"], ["unrecognized arguments: --bogus", "--set KEY=VALUE"]),
    "flag of a key without one": (lambda tmp, run: ["--warmup-epochs", "3"],
                                  ["unrecognized arguments: --warmup-epochs", "did you mean --set train.warmup_epochs=3?"]),
    "--resume with a path (DyTox's)": (lambda tmp, run: ["--resume", "checkpoint.pth"], ["--resume takes no path",
                                                                                       "'checkpoint.pth'"]),
    "--set without =": (lambda tmp, run: ["--set", "memory.size"], ["memory.size", "KEY=VALUE"]),
    "--set unknown key": (lambda tmp, run: ["--set", "memroy.size=5"], ["unknown config key 'memroy.size'", "did you mean 'memory.size'"]),
    "--memory-size not a number": (lambda tmp, run: ["--memory-size", "many"], ["--memory-size", "many"]),
    "--memory-size negative": (lambda tmp, run: tiny("--memory-size", "-5"), ["memory.size", "-5"]),
    "--address unreachable": (lambda tmp, run: tiny("--address", "127.0.0.1:1"), ["127.0.0.1:1", "no Ray cluster answers there"]),
    "--address malformed": (lambda tmp, run: tiny("--address", "nonsense"), ["nonsense", "is malformed; expected HOST:PORT"]),
    "--resume of no run": (lambda tmp, run: tiny("--resume"), ["--resume: no run at"]),
    "--resume of no run, dry run": (lambda tmp, run: tiny("--resume", "--dry-run"), ["--resume: no run at"]),
    "output base a file, dry run": (lambda tmp, run: tiny("--dry-run", "--output-basedir", str(write(tmp, "f", "x"))),
                                    ["output directory", "cannot be written (it is a file)"]),
    "output base below a file": (lambda tmp, run: tiny("--output-basedir", str(write(tmp, "f", "x") / "runs")),
                                 ["output directory", "/in/f' is a file"]),
    "run name empty": (lambda tmp, run: tiny("--name", ""), ["'output.name' = ''", "is empty"]),
    "run name escapes the base": (lambda tmp, run: tiny("--name", "../escape", "--dry-run"), ["'../escape'", "would leave"]),
    "run name with a separator": (lambda tmp, run: tiny("--name", "a/b"), ["'a/b'", "would leave"]),
    "run name too long": (lambda tmp, run: tiny("--name", "x" * 300), ["is 300 characters long; at most 120"]),
    "--sweep with --in-process": (lambda tmp, run: ["--sweep", "configs/sweeps/quick.yaml", "--in-process"],
                                  ["--sweep does not take --in-process"]),
    "--sweep with --resume": (lambda tmp, run: ["--sweep", "configs/sweeps/quick.yaml", "--resume"],
                              ["--sweep does not take --resume", "continues by itself"]),
    "sweep name escapes the base": (lambda tmp, run: ["--sweep", "configs/sweeps/quick.yaml", "--name", "../up", "--dry-run"],
                                    ["sweep's name '../up'", "would leave"]),
    "--sweep with configs": (lambda tmp, run: ["configs/quickstart.yaml", "--sweep", "configs/sweeps/quick.yaml"], ["--sweep", "base"]),
    # ---- data directories
    "data path missing": (lambda tmp, run: sets("data.name=cifar100") + ["--data-path", str(tmp / "in" / "nowhere")], ["nowhere", "cifar-100-python"]),
    "data path not set": (lambda tmp, run: sets("data.name=cifar100"), ["data.path is not set"]),
    "cifar without pickles": (lambda tmp, run: (tmp / "in").mkdir() or sets("data.name=cifar100") + ["--data-path", str(tmp / "in")], ["cifar-100-python"]),
    "cifar pickle missing": (cifar(lambda d: (d / "test").unlink()), ["missing test"]),
    "cifar pickle truncated": (cifar(lambda d: truncate(d / "train")), ["train", "is not a valid CIFAR-100 pickle"]),
    "cifar pickle garbled": (cifar(lambda d: (d / "test").write_bytes(b"\x00garbage" * 50)), ["test", "is not a valid CIFAR-100 pickle"]),
    "cifar pickle with code": (cifar(lambda d: (d / "meta").write_bytes(b"cos\nsystem\n(S'true'\ntR.")), ["meta", "is not a valid CIFAR-100 pickle"]),
    "tiny-imagenet without wnids.txt": (tiny_imagenet(lambda root: (root / "wnids.txt").unlink()), ["no 'wnids.txt'"]),
    "tiny-imagenet val file absent": (tiny_imagenet(lambda root: (root / "val" / "images" / "val_3.JPEG").unlink()),
                                      ["val_annotations.txt", "absent from", "val_3.JPEG"]),
    "image folder without val": (image_folder(lambda root: shutil.rmtree(root / "val")), ["no 'val' directory"]),
    "empty class folder": (image_folder(lambda root: [(root / split / "c").mkdir() for split in ("train", "val")]),
                           ["train/c", "holds no image files"]),
    "val classes differ": (image_folder(lambda root: shutil.rmtree(root / "val" / "b")), ["missing from val: b"]),
    "file that is not an image": (image_folder(lambda root: (root / "train" / "a" / "0.png").write_bytes(b"not a png")),
                                  ["0.png", "is not a readable image file"]),
    # ---- an existing run: its name, its checkpoints and results when resumed
    "run name taken": (finished_run(extra=()), ["already exists", "--resume"]),
    "resume with another config": (finished_run(extra=["--resume", *sets("memory.size=10")]), ["different config", "memory.size"]),
    "checkpoint garbled": (finished_run(lambda d: (d / "checkpoints" / "latest.pt").write_bytes(b"garbage")),
                           ["latest.pt", "cannot be read"]),
    "checkpoint truncated": (finished_run(lambda d: truncate(d / "checkpoints" / "latest.pt")), ["latest.pt", "cannot be read"]),
    "results not JSON": (finished_run(lambda d: (d / "results.json").write_text("{ not json")), ["results.json", "expected JSON"]),
    # ---- sweep files
    "sweep file missing": (lambda tmp, run: ["--sweep", "configs/sweeps/nothere.yaml"], ["nothere.yaml"]),
    "sweep axis on unknown key": (sweep_file("axes: {memroy.size: [1, 2]}\n"), ["unknown config key 'memroy.size'; did you mean 'memory.size'?"]),
    "sweep axis not a list": (sweep_file("axes: {memory.size: 5}\n"), ["axis 'memory.size' must be a non-empty list"]),
    "sweep axis empty": (sweep_file("axes: {memory.size: []}\n"), ["axis 'memory.size' must be a non-empty list"]),
    "sweep unknown distribution": (sweep_file("axes: {train.lr: {gaussian: [0, 1]}}\n"), ["expected a list or one of uniform"]),
    "sweep bad value": (sweep_file("axes: {memory.size: [100, -1]}\n"), ["'memory.size' = -1 is too small"]),
    "sweep zero concurrency": (sweep_file("axes: {memory.size: [100]}\nmax_concurrent_trials: 0\n"), ["'max_concurrent_trials' = 0"]),
    "sweep unknown field": (sweep_file("axes: {memory.size: [100]}\nbogus: 1\n"), ["unknown sweep key(s) ['bogus']"]),
    "sweep trial invalid": (sweep_file("axes: {scenario.increment: [2, 3]}\n"), ["scenario.increment = 3", "does not divide"]),
}


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, capsys, tiny_run, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative default (runs/) would land here, where it is checked
    setup, expected = CASES[name]
    args = setup(tmp_path, tiny_run)
    if "--output-basedir" not in args:
        args += ["--output-basedir", str(tmp_path / "runs")]
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert cli.main(args) == 2, name
    out, err = capsys.readouterr()
    line = err.strip()
    assert line.startswith("error: ") and "\n" not in line and "Traceback" not in err, err
    for fragment in expected:
        assert fragment in line, f"{name}: {fragment!r} not in {line!r}"
    assert snapshot(tmp_path) == before, f"{name}: files were written or changed"


def test_report_of_a_results_file_that_is_not_json(tmp_path):
    bad = tmp_path / "run" / "results.json"
    bad.parent.mkdir()
    bad.write_text("{ not json")
    before = snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "suite.report", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert str(bad) in proc.stderr and "not valid JSON" in proc.stderr and "Traceback" not in proc.stderr
    assert snapshot(tmp_path) == before


def test_report_into_a_file_is_one_line(tmp_path, tiny_run, capsys):
    out = write(tmp_path, "report-file", "not a directory")
    before = snapshot(tmp_path)
    assert report_main([str(tiny_run), "--out", str(out / "report")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out") and "is a file" in err and "\n" not in err
    assert report_main([str(tiny_run), "--bogus"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: unrecognized arguments: --bogus (see --help)"]
    assert snapshot(tmp_path) == before


def test_report_of_a_directory_without_results(tmp_path, capsys):
    assert report_main([str(tmp_path)]) == 2
    assert f"no results.json under '{tmp_path}'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_script_exit_code_and_one_line(cli, tmp_path):
    """As a user runs it: a subprocess, exit 2, exactly one line on stderr, nothing on stdout."""
    proc = cli("--set", "memroy.size=5", "--output-basedir", tmp_path / "runs")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == ["error: --set memroy.size=5: unknown config key 'memroy.size'; "
                                                "did you mean 'memory.size'?"]
    assert not (tmp_path / "runs").exists()


def test_catalogue_size():
    assert len(CASES) >= 30
