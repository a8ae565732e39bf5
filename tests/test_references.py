"""configs/references.yaml against the DyTox release's tables, and which published rows a run is compared with."""
from __future__ import annotations

from pathlib import Path

import pytest

from suite.errors import UserError
from suite.report.aggregate import finished_runs, main_stats, runs_frame
from suite.report.load import load_results
from suite.report.references import load_references
from suite.report.render import latex, markdown
from suite.report.tables import main_table
from tests.fake_results import make_result, table_row, write_run

# Typed from github.com/arthurdouillard/dytox (commit 4da25c1): images/cifar_table.png (README; the same
# in the erratum's images/erratum_cifar.png), images/erratum_cifar.png ("distMem" rows) and
# images/cifar_global_vs_distributed.png ("2k Global"). (avg, last) for B0 10 / 20 / 50 steps.
CIFAR = {
    "DyTox (paper, per-GPU memory)": [(73.66, 60.67), (72.27, 56.32), (70.20, 52.34)],
    "DyTox+ (paper, per-GPU memory)": [(75.54, 62.06), (75.04, 60.03), (74.35, 57.09)],
    "DyTox (erratum, distributed memory)": [(71.50, 57.76), (68.86, 51.47), (64.82, 45.61)],
    "DyTox+ (erratum, distributed memory)": [(74.10, 62.34), (71.62, 57.43), (68.90, 51.09)],
    "DyTox (erratum, 2k global memory)": [(67.33, 51.68), (67.30, 48.45), (64.39, 43.47)],
    "iCaRL (published)": [(65.27, 50.74), (61.20, 43.75), (56.08, 36.62)],
    "UCIR (published)": [(58.66, 43.39), (58.17, 40.63), (56.86, 37.09)],
    "BiC (published)": [(68.80, 53.54), (66.48, 47.02), (62.09, 41.04)],
    "WA (published)": [(69.46, 53.78), (67.33, 47.31), (64.32, 42.14)],
    "PODNet (published)": [(58.03, 41.05), (53.97, 35.02), (51.19, 32.99)],
    "DER w/o P (published)": [(75.36, 65.22), (74.09, 62.48), (72.41, 59.08)],
    "DER with pruning (published)": [(74.64, 64.35), (73.98, 62.55), (72.05, 59.76)],
}
CIFAR_SETTINGS = ("B0-10steps", "B0-20steps", "B0-50steps")
# images/imagenet_table.png (README) and images/erratum_imagenet.png: B0 10 steps,
# (avg, last, avg top-5, last top-5).
IMAGENET = {
    ("imagenet_subset", "DyTox (paper, per-GPU memory)"): (77.15, 69.10, 92.04, 87.98),
    ("imagenet_subset", "DyTox+ (paper, per-GPU memory)"): (79.22, 69.06, 93.72, 88.82),
    ("imagenet_subset", "DyTox (erratum, global memory)"): (71.85, 57.94, 90.72, 83.52),
    ("imagenet_subset", "DyTox+ (erratum, global memory)"): (77.62, 65.94, 93.15, 88.78),
    ("imagenet_subset", "DyTox (erratum, distributed memory)"): (73.96, 62.20, 91.29, 85.60),
    ("imagenet_subset", "DyTox+ (erratum, distributed memory)"): (77.15, 67.70, 93.17, 89.42),
    ("imagenet_subset", "DER w/o P (published)"): (77.18, 66.70, 93.23, 87.52),
    ("imagenet", "DyTox (paper, per-GPU memory)"): (71.29, 63.34, 88.59, 84.49),
    ("imagenet", "DyTox (erratum, global memory)"): (68.14, 59.75, 87.03, 82.93),
    ("imagenet", "DyTox+ (erratum, global memory)"): (73.21, 64.56, 91.09, 87.07),
    ("imagenet", "DyTox+ (erratum, distributed memory)"): (70.88, 60.00, 90.53, 85.25),
    ("imagenet", "WA (published)"): (65.67, 55.60, 86.60, 81.10),
    ("imagenet", "DER w/o P (published)"): (68.84, 60.16, 88.17, 82.86),
}
# (memory_protocol, gpus, recipe) of the DyTox figures on CIFAR-100 (erratum: all CIFAR runs on 2 GPUs).
CIFAR_PROTOCOLS = {
    "DyTox (paper, per-GPU memory)": ("per_gpu", 2, "DyTox"),
    "DyTox+ (paper, per-GPU memory)": ("per_gpu", 2, "DyTox+"),
    "DyTox (erratum, distributed memory)": ("distributed", 2, "DyTox"),
    "DyTox+ (erratum, distributed memory)": ("distributed", 2, "DyTox+"),
    "DyTox (erratum, 2k global memory)": ("global", 2, "DyTox"),
}
GOOD_ENTRY = """references:
  - label: X (published)
    method: x
    dataset: cifar100
    memory_protocol: global
    source: somewhere
    results:
      B0-10steps: {avg: 50.0, last: 40.0}
"""


@pytest.fixture(scope="module")
def references():
    return load_references().set_index(["dataset", "label", "setting"])


@pytest.mark.parametrize("label", CIFAR)
def test_cifar_figures_are_the_published_ones(references, label):
    for setting, (avg, last) in zip(CIFAR_SETTINGS, CIFAR[label]):
        entry = references.loc[("cifar100", label, setting)]
        assert (entry["avg"], entry["last"]) == (avg, last), (label, setting)


def test_cifar_dytox_protocols(references):
    for label, (protocol, gpus, recipe) in CIFAR_PROTOCOLS.items():
        entry = references.loc[("cifar100", label, "B0-10steps")]
        assert (entry["memory_protocol"], entry["gpus"], entry["recipe"]) == (protocol, gpus, recipe), label
    baselines = references.loc["cifar100"].query("method != 'dytox'")
    assert set(baselines["memory_protocol"]) == {"global"} and baselines["recipe"].isna().all()


@pytest.mark.parametrize("dataset, label", IMAGENET)
def test_imagenet_figures_are_the_published_ones(references, dataset, label):
    entry = references.loc[(dataset, label, "B0-10steps")]
    assert tuple(entry[["avg", "last", "avg_top5", "last_top5"]]) == IMAGENET[(dataset, label)]


def report_table(root: Path, dataset: str = "cifar100"):
    finished = finished_runs(runs_frame(load_results(root)))
    stats = main_stats(finished)
    return main_table(dataset, stats[stats["dataset"] == dataset], load_references(), finished)


def dytox_run(per_worker: bool = False, mixup: float = 0.0, **kwargs) -> dict:
    result = make_result("dytox", **kwargs)
    result["config"]["memory"]["per_worker"] = per_worker
    result["config"]["train"]["mixup"] = mixup
    return result


def delta_labels(text: str) -> list[str]:
    return [line.split(" | ")[0].strip("| ") for line in text.splitlines() if line.startswith("| Δ")]


def test_global_memory_run_is_compared_with_the_2k_global_figures_only(tmp_path):
    write_run(tmp_path, "global", dytox_run(avg=70.0, last=55.0))
    table = report_table(tmp_path)
    text = markdown(table)
    assert delta_labels(text) == ["Δ DyTox − DyTox (erratum, 2k global memory)"]
    assert table_row(text, "Δ DyTox − DyTox (erratum, 2k global memory)")[2:4] == ["+2.67", "+3.32"]
    assert "our runs: global memory" in table.title
    assert ("Δ DyTox − DyTox (erratum, 2k global memory): our runs with global memory, recipe DyTox, 2 worker(s); "
            "the published figures: global memory, 2 GPUs, recipe DyTox.") in table.notes
    rows = [row[0] for row in table.rows]  # other protocols listed after the Δ row, with their protocol named
    assert rows.index("DyTox (paper, per-GPU memory)") > rows.index("Δ DyTox − DyTox (erratum, 2k global memory)")
    assert "DyTox (erratum, distributed memory)" in rows and "DyTox (erratum, 2k global memory)" in rows


def test_per_worker_run_is_compared_with_the_paper_figures_only(tmp_path):
    write_run(tmp_path, "per_gpu", dytox_run(per_worker=True, avg=70.0, last=55.0))
    table = report_table(tmp_path)
    text = markdown(table)
    assert delta_labels(text) == ["Δ DyTox − DyTox (paper, per-GPU memory)"]
    assert table_row(text, "Δ DyTox − DyTox (paper, per-GPU memory)")[2:4] == ["-3.66", "-5.67"]
    assert "our runs: per-GPU memory" in table.title
    assert "Memory protocol of our runs: per-GPU memory (memory.per_worker: true)." in table.notes
    assert "% Memory protocol of our runs: per-GPU memory (memory.per\\_worker: true)." in latex(table)
    rows = [row[0] for row in table.rows]
    assert rows.index("DyTox (erratum, 2k global memory)") > rows.index("Δ DyTox − DyTox (paper, per-GPU memory)")


def test_each_variant_against_its_own_protocol(tmp_path):
    write_run(tmp_path, "global", dytox_run(avg=70.0, last=55.0))
    write_run(tmp_path, "per_gpu", dytox_run(per_worker=True, avg=74.0, last=61.0))
    text = markdown(report_table(tmp_path))
    assert delta_labels(text) == ["Δ DyTox (memory.per_worker=false) − DyTox (erratum, 2k global memory)",
                                  "Δ DyTox (memory.per_worker=true) − DyTox (paper, per-GPU memory)"]
    assert table_row(text, "Δ DyTox (memory.per_worker=true) − DyTox (paper, per-GPU memory)")[2:4] == [
        "+0.34", "+0.33"]


def test_dytox_plus_recipe_is_compared_with_dytox_plus_figures(tmp_path):
    imagenet = {"dataset": "imagenet_subset", "num_classes": 100}
    write_run(tmp_path, "cifar", dytox_run(mixup=0.8))
    write_run(tmp_path, "in100", dytox_run(mixup=0.8, avg=78.0, last=66.0, **imagenet))
    assert delta_labels(markdown(report_table(tmp_path))) == []  # no DyTox+ 2k-global CIFAR figure
    text = markdown(report_table(tmp_path, "imagenet_subset"))
    assert delta_labels(text) == ["Δ DyTox − DyTox+ (erratum, global memory)"]
    assert table_row(text, "Δ DyTox − DyTox+ (erratum, global memory)")[2:4] == ["+0.38", "+0.06"]
    # ImageNet-like: top-5 columns, so a top-5-only figure has its row
    assert table_row(text, "E2E (published)")[1:6] == ["11.22", "–", "–", "89.92", "80.29"]


def test_no_published_rows_for_settings_we_did_not_run(tmp_path):
    write_run(tmp_path, "ten", dytox_run())
    table = report_table(tmp_path)
    assert [name for name, _ in table.groups] == ["", "10 steps"]
    assert set(table.data["setting"]) == {"B0-10steps"}


@pytest.mark.parametrize("text, message", [
    (GOOD_ENTRY.replace("global", "gathered"),
     "entry 1 ('X (published)'): memory_protocol 'gathered' is not one of global, distributed, per_gpu"),
    (GOOD_ENTRY.replace("    source: somewhere\n", ""), "entry 1 ('X (published)'): lacks source"),
    (GOOD_ENTRY.replace("avg: 50.0", "avg: fifty"), "entry 1 ('X (published)'): B0-10steps avg must be a number"),
    (GOOD_ENTRY.replace("B0-10steps", "10steps"), "entry 1 ('X (published)'): setting '10steps' is not named like"),
    (GOOD_ENTRY.replace("method: x", "method: x\n    gpu: 2"), "entry 1 ('X (published)'): unknown key gpu"),
    (GOOD_ENTRY.replace("results:", "results: [\n"), "not readable YAML"),
    (GOOD_ENTRY.replace("memory_protocol: global", "memory_protocol: [global]"), "memory_protocol ['global'] is not"),
    ("references: {}\n", "expected a non-empty list under 'references:'"),
    (GOOD_ENTRY + GOOD_ENTRY.removeprefix("references:\n"), "entry 2 ('X (published)'): a second entry of this label"),
])
def test_malformed_file_is_one_user_error_line(tmp_path, text, message):
    path = tmp_path / "references.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_references(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_good_file_loads(tmp_path):
    path = tmp_path / "references.yaml"
    path.write_text(GOOD_ENTRY, encoding="utf-8")
    row = load_references(path).iloc[0]
    assert (row["memory_protocol"], row["setting"], row["avg"], row["last"]) == ("global", "B0-10steps", 50.0, 40.0)
