"""bench/gpu_ray without a GPU: the wheel repacking and closure, the report's arithmetic, the
orchestrator's budgets, and (the last test, minutes on 2 cores) the whole --cpu-smoke run."""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bench.gpu_ray import analysis, report, run, wheels
from tests.conftest import REPO
from tests.ray_nodes import ENV


def make_wheel(path: Path, name: str, version: str, files: dict[str, bytes], requires=(), modes=None) -> Path:
    """A wheel with `files`, a METADATA listing `requires`, and a stale RECORD plus a signature."""
    info = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    wheel = path / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for member, data in files.items():
            zi = zipfile.ZipInfo(member, (2026, 1, 1, 0, 0, 0))
            zi.external_attr = (modes or {}).get(member, 0o644) << 16
            z.writestr(zi, data)
        z.writestr(f"{info}/METADATA", meta)
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "stale,sha256=wrong,1\n")
        z.writestr(f"{info}/RECORD.jws", "{}")
    return wheel


def test_repack_drops_the_excluded_members_and_writes_a_correct_record(tmp_path):
    files = {"demo/__init__.py": b"VALUE = 1\n", "demo/jars/big.jar": b"x" * 1000, "demo/web/app.js": b"js",
             "demo/web/app.js.map": b"map" * 100, "demo/bin/tool": b"#!/bin/sh\necho hi\n"}
    src = make_wheel(tmp_path, "demo", "1.0", files, modes={"demo/bin/tool": 0o755})
    dst = tmp_path / "out" / src.name
    dst.parent.mkdir()
    stripped = wheels.repack(src, dst, lambda n: n.startswith("demo/jars/") or n.endswith(".map"))
    assert stripped["removed_files"] == 2
    with zipfile.ZipFile(dst) as z:
        names = set(z.namelist())
        assert {"demo/jars/big.jar", "demo/web/app.js.map", "demo-1.0.dist-info/RECORD.jws"}.isdisjoint(names)
        assert (z.getinfo("demo/bin/tool").external_attr >> 16) & 0o111  # still executable
        rows = list(csv.reader(io.StringIO(z.read("demo-1.0.dist-info/RECORD").decode())))
        listed = {r[0]: r for r in rows}
        assert set(listed) == names
        assert listed["demo-1.0.dist-info/RECORD"][1:] == ["", ""]
        for member, digest, size in rows:
            if member.endswith("RECORD"):
                continue
            data = z.read(member)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={expected}", len(data))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(target),
                    str(dst)], check=True)
    assert (target / "demo" / "__init__.py").read_text() == "VALUE = 1\n"
    assert not (target / "demo" / "jars").exists()


@pytest.mark.parametrize("member, dropped", [
    ("ray/jars/ray_dist.jar", True), ("ray/dashboard/client/build/static/js/main.84605326.js.map", True),
    ("ray/dashboard/client/build/static/js/main.84605326.js", False), ("ray/_raylet.so", False),
    ("ray/core/src/ray/raylet/raylet", False)])
def test_ray_wheel_exclusions(member, dropped):
    assert wheels._excluded_path(member) is dropped


FAKE_INDEX = {  # name -> (version, Requires-Dist)
    "ray": ("2.60.0", ["click>=7.0", "jsonschema", 'pydantic<3,>=2.5.0; extra == "train"',
                       'virtualenv!=20.21.1,>=20.0.24; extra == "default"', 'memray; extra == "observability"',
                       'py-spy>=0.4.0; python_version >= "3.12" and extra == "default"',
                       'py-spy>=0.2.0; python_version < "3.12" and extra == "default"']),
    "jsonschema": ("4.26.0", ["attrs>=22.2.0", "rpds-py>=0.25.0"]),
    "rpds-py": ("2026.9.1", []),
    "pydantic": ("2.14.4", ["pydantic-core==2.50.5", "typing-extensions>=4.1"]),
    "pydantic-core": ("2.50.5", ['typing-extensions>=4.1; python_version < "3.13"']),
}


def fake_download(specs, dest):
    for spec in specs:
        name, version = spec.split("==")
        assert FAKE_INDEX[name][0] == version
        make_wheel(dest, name.replace("-", "_"), version, {}, FAKE_INDEX[name][1])


def test_resolve_carries_only_what_the_device_lacks(tmp_path, monkeypatch):
    monkeypatch.setattr(wheels, "download", fake_download)
    closure = wheels.resolve(tmp_path, {"click", "attrs", "typing-extensions"}, pin=lambda n: FAKE_INDEX[n][0])
    assert closure.carried == {n: v for n, (v, _) in FAKE_INDEX.items()}
    assert set(closure.present) == {"click", "attrs", "typing-extensions"}
    assert closure.excluded == {"virtualenv": "ray", "py-spy": "ray"}  # and memray (another extra) not at all


def test_resolve_refuses_what_it_cannot_pin(tmp_path, monkeypatch):
    monkeypatch.setattr(wheels, "download", fake_download)
    with pytest.raises(SystemExit, match="rpds-py .* is not installed here"):
        wheels.resolve(tmp_path, {"click", "attrs", "typing-extensions"},
                       pin=lambda n: None if n == "rpds-py" else FAKE_INDEX[n][0])
    with pytest.raises(SystemExit, match="ray needs pydantic<3,>=2.5.0"):
        wheels.resolve(tmp_path, {"click", "attrs", "typing-extensions"},
                       pin=lambda n: "1.10" if n == "pydantic" else FAKE_INDEX[n][0])


def epoch_line(task, phase, epoch, epochs, rate, prefix=""):
    return f"{prefix}task {task}/2 {phase:8s} epoch {epoch}/{epochs}  loss 0.5000  {rate:,} img/s  elapsed 0:01  eta 0:09"


def test_parse_epochs_reads_any_prefix_once():
    lines = [epoch_line(1, "train", 1, 2, 1500, "(RayTrainWorker pid=7) "), epoch_line(1, "train", 1, 2, 1500),
             "task 1/2 accuracy: top-1 50.00", epoch_line(2, "finetune", 1, 1, 12000)]
    assert [(e["task"], e["phase"], e["images_per_s"]) for e in analysis.parse_epochs(lines)] == \
        [(1, "train", 1500.0), (2, "finetune", 12000.0)]


def test_epoch_images_drop_the_last_partial_batch():
    assert analysis.epoch_images(5000, 128) == 4992
    assert analysis.epoch_images(100, 128) == 100
    assert analysis.PAPER.memory_after(1) == 2000 and analysis.PAPER.main_items(2) == 7000


def test_step_rate_interpolates_seconds_per_image():
    rate, how = analysis.step_rate_at({1: 1000.0, 3: 500.0}, 2)
    assert rate == pytest.approx(1 / 0.0015) and how.startswith("interpolated")
    rate, how = analysis.step_rate_at({1: 3000.0, 2: 2000.0}, 3)
    assert rate == pytest.approx(1500.0) and how.startswith("extrapolated")


def measured_figures() -> dict:
    """A two-task run of the paper's sizes: task 1 at 2000 img/s, task 2 at 1000, finetuning 4000."""
    def task(t, train, finetune, other, images):
        return {"task": t, "keys": t, "train": {"steady_images_per_s": train},
                "finetune": {"steady_images_per_s": finetune}, "other_s": other, "eval_and_herding_images": images}
    return {"tasks": [task(1, 2000.0, None, 10.0, 6000), task(2, 1000.0, 4000.0, 12.0, 7000)]}


def test_projection_arithmetic():
    paper = analysis.Protocol(tasks=3, classes_per_task=10, train_per_class=500, test_per_class=100, memory=2000,
                              epochs=500, finetune_epochs=20, batch=128)
    p = analysis.project(measured_figures(), {1: 3000.0, 2: 2000.0}, paper)
    task1 = 500 * 4992 / 2000 + 10
    task2 = 500 * 6912 / 1000 + 20 * 1920 / 4000 + 12
    task3 = 500 * 6912 / 750 + 20 * 1920 / 3000 + 12 * 8000 / 7000  # step 1500 img/s at 3 keys: x0.75
    assert [r["task_s"] for r in p["rows"]] == pytest.approx([task1, task2, task3])
    assert p["total_h"] == pytest.approx((task1 + task2 + task3) / 3600)
    assert analysis.projection_lines(p)[-1].endswith(f"= {(task1 + task2 + task3) / 3600:.2f} h")


def run_record(rate1, rate2, batch=128, in_process=False, precision="fp32"):
    figures = measured_figures()
    figures["tasks"][0]["train"]["steady_images_per_s"] = rate1
    figures["tasks"][1]["train"]["steady_images_per_s"] = rate2
    for t in figures["tasks"]:
        t["train"]["warm_epochs"] = 3
        t.update(task_s=30.0)
    return {"status": "ok", "wall_s": 60.0, "budget_s": 100, "command": "python suite/run.py ...", "batch": batch,
            "variant": {"precision": precision, "batch": "small", "in_process": in_process, "compile": False,
                        "one_task": False}, "first_epoch_line_s": 20.0, "figures": figures}


def fake_doc() -> dict:
    steps = [{"keys": k, "dtype": "fp32", "batch": 128, "compiled": False, "name": f"daformer_m ({k} keys)",
              "images_per_s": {"median": r}} for k, r in ((1, 3000.0), (2, 2000.0), (5, 1500.0), (10, 1000.0))]
    trial = {"status": "finished", "total_s": 10.0}
    return {"command": "python -m bench.gpu_ray.run", "mode": "gpu", "started": "now", "elapsed_s": 400,
            "preset": run.PRESET, "sizes": {**run.asdict(run.GPU)},
            "environment": {"gpu": "H200", "cores": 16, "python": "3.12.3", "executable": "python3",
                            "load_average": [0.1], "git_commit": "abc", "versions": {"ray": "2.60.0"},
                            "unmet_ray_requirements": []},
            "measurements": {
                "probe": {"status": "ok", "probe": {"steps": steps, "large_batch": 1024, "loader": [
                    {"num_workers": 4, "batch": 128, "images_per_s": {"median": 9000.0}}]}},
                "ray-fp32-small": run_record(1900.0, 950.0),
                "inproc-fp32-small": run_record(2000.0, 1000.0, in_process=True),
                "pack-concurrent": {"status": "ok", "wall_s": 100.0, "spec": {"max_concurrent_trials": 4},
                                    "trials": [{**trial, "total_s": 20.0}] * 4},
                "pack-sequential": {"status": "ok", "wall_s": 300.0, "spec": {"max_concurrent_trials": 1},
                                    "trials": [trial] * 4},
                "ray-bf16-large": {"status": "timed out", "wall_s": 80, "budget_s": 80, "returncode": -15,
                                   "tail": ["last line"], "variant": {"precision": "bf16", "batch": "large",
                                                                      "in_process": False, "compile": False}}}}


def test_summary_figures():
    doc = fake_doc()
    s = report.summarize(doc)
    ratios = [r["ratio"] for r in s["ray_vs_in_process"]]
    assert ratios == pytest.approx([0.95, 0.95])
    assert s["packing"]["ratio"] == pytest.approx(3.0) and s["packing"]["learner_time_ratio"] == pytest.approx(2.0)
    assert s["loader"][0]["per_fastest_step"] == pytest.approx(3.0)
    first = next(r for r in s["pipeline"] if r["part"] == "ray-fp32-small" and r["task"] == 2)
    assert first["pipeline_per_step"] == pytest.approx(950 / 2000)
    assert s["projection"]["ray-fp32-small"]["total_s"] > 0
    assert "error" in s["projection"]["ray-bf16-large"]
    met = {t["what"]: t["met"] for t in s["targets"]}
    assert met["Tune packing, trials/hour concurrent ÷ one at a time"] is True


def test_markdown_keeps_every_part_and_names_the_failed_one():
    doc = fake_doc()
    doc["summary"] = report.summarize(doc)
    md = report.markdown(doc)
    for heading in ("## Targets", "## 1. ", "## 2. ", "## 3. ", "## 4. ", "## 5. ", "### ray-bf16-large: timed out"):
        assert heading in md
    assert f"{doc['summary']['projection']['ray-fp32-small']['total_h']:.1f} h" in md


def test_an_overrunning_measurement_is_stopped_with_its_whole_session(tmp_path):
    b = run.Bench(run.SMOKE, tmp_path, tmp_path, run.PARTS, [])
    rec = b.launch("slow", ["bash", "-c", "sleep 60 & sleep 60 & echo started; wait"], budget=1)
    assert rec["status"] == "timed out" and rec["tail"] == ["started"] and rec["wall_s"] < 15
    assert "==== slow:" in (tmp_path / "runs.log").read_text()


def test_budget_skips_past_the_deadline(tmp_path):
    b = run.Bench(run.replace(run.SMOKE, deadline_s=10), tmp_path, tmp_path, run.PARTS, [])
    assert b.budget("probe") is None
    assert b.doc["measurements"]["probe"]["status"] == "skipped"
    assert json.loads((tmp_path / "report.json").read_text())["measurements"]["probe"]["status"] == "skipped"


@pytest.mark.slow
def test_cpu_smoke_end_to_end(ray_head, tmp_path):
    """The device script's whole code path on the CPU: probe, a Ray Train run, the in-process run,
    both packing sweeps, the report. Its runs go to the shared Ray head (RAY_ADDRESS, as under `ray
    job submit`), not to an embedded Ray each."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "bench.gpu_ray.run", "--cpu-smoke", "--out", str(out), "--work",
                           str(tmp_path / "work")], cwd=REPO, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, **ENV, "RAY_ADDRESS": ray_head.address})
    doc = json.loads((out / "report.json").read_text())
    statuses = {k: r["status"] for k, r in doc["measurements"].items()}
    assert done.returncode == 0, (statuses, done.stdout[-3000:])
    assert set(statuses) == {"probe", "ray-fp32-small", "inproc-fp32-small", "pack-concurrent", "pack-sequential"}
    s = doc["summary"]
    assert {r["part"] for r in s["pipeline"]} == {"ray-fp32-small", "inproc-fp32-small"}
    assert all(r["pipeline_per_step"] for r in s["pipeline"])
    assert len(s["ray_vs_in_process"]) == 2 and all(r["ratio"] for r in s["ray_vs_in_process"])
    assert s["packing"]["ratio"] > 0 and s["loader"]
    assert s["projection"]["ray-fp32-small"]["total_s"] > 0
    assert (out / "report.md").read_text().count("## ") >= 7 and (out / "runs.log").stat().st_size > 0
