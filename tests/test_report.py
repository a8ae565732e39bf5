"""The reporting module on results files with known numbers (no Ray, no torch)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from suite.errors import UserError
from suite.report import build_report
from suite.report.__main__ import main
from suite.report.aggregate import finished_runs, main_stats, runs_frame
from suite.report.load import load_results
from tests.fake_results import make_result, read, table_row, table_rows, write_run

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
IMAGE_CHECK = """<script>
window.addEventListener("load", () => {
  const broken = [...document.images].filter(img => !(img.complete && img.naturalWidth > 0));
  document.body.setAttribute("data-images", broken.length ? "broken:" + broken.map(i => i.src).join(",") : "ok");
  document.body.setAttribute("data-image-count", String(document.images.length));
});
</script>"""


def write_sweep(root: Path) -> Path:
    """Runs with known numbers across two datasets, three settings and two ablation axes."""
    for seed, (order, avg, last) in enumerate([("cifar100_order1", 70, 58), ("cifar100_order2", 72, 60),
                                               ("cifar100_order3", 74, 62)]):
        write_run(root, f"paper/dytox_{order}", make_result(avg=avg, last=last, order=order, seed=seed))
    write_run(root, "paper/daformer_m", make_result("daformer_m", avg=75, last=63, params=10_750_000))
    write_run(root, "paper/daformer_m_running", make_result("daformer_m", status="running", tasks_done=4))
    failed = make_result("replay", status="failed", tasks_done=2, error="RuntimeError: worker died\n  traceback")
    write_run(root, "paper/replay_failed", failed)
    write_run(root, "paper20/dytox", make_result(n_tasks=20, avg=71, last=55))
    digits = {"dataset": "digits", "n_tasks": 5, "num_classes": 10, "params": 50_000, "order": "seed:1"}
    for seed, avg in enumerate([50, 54]):
        write_run(root, f"digits/finetune_{seed}", make_result("finetune", avg=avg, last=20, seed=seed, **digits))
    for keys in (1, 2, 5):
        for seed in (0, 1):
            write_run(root, f"keys/k{keys}_s{seed}", make_result("daformer", num_keys=keys, avg=60 + keys + seed,
                                                                 last=40 + keys, seed=seed, **digits))
    for size in (100, 200):
        for seed in (0, 1):
            write_run(root, f"memory/m{size}_s{seed}", make_result("replay", memory_size=size, avg=size / 4 + seed,
                                                                   last=size / 8, seed=seed, **digits))
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    return build_report(write_sweep(tmp_path_factory.mktemp("sweep")))


# ---------------------------------------------------------------- loading

def test_one_row_per_run_per_task(tmp_path):
    write_run(tmp_path, "a", make_result(n_tasks=4, num_classes=8))
    write_run(tmp_path, "b", make_result(n_tasks=4, num_classes=8, status="running", tasks_done=2))
    write_run(tmp_path, "c", make_result(n_tasks=4, num_classes=8, status="running", tasks_done=0))
    tasks = load_results(tmp_path)
    assert tasks.groupby("run").size().to_dict() == {"a": 4, "b": 2, "c": 1}
    assert tasks.loc[tasks["run"] == "a", "classes_seen"].tolist() == [2, 4, 6, 8]
    assert tasks["cfg.memory.size"].eq("2000").all() and "cfg.output.name" not in tasks


def test_a_classifier_with_a_network_of_its_own_carries_its_parameter_count(tmp_path):
    result = make_result(method="foster", n_tasks=3, num_classes=6, params=900_000)
    student = {k: result[k] for k in ("acc_matrix", "acc", "acc_top5")}
    result["classifiers"] = {"cnn": {**student, "num_params": result["num_params"]},
                             "student": {**student, "num_params": [900_000, 470_000, 470_000]}}
    write_run(tmp_path, "foster", result)
    params = load_results(tmp_path).groupby("run")["num_params"].apply(list).to_dict()
    assert params == {"foster": [900_000, 901_000, 902_000], "foster#student": [900_000, 470_000, 470_000]}


def test_corrupt_and_incomplete_files_are_skipped_with_a_warning(tmp_path, capsys):
    write_run(tmp_path, "good", make_result())
    half = write_run(tmp_path, "half", json.dumps(make_result())[:200])
    partial = write_run(tmp_path, "partial", {"status": "running"})
    tasks = load_results(tmp_path)
    assert set(tasks["run"]) == {"good"}
    err = capsys.readouterr().err
    assert f"warning: skipping {half}" in err and f"warning: skipping {partial}: missing method" in err


def test_empty_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no results.json under"):
        build_report(tmp_path)
    write_run(tmp_path, "broken", "{")
    with pytest.raises(UserError, match="could be read"):
        build_report(tmp_path)


def test_cli_reports_user_error_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "suite.report", str(tmp_path)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no results.json under") and proc.stderr.count("\n") == 1


def test_cli_builds_report(tmp_path, capsys):
    write_run(tmp_path, "run", make_result(n_tasks=2, num_classes=4))
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "index.html").is_file() and "index.html" in capsys.readouterr().out


def test_summary_names_the_commits_the_runs_were_made_at(tmp_path):
    for i, commit in enumerate(["b" * 40, "a" * 40, "b" * 40, None]):
        result = make_result(n_tasks=2, num_classes=4, seed=i)
        result["provenance"]["git_commit"] = commit
        write_run(tmp_path, f"run{i}", result)
    page = read(build_report(tmp_path, tmp_path / "out") / "README.md")
    assert f"made at commit {'a' * 12}, {'b' * 12};" in page


def test_class_orders_section_names_each_tasks_classes(tmp_path):
    named = make_result(n_tasks=2, num_classes=4, order="seed:3")
    named["class_names_per_task"] = [["tailed frog", "boa"], ["altar", "ox"]]
    write_run(tmp_path, "named", named)
    write_run(tmp_path, "older", make_result(n_tasks=2, num_classes=4, order="seed:4"))  # no names stored
    out = build_report(tmp_path, tmp_path / "out")
    page = read(out / "README.md")
    assert "## Class orders" in page
    assert ["1", "tailed frog, boa"] in table_rows(page, "1") and ["2", "altar, ox"] in table_rows(page, "2")
    assert ["2", "2, 3"] in table_rows(page, "2")  # class ids where a run stored no names
    assert (out / "tables" / "classes_cifar100_B0-2steps_seed3.csv").is_file()


# ---------------------------------------------------------------- tables

def test_main_stats_mean_std_n(tmp_path):
    stats = main_stats(finished_runs(runs_frame(load_results(write_sweep(tmp_path)))))
    dytox = stats.set_index(["dataset", "setting", "method"]).loc[("cifar100", "B0-10steps", "dytox")]
    assert (dytox["avg_mean"], dytox["avg_std"], dytox["n"]) == pytest.approx((72.0, 2.0, 3))
    assert (dytox["last_mean"], dytox["last_std"]) == pytest.approx((60.0, 2.0))
    single = stats.set_index(["setting", "method"]).loc[("B0-10steps", "daformer_m")]
    assert single["n"] == 1 and pd.isna(single["avg_std"])  # the running run is not pooled
    assert set(stats["dataset"]) == {"cifar100", "digits"}
    assert len(stats[(stats["method"] == "dytox")]) == 2  # 10 and 20 steps never pooled


def test_main_table_markdown(report):
    table = read(report / "tables" / "main_cifar100.md")
    assert "| Method | 10 steps #P | 10 steps Avg | 10 steps Last | 20 steps #P | 20 steps Avg |" in table
    assert table_row(table, "DyTox")[1:6] == ["10.74", "72.00 ± 2.00", "60.00 ± 2.00", "10.75", "71.00"]
    assert table_row(table, "DAFormer-M")[1:4] == ["10.76", "75.00", "63.00"]  # DER w/o P's 75.36 / 65.22
    assert table_row(table, "DyTox (paper, per-GPU memory)")[1:5] == ["10.73", "73.66", "60.67", "10.74"]
    assert not table_rows(table, "Δ DyTox − DyTox (paper, per-GPU memory)")  # global-memory runs
    assert table_row(table, "Δ DyTox − DyTox (erratum, 2k global memory)")[1:4] == ["", "+4.67", "+8.32"]
    assert "DyTox README, github.com/arthurdouillard/dytox" in table
    assert "Replay" not in table  # failed runs are not pooled
    digits = read(report / "tables" / "main_digits.md")
    assert table_row(digits, "Finetune")[1:4] == ["0.05", "52.00 ± 2.83", "20.00 ± 0.00"]
    assert "over n = 2 runs (class orders and seeds)" in digits and "published" not in digits


def test_main_table_latex(report):
    tex = read(report / "tables" / "main_cifar100.tex")
    for command in (r"\begin{tabular}{lrrrrrr}", r"\toprule", r"\midrule", r"\bottomrule",
                    r"\multicolumn{3}{c}{10 steps}", r"\cmidrule(lr){2-4}", r"\cmidrule(lr){5-7}"):
        assert command in tex
    assert r"DAFormer-M & 10.76 & 75.00 & 63.00 & -- & -- & --" in tex
    assert r"\textbf{75.36} & \textbf{65.22}" in tex
    assert r"72.00 $\pm$ 2.00" in tex and r"$\Delta$ DyTox $-$ DyTox (erratum, 2k global memory)" in tex
    assert "+4.67" in tex and "_" not in tex.replace(r"\_", "")


def test_main_table_csv(report):
    data = pd.read_csv(report / "tables" / "main_cifar100.csv")
    ours = data[(data["source"] == "ours") & (data["method"] == "dytox") & (data["setting"] == "B0-10steps")]
    assert ours[["avg_mean", "avg_std", "n"]].values.tolist() == [[72.0, 2.0, 3]]
    # 13 published entries at 10 and 20 steps (RPSNet: 10 only), and PyCIL's four at 10 steps
    assert (data["source"] != "ours").sum() == 29


def test_ablation_tables(report):
    keys = read(report / "tables" / "ablation_num_keys_digits.md")
    assert [row[2:] for row in table_rows(keys, "DAFormer")] == [
        ["1", "61.50 ± 0.71", "41.00 ± 0.00", "2"],
        ["2", "62.50 ± 0.71", "42.00 ± 0.00", "2"],
        ["5", "**65.50 ± 0.71**", "**45.00 ± 0.00**", "2"],
    ]
    memory = read(report / "tables" / "ablation_memory_size_digits.md")
    assert "| Replay | B0-5steps | 200 | **50.50 ± 0.71** | **25.00 ± 0.00** | 2 |" in memory
    assert not list((report / "tables").glob("ablation_*cifar100*"))  # nothing varies there
    main_digits = read(report / "tables" / "main_digits.md")
    assert "DAFormer (model.num_keys=5)" in main_digits and "Replay (memory.size=100)" in main_digits


def test_runs_table(report):
    runs = read(report / "tables" / "runs.md")
    running = table_row(runs, "paper/daformer_m_running")
    assert running[4] == "running" and running[9] == "4/10"
    assert table_row(runs, "paper/replay_failed")[4] == "failed"
    assert "paper/replay_failed: failed: RuntimeError: worker died" in runs
    header = table_row(runs, "Run")
    done = dict(zip(header, table_row(runs, "paper/daformer_m")))
    assert (done["Forgetting"], done["BWT"], done["BWT (all pairs)"], done["Keys"]) == ("5.00", "-5.00", "-3.00", "10")
    tidy = pd.read_csv(report / "results_tidy.csv")
    assert len(tidy) == 3 * 10 + 10 + 4 + 2 + 20 + 2 * 5 + 6 * 5 + 4 * 5


# ---------------------------------------------------------------- plots and page

def test_every_plot_is_written(report):
    stems = ["accuracy_cifar100", "accuracy_digits", "ablation_num_keys_digits_B0-5steps",
             "ablation_memory_size_digits_B0-5steps", "heatmaps/paper-daformer_m_running",
             "heatmaps/paper-dytox_cifar100_order1"]
    for stem in stems:
        png, pdf = (report / "plots" / f"{stem}.{fmt}" for fmt in ("png", "pdf"))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, stem
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000, stem
    assert not list(report.rglob("*.tmp"))  # atomic writes leave no temporaries
    files = [path for path in report.rglob("*") if path.is_file()]
    assert all(path.stat().st_mode & 0o044 == 0o044 for path in files)  # readable by colleagues


def test_page_links_exist(report):
    page, readme = read(report / "index.html"), read(report / "README.md")
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(links) > 40 and all((report / link).is_file() for link in links)
    assert re.findall(r"\]\(([^)]+)\)", readme) and all((report / link).is_file()
                                                        for link in re.findall(r"\]\(([^)]+)\)", readme))
    assert "72.00 ± 2.00" in page and "72.00 ± 2.00" in readme


def find_chromium() -> str:
    found = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    if found is None:
        pytest.fail("headless Chromium not found: install it with `apt-get update && apt-get install -y chromium` "
                    "(or set SUITE_SKIP_BROWSER=1 to skip this check)")
    return found


@pytest.mark.skipif(os.environ.get("SUITE_SKIP_BROWSER") == "1", reason="SUITE_SKIP_BROWSER=1")
def test_page_renders_in_headless_chromium(report, tmp_path):
    chromium = find_chromium()
    check = report / "render_check.html"
    check.write_text(read(report / "index.html").replace("</body>", IMAGE_CHECK + "</body>"), encoding="utf-8")
    try:
        proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                               "--virtual-time-budget=10000", "--dump-dom", check.as_uri()],
                              capture_output=True, text=True, timeout=60)
    finally:
        check.unlink()
    body = re.search(r"<body[^>]*>", proc.stdout)
    assert body, f"chromium printed no page (exit {proc.returncode}): {proc.stderr[-2000:]}"
    assert 'data-images="ok"' in body[0], body[0]
    images = int(re.search(r'data-image-count="(\d+)"', body[0])[1])
    assert images == read(report / "index.html").count("<img ")


def _bounds(tmp_path, joint_last: float):
    for seed in (0, 1):
        write_run(tmp_path, f"ft{seed}", make_result("finetune", n_tasks=5, avg=17.0, last=7.0, seed=seed))
        write_run(tmp_path, f"replay{seed}", make_result("replay", n_tasks=5, avg=18.0, last=8.5, seed=seed))
        joint = make_result("joint", n_tasks=1, avg=joint_last, last=joint_last, seed=seed)
        write_run(tmp_path, f"joint{seed}", {**joint, "setting": "B0-5steps"})  # one task, reported under the setting
    return build_report(tmp_path)


def test_a_report_whose_upper_bound_barely_leads_says_so_before_anything_else(tmp_path):
    out = _bounds(tmp_path, joint_last=9.0)  # below finetune's average, within 2 points of replay's last
    readme = read(out / "README.md")
    first = readme.split("## ")[1]
    assert first.startswith("Read this first") and "cannot rank" in first
    assert "below the lower bound's (Finetune) average incremental accuracy, 17.0%" in first
    assert "within 2 points of Replay's last accuracy, 8.5%" in first
    tex = read(out / "report.tex")
    assert tex.index("Read this first") < tex.index("Summary")


def test_a_report_whose_upper_bound_leads_has_no_caution(tmp_path):
    out = _bounds(tmp_path, joint_last=40.0)
    assert "Read this first" not in read(out / "README.md")


# ---------------------------------------------------------------- the classic baselines

def baseline_result(seed: int, backbone: str, order: str) -> dict:
    """An iCaRL run judged by the nearest mean (avg 64 / last 50), its logits' numbers beside (60 / 45)."""
    result = make_result(method="icarl", avg=64.0, last=50.0, seed=seed, order=order, params=470_000)
    logits = make_result(method="icarl", avg=60.0, last=45.0)
    result["config"]["model"]["backbone"] = backbone
    result["label"], result["classifier"] = "iCaRL (re-run)", "nme"
    result["classifiers"] = {"nme": {k: result[k] for k in ("acc_matrix", "acc", "acc_top5", "avg_incremental_accuracy",
                                                             "last_accuracy")},
                             "cnn": {k: logits[k] for k in ("acc_matrix", "acc", "acc_top5", "avg_incremental_accuracy",
                                                             "last_accuracy")}}
    return result


def test_bold_ranks_each_method_by_its_own_classifier(tmp_path):
    """A run's other classifier (here iCaRL's logits, made the best Avg of the table) is shown, not
    ranked: bold goes to the best of the methods' own classifiers (and the published rows)."""
    for seed in range(2):
        result = baseline_result(seed, "cifar_resnet32", "cifar100_order_seed1993")
        result["classifiers"]["cnn"].update(avg_incremental_accuracy=90.0)
        write_run(tmp_path / "runs", f"icarl-{seed}", result)
        write_run(tmp_path / "runs", f"wa-{seed}", make_result(method="wa", avg=68.0, last=40.0, seed=seed,
                                                                  order="cifar100_order_seed1993", params=470_000))
    main_md = read(build_report(tmp_path / "runs", tmp_path / "out") / "tables" / "main_cifar100.md")
    assert table_row(main_md, "iCaRL (re-run) (classifier=cnn)")[2] == "90.00 ± 0.00"  # shown, not bold
    assert table_row(main_md, "WA (re-run)")[2] == "**68.00 ± 0.00**"  # above the published rows' 67.33
    assert "shown, not ranked" in main_md


def test_a_baseline_shows_each_classifier_and_is_compared_only_within_its_protocol(tmp_path):
    for seed in range(3):
        write_run(tmp_path / "runs", f"icarl-{seed}", baseline_result(seed, "cifar_resnet32", "cifar100_order_seed1993"))
    main_md = read(build_report(tmp_path / "runs", tmp_path / "out") / "tables" / "main_cifar100.md")
    assert table_row(main_md, "iCaRL (re-run) (classifier=nme)")[2:4] == ["64.00 ± 0.00", "50.00 ± 0.00"]
    assert table_row(main_md, "iCaRL (re-run) (classifier=cnn)")[2:4] == ["60.00 ± 0.00", "45.00 ± 0.00"]
    # Δ only to the published row of the same backbone (PyCIL's), never to the DyTox table's ResNet-18 row
    assert table_row(main_md, "Δ iCaRL (re-run) (classifier=nme) − iCaRL (published, PyCIL)")[3] == "+0.50"
    assert "Δ iCaRL (re-run) (classifier=nme) − iCaRL (published)" not in main_md
    lines = main_md.splitlines()
    pycil, dytox_table = (next(i for i, line in enumerate(lines) if line.startswith(f"| {label} |"))
                          for label in ("iCaRL (published, PyCIL)", "iCaRL (published)"))
    assert pycil < dytox_table  # the DyTox table's rows, another protocol, are listed after ours
    summary = read(tmp_path / "out" / "README.md").split("## Summary")[1].split("## ")[0]
    assert "3 runs under 'runs' (3 finished)" in summary and "datasets: CIFAR-100." in summary  # not 6 (one a classifier)
    cost_md = read(tmp_path / "out" / "tables" / "cost_cifar100.md")
    icarl = [line for line in cost_md.splitlines() if line.startswith("| iCaRL")]
    assert len(icarl) == 1 and "(classifier=nme)" in icarl[0]  # a run's cost once, not per classifier
