"""`python -m bench --quick`: files written, every part's keys present, figures positive and finite.

No timing assertions: the figures depend on the machine and on whatever else runs on it. The Ray,
contention, end-to-end and allocator parts (minutes, fresh processes) and the bf16 probe (bf16 is
emulated on CPUs without AMX) are skipped here; the bf16 accuracy part runs in its own test; the naive
dual block is checked against the batched one directly.
"""
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from suite.models.daformer import DAFormer
from bench.perf.naive import naive_block, naive_dual_forward
from tests.conftest import REPO

SKIP = "bf16,ray,contention,sweep,e2e,allocator,accuracy"


def _finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.parametrize("out_proj", [True, False])
def test_naive_block_equals_batched_block(out_proj, one_thread):
    torch.manual_seed(0)
    model = DAFormer(8, 3, num_tasks=6, num_keys=6, out_proj=out_proj, embed_dim=48, depth=1, num_heads=4,
                     patch_size=2)
    for _ in range(6):
        model.add_task(2)
    with torch.no_grad():
        for key, bias in zip(model.dual.keys, model.dual.key_biases):
            key.normal_()
            bias.normal_()
    model.eval()
    x = torch.randn(3, 16, 48)
    batched = model.dual(x)
    assert batched.shape == (3, 6, 48)
    assert torch.allclose(naive_dual_forward(model.dual, x), batched, atol=1e-5)
    with naive_block(model.dual):  # the benchmark's switch: same module, same weights
        assert torch.allclose(model.dual(x), batched, atol=1e-5)
    assert torch.equal(model.dual(x), batched)  # switched back


def test_naive_block_gradients_match(one_thread):
    torch.manual_seed(1)
    model = DAFormer(8, 3, num_tasks=3, num_keys=3, embed_dim=32, depth=1, num_heads=4, patch_size=2)
    for _ in range(3):
        model.add_task(2)
    model.eval()
    x = torch.randn(2, 16, 32)
    grads = []
    for fn in (model.dual, lambda t: naive_dual_forward(model.dual, t)):
        model.zero_grad()
        fn(x).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.dual.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


@pytest.mark.slow
def test_quick_benchmark_writes_json_and_markdown(tmp_path):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}  # steady on a busy machine
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--skip", SKIP, "--out", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((tmp_path / "perf.json").read_text())
    md = (tmp_path / "perf.md").read_text()

    for key in ("command", "machine", "settings", "matmul", "step", "compile", "ray", "loader", "sweep", "e2e", "allocator",
                "targets", "errors", "elapsed_s"):
        assert key in doc, key
    assert doc["errors"] == {}
    assert doc["machine"]["cpu_model"] and doc["machine"]["cores"] >= 1 and doc["machine"]["torch"]
    assert _finite_positive(doc["matmul"]["fp32"]["gflops"]["median"])

    rows = doc["step"]["rows"]
    names = {(r["method"], r["tasks"], r["impl"]) for r in rows}
    assert {("daformer_m", 1, "batched"), ("daformer_m", 10, "batched"), ("daformer_m", 10, "naive"),
            ("daformer_s", 10, "batched"), ("dytox", 10, "batched")} <= names
    for r in rows:
        for value in (r["images_per_s"]["median"], r["images_per_s"]["min"], r["flops_per_image"], r["mfu"]):
            assert _finite_positive(value), r["name"]
        assert r["images_per_s"]["n"] == doc["settings"]["repeats"]
    for a, b in (("batched", "naive"),):
        assert any((r["a"], r["b"], r["keys"]) == (a, b, 10) and _finite_positive(r["paired"]["median"])
                   for r in doc["step"]["ratios"])

    (compiled,) = doc["compile"]["rows"]
    for value in (compiled["eager"]["median"], compiled["compiled"]["median"], compiled["paired"]["median"],
                  compiled["first_call_s"], compiled["flops_per_image"], compiled["mfu_compiled"]):
        assert _finite_positive(value)
    gpu_target = next(t for t in doc["targets"] if t["name"].startswith("GPU bf16 utilisation"))
    assert gpu_target["met"] is None and "CPU" in gpu_target["note"]

    for run in doc["loader"]["runs"]:
        assert _finite_positive(run["images_per_s"]["median"])
    assert doc["sweep"] == "skipped (--skip sweep)"
    assert {t["name"] for t in doc["targets"]} >= {"fp32 MFU", "batched / naive, 10 keys, fp32",
                                                   "quickstart wall time (Ray)"}

    assert doc["command"] in md and doc["machine"]["cpu_model"] in md
    for heading in ("## Targets", "## 1. Reference ceiling", "## 2. Training step", "### torch.compile on and off",
                    "## 3. Ray Train overhead",
                    "## 4. Data pipeline", "## 5. Sweep packing", "## 6. End to end", "## 7. Allocator"):
        assert heading in md
    assert "Not measured: skipped (--skip sweep)" in md


@pytest.mark.parametrize("gpu", [False, True])
def test_packing_sweep_file_is_a_valid_sweep(tmp_path, gpu):
    """The packing part runs the real sweep command; its generated sweep file must validate."""
    import yaml

    from suite.cli import resolve_config_path
    from bench.perf.packing import sweep_spec
    from suite.sweep.spec import load_sweep

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep_spec(trials=3, concurrency=4 if gpu else 2, epochs=1, gpu=gpu)))
    sweep = load_sweep(path, resolve_config_path, {}, [], None, tmp_path)
    assert [t.name for t in sweep.trials] == ["seed-0", "seed-1", "seed-2"]
    cfg = sweep.trials[0].cfg
    assert cfg.train.epochs == 1 and sweep.max_concurrent_trials == (4 if gpu else 2)
    assert cfg.ray.use_gpu == gpu and (cfg.ray.gpus_per_worker == 0.25 if gpu else cfg.ray.cpus_per_worker >= 1)


@pytest.mark.parametrize("module", ["bench", "bench.perf"])
def test_unknown_part_is_a_usage_error(tmp_path, module):
    done = subprocess.run([sys.executable, "-m", module, "--skip", "nonsense", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unknown part" in done.stderr
    assert done.stderr.startswith("usage: python -m bench ")
    assert not (tmp_path / "perf.json").exists()


def test_committed_full_run_renders_as_committed(tmp_path):
    """Every part's section and target check on a full CPU run (the quick test skips most parts):
    `python -m bench.perf.report` rewrites the committed perf.md from its perf.json unchanged."""
    from bench.perf import report

    shutil.copy(REPO / "reports" / "perf" / "perf.json", tmp_path / "perf.json")
    assert report.main([str(tmp_path)]) == 0
    md = (tmp_path / "perf.md").read_text()
    assert md == (REPO / "reports" / "perf" / "perf.md").read_text()
    headings = [line.split(" (")[0] for line in md.splitlines() if line.startswith("## ")]
    assert headings[2:] == ["## 1. Reference ceiling: dense matmul", "## 2. Training step", "## 3. Ray Train overhead",
                            "## 4. Data pipeline", "## 5. Sweep packing", "## 6. End to end: quickstart",
                            "## 7. Allocator", "## 8. bf16 against fp32: quickstart accuracy"]
    assert "### OpenMP wait policy under a controlled competitor" in md and "Not measured" not in md


def _step_row(impl, dtype, batch, images_per_s, mfu):
    return {"method": "daformer_m", "tasks": 10, "impl": impl, "dtype": dtype, "batch": batch, "mfu": mfu,
            "mfu_adjacent": None, "name": f"daformer_m (10 keys) {impl} {dtype} b{batch}",
            "images_per_s": {"median": images_per_s}}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_bf16_targets_judge_the_gpu_at_its_largest_batch(device):
    """On a GPU batch 128 leaves bf16 barely faster than fp32: the bf16 targets take the largest batch measured
    there, and the utilisation target the best bf16 step, compiled ones included; a CPU keeps batch 128."""
    from bench.perf.targets import judge

    rows = [_step_row("batched", "bf16", 128, 200.0, 0.05), _step_row("naive", "fp32", 128, 100.0, 0.5),
            _step_row("batched", "bf16", 1024, 800.0, 0.12), _step_row("naive", "fp32", 1024, 200.0, 0.6)]
    compiled = {"case": "daformer_m (10 keys) batched bf16 b1024", "dtype": "bf16", "mfu_compiled": 0.25}
    results = {"machine": {"device": device, "amx_bf16": True}, "settings": {"batch": 128, "bf16_probe_batch": 4},
               "step": {"rows": rows, "ratios": []}, "compile": {"rows": [compiled]}}
    targets = {t["name"]: t for t in judge(results)}
    bf16 = targets["bf16 batched / fp32 naive, 10 keys"]
    assert bf16["value"] == (4.0 if device == "cuda" else 2.0)
    assert bf16["met"] is (device == "cuda") and "batch 128: 2.00×; batch 1024: 4.00×" in bf16["note"]
    util = targets["GPU bf16 utilisation (of the bf16 matmul rate)"]
    if device == "cuda":
        assert util["value"] == 0.25 and util["met"] is False and "compiled" in util["note"]
    else:
        assert util["value"] is None and util["met"] is None


def _accuracy_runs(fp32, bf16):
    """Runs of the accuracy part: per seed (avg incremental, last) accuracy in each precision."""
    return [{"precision": p, "seed": seed, "avg_incremental_accuracy": acc[0], "last_accuracy": acc[1]}
            for seed, pair in enumerate(zip(fp32, bf16)) for p, acc in zip(("fp32", "bf16"), pair)]


@pytest.mark.parametrize("bf16_avg, met", [((80.5, 82.0, 81.0), True), ((77.0, 78.0, 77.5), False)])
def test_bf16_accuracy_is_judged_against_the_seed_range(bf16_avg, met):
    from bench.perf.accuracy import summarise
    from bench.perf.targets import judge

    fp32 = [(80.0, 70.0), (82.0, 72.0), (81.0, 71.0)]
    runs = _accuracy_runs(fp32, [(a, last) for a, (_, last) in zip(bf16_avg, fp32)])
    summary = summarise(runs)
    avg = summary["avg_incremental_accuracy"]
    assert avg["fp32"]["mean"] == pytest.approx(81.0) and avg["noise"] == pytest.approx(max(2.0, max(bf16_avg) - min(bf16_avg)))
    assert avg["paired"] == pytest.approx([b - f for b, (f, _) in zip(bf16_avg, fp32)])
    results = {"machine": {"device": "cpu", "amx_bf16": False}, "settings": {"batch": 128, "bf16_probe_batch": 4},
               "accuracy": {"summary": summary}}
    target = next(t for t in judge(results) if t["name"].startswith("bf16 quickstart accuracy"))
    assert target["met"] is met and target["value"] == pytest.approx(avg["difference"])
    assert "3 seeds" in target["note"]


def test_bf16_accuracy_with_one_seed_is_not_judged():
    from bench.perf.accuracy import summarise
    from bench.perf.targets import judge

    results = {"machine": {"device": "cpu", "amx_bf16": False}, "settings": {"batch": 128, "bf16_probe_batch": 4},
               "accuracy": {"summary": summarise(_accuracy_runs([(80.0, 70.0)], [(75.0, 60.0)]))}}
    target = next(t for t in judge(results) if t["name"].startswith("bf16 quickstart accuracy"))
    assert target["met"] is None and "one seed" in target["note"]


@pytest.mark.slow
def test_accuracy_part_runs_the_quickstart_in_both_precisions(tmp_path):
    """The real quickstart, in-process, fp32 and bf16 for two seeds (one epoch per phase in --quick)."""
    others = "matmul,step,bf16,compile,ray,contention,loader,sweep,e2e,allocator"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--skip", others, "--out", str(tmp_path)],
                          cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((tmp_path / "perf.json").read_text())
    runs = doc["accuracy"]["runs"]
    assert [(r["seed"], r["precision"]) for r in runs] == [(0, "fp32"), (0, "bf16"), (1, "fp32"), (1, "bf16")]
    for r in runs:
        assert 0 < r["avg_incremental_accuracy"] <= 100 and 0 <= r["last_accuracy"] <= 100
    assert len({r["avg_incremental_accuracy"] for r in runs}) > 1  # seeds and precisions change the runs
    target = next(t for t in doc["targets"] if t["name"].startswith("bf16 quickstart accuracy"))
    assert target["met"] in (True, False) and "2 seeds" in target["note"]
    md = (tmp_path / "perf.md").read_text()
    assert "## 8. bf16 against fp32: quickstart accuracy" in md and "--set train.precision=fp32|bf16" in md


def test_cnn_rates_measure_each_protocols_model_and_block_them_by_backbone(one_thread):
    """bench/perf/cnn_rates.py on the CPU, two baselines: each protocol's preset model (its backbone,
    DER's growing a backbone a task), a rate per task count, the rate blocks a sweep's cost reads."""
    from bench.perf.cnn_rates import QUICK, rate_blocks, measure_all
    from dataclasses import replace

    rows = measure_all(replace(QUICK, methods=("der", "podnet")), torch.device("cpu"), log=lambda line: None)
    assert [(r["protocol"], r["method"], r["tasks"]) for r in rows] == [
        (protocol, method, tasks) for protocol in ("pycil", "der") for method in ("der", "podnet") for tasks in (1, 2)]
    backbones = {(r["protocol"], r["method"]): r["backbone"] for r in rows}
    assert backbones == {("pycil", "der"): "cifar_resnet32", ("pycil", "podnet"): "cifar_resnet32_cosine",
                         ("der", "der"): "cifar_resnet18", ("der", "podnet"): "cifar_resnet18"}
    assert all(math.isfinite(r["images_per_s"]) and r["images_per_s"] > 0 for r in rows)
    der = [r["params"] for r in rows if (r["protocol"], r["method"]) == ("pycil", "der")]
    assert der[1] > 1.9 * der[0]  # a second backbone
    blocks = {b["model"]["backbone"]: b for b in rate_blocks(rows, "GPU", "here")}
    assert set(blocks) == {"cifar_resnet32", "cifar_resnet32_cosine", "cifar_resnet18"}
    assert set(blocks["cifar_resnet18"]["rates"]) == {"der", "podnet"} and set(blocks["cifar_resnet18"]["rates"]["der"]) == {1, 2}
    assert blocks["cifar_resnet32"]["model"] == {"image_size": 32, "backbone": "cifar_resnet32"}
