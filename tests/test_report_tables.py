"""The report's paper tables from results files with known numbers: the main table's layout, paired
comparisons, forgetting, accuracy after each step, validation, cost, the tidy CSV and the LaTeX article."""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from suite.report import build_report
from suite.report.__main__ import main
from suite.report.compare import difference_stats
from tests.fake_results import make_result, read, table_row, write_run

AVG_GAPS = [2.0, 3.0, 4.0, 5.0]  # DAFormer-M − DyTox in Avg over four paired runs
LAST_GAPS = [1.0, -1.0, 2.0, 0.0]  # and in Last


def t3_two_sided_p(t: float) -> float:
    """Student's t with 3 degrees of freedom in closed form: an oracle independent of scipy."""
    cdf = 0.5 + (t / (math.sqrt(3) * (1 + t * t / 3)) + math.atan(t / math.sqrt(3))) / math.pi
    return 2 * (1 - cdf)


def paired_sweep(root: Path, dataset: str = "cifar100") -> Path:
    """Four class orders of DyTox and DAFormer-M whose differences are AVG_GAPS and LAST_GAPS; one replay
    run (one pair only); a finetune run."""
    for k, (gap_avg, gap_last) in enumerate(zip(AVG_GAPS, LAST_GAPS)):
        common = {"dataset": dataset, "order": f"seed:{k}", "seed": k, "n_tasks": 5}
        write_run(root, f"dytox_{k}", make_result("dytox", avg=60 + k, last=50 + k, **common))
        write_run(root, f"daformer_m_{k}", make_result("daformer_m", avg=60 + k + gap_avg, last=50 + k + gap_last,
                                                       params=10_750_000, **common))
    write_run(root, "replay_0", make_result("replay", avg=55, last=45, order="seed:0", seed=0, n_tasks=5,
                                            dataset=dataset))
    write_run(root, "finetune_0", make_result("finetune", avg=30, last=15, order="seed:0", seed=0, n_tasks=5,
                                              dataset=dataset, memory_size=0))
    return root


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> Path:
    return build_report(paired_sweep(tmp_path_factory.mktemp("paired")))


# ---------------------------------------------------------------- comparisons

def test_joint_is_listed_as_an_upper_bound(tmp_path):
    """Joint training (one task): its Last, no Avg, never bold, never in the paired comparisons."""
    root = paired_sweep(tmp_path / "runs")
    for k in range(len(AVG_GAPS)):
        write_run(root, f"joint_{k}", make_result("joint", avg=90, last=90, order=f"seed:{k}", seed=k, n_tasks=5,
                                                  memory_size=0))
    report = build_report(root)
    main = read(report / "tables" / "main_cifar100.md")
    joint = table_row(main, "Joint")
    assert joint[2:4] == ["–", "90.00 ± 0.00"] and "**" not in joint[3]
    assert "Joint" not in read(report / "tables" / "comparisons_cifar100.md")
    assert "joint" not in set(pd.read_csv(report / "tables" / "comparisons_cifar100.csv")["method"])


def test_paired_difference_statistics():
    stats = difference_stats(pd.Series(AVG_GAPS).to_numpy() + 60, pd.Series([60.0] * 4).to_numpy())
    assert (stats["n"], stats["mean"], stats["std"]) == pytest.approx((4, 3.5, 1.2909944))
    assert stats["p"] == pytest.approx(t3_two_sided_p(3.5 / (1.2909944 / 2)), rel=1e-5)
    assert 2.0 <= stats["ci_low"] < 3.5 < stats["ci_high"] <= 5.0 and stats["verdict"] == "higher"
    again = difference_stats(pd.Series(AVG_GAPS).to_numpy() + 60, pd.Series([60.0] * 4).to_numpy())
    assert (again["ci_low"], again["ci_high"]) == (stats["ci_low"], stats["ci_high"])  # seeded bootstrap
    assert difference_stats(pd.Series([61.0, 62]).to_numpy(), pd.Series([60.0, 60]).to_numpy())["verdict"] == (
        "too few pairs (n = 2) to conclude")
    flat = difference_stats(pd.Series([61.0, 62, 63]).to_numpy(), pd.Series([60.0, 61, 62]).to_numpy())
    assert flat["verdict"] == "every pair differs by +1.00: no spread to test" and math.isnan(flat["p"])


def test_comparison_table(paired):
    table = read(paired / "tables" / "comparisons_cifar100.md")
    dytox = table_row(table, "DAFormer-M − DyTox")
    assert dytox[1:5] == ["5 steps", "4", "+3.50 ± 1.29", dytox[4]] and re.fullmatch(r"\[\+\d\.\d\d, \+\d\.\d\d\]",
                                                                                       dytox[4])
    assert dytox[5] == f"{t3_two_sided_p(3.5 / (1.2909944 / 2)):.3f}"
    assert (dytox[6], dytox[7], dytox[9], dytox[10]) == ("higher", "+0.50 ± 1.29", "0.495", "n.s.")
    few = "too few pairs (n = 1) to conclude"
    assert table_row(table, "DAFormer-M − Replay")[2:] == ["1", "+7.00", "–", "–", few, "+6.00", "–", "–", few]
    data = pd.read_csv(paired / "tables" / "comparisons_cifar100.csv")
    assert set(data["metric"]) == {"avg", "last"} and set(data["method"]) == {"dytox", "replay", "finetune"}


def test_main_table_marks_significant_cells(paired):
    table = read(paired / "tables" / "main_cifar100.md")
    dytox = table_row(table, "DyTox")
    assert dytox[2].endswith("†") and not dytox[3].endswith("†")  # Avg differs at p < 0.05, Last does not
    assert not any(cell.endswith("†") for cell in table_row(table, "Replay"))  # one pair: nothing concluded
    assert "†: DAFormer-M differs from this cell at p < 0.05" in table
    assert r"\textsuperscript{\dag}" in read(paired / "tables" / "main_cifar100.tex")


# ---------------------------------------------------------------- other tables

def test_main_table_layout(paired):
    table = read(paired / "tables" / "main_cifar100.md")
    assert "| Method | 5 steps #P | 5 steps Avg | 5 steps Last |" in table
    assert "over 1 to 4 runs a cell (n of each in the CSV)" in table  # n in the caption, not a column
    assert table_row(table, "DAFormer-M")[1:4] == ["10.75", "**65.00 ± 2.58**", "**52.00 ± 1.83**"]
    assert "top-5" not in table.splitlines()[2]


def test_top5_columns_on_imagenet_like_data(tmp_path):
    out = build_report(paired_sweep(tmp_path / "runs", dataset="tinyimagenet"), tmp_path / "out")
    table = read(out / "tables" / "main_tinyimagenet.md")
    assert "| Method | 5 steps #P | 5 steps Avg | 5 steps Last | 5 steps Avg top-5 | 5 steps Last top-5 |" in table
    # make_result's top-5 is top-1 + 20: DyTox's Avg over seeds 0..3 is 61.50, its Last 51.50
    assert table_row(table, "DyTox")[1:6] == ["10.73", "61.50 ± 1.29†", "51.50 ± 1.29", "81.50 ± 1.29",
                                              "71.50 ± 1.29"]


def test_forgetting_table(paired):
    table = read(paired / "tables" / "forgetting_cifar100.md")
    assert "| Method | 5 steps Forgetting | 5 steps BWT |" in table
    assert table_row(table, "DyTox")[1:] == ["**5.00 ± 0.00**", "**-5.00 ± 0.00**"]


def test_per_step_table(paired):
    table = read(paired / "tables" / "steps_cifar100_B0-5steps.md")
    assert "| Method | classes seen 20 | classes seen 40 | classes seen 60 | classes seen 80 | classes seen 100 |" in table
    # make_result: a linear curve from 2·avg − last to last; DAFormer-M's mean over the four runs
    first = [2 * (60 + k + g) - (50 + k + h) for k, (g, h) in enumerate(zip(AVG_GAPS, LAST_GAPS))]
    assert table_row(table, "DAFormer-M")[1] == f"**{sum(first) / 4:.2f} ± {pd.Series(first).std():.2f}**"
    assert table_row(table, "Finetune")[5] == "15.00"
    assert pd.read_csv(paired / "tables" / "steps_cifar100_B0-5steps.csv")["task"].tolist()[:5] == [1, 2, 3, 4, 5]


def test_cost_table(paired):
    table = read(paired / "tables" / "cost_cifar100.md")
    # make_result: 1 s a task, 5 tasks, world_size 2, on the cpu: 4 runs × 5 s × 2 workers = 40/3600 h
    assert table_row(table, "DyTox")[1:] == ["0.1", f"{40 / 3600:.3f}", "cpu × 2"]


def test_validation_table_only_with_a_validation_split(tmp_path, paired):
    assert not list((paired / "tables").glob("validation_*"))
    result = make_result(n_tasks=2, num_classes=4)
    result["validation"] = {"fraction": 0.1, "images": 40, "acc": [90.0, 70.0], "acc_top5": [100.0, 100.0],
                            "acc_matrix": [[90.0], [60.0, 80.0]], "avg_incremental_accuracy": 80.0,
                            "last_accuracy": 70.0}
    write_run(tmp_path, "run", result)
    table = read(build_report(tmp_path, tmp_path / "out") / "tables" / "validation_cifar100.md")
    assert "on the validation split" in table
    assert table_row(table, "DyTox")[1:] == ["80.00", "70.00", "70.00", "60.00"]  # one row: nothing to rank


def test_runs_table_memory_of_methods_without_memory(paired):
    runs = read(paired / "tables" / "runs.md")
    header = table_row(runs, "Run")
    assert dict(zip(header, table_row(runs, "finetune_0")))["Memory"] == "none"
    assert dict(zip(header, table_row(runs, "dytox_0")))["Memory"] == "2000"


def test_tidy_csv_round_trips_with_plain_strings_and_tasks_from_1(paired):
    tidy = pd.read_csv(paired / "results_tidy.csv")
    assert tidy["cfg.memory.selection"].eq("herding").all()  # not '"herding"'
    assert tidy["cfg.memory.size"].isin([2000, 0]).all()
    assert sorted(tidy["task"].unique()) == [1, 2, 3, 4, 5]
    second = tidy[(tidy["run"] == "dytox_0") & (tidy["task"] == 2)]
    assert json.loads(second["acc_row"].iloc[0]) == [60.0, 65.0]  # A[2][1], A[2][2] of make_result's matrix


def test_what_is_written_for_sharing_names_no_machine_path(tmp_path):
    """The summary names the results directory, not its path; the tidy CSV has no results-file path
    and no config column of absolute paths (make_result's data.path is /data/<seed>)."""
    root = paired_sweep(tmp_path / "runs")
    report = build_report(root)
    tidy = pd.read_csv(report / "results_tidy.csv")
    assert "path" not in tidy and "cfg.data.path" not in tidy and "cfg.memory.size" in tidy
    assert not any(str(tmp_path) in str(value) for value in tidy.to_numpy().ravel())
    page = read(report / "README.md")
    assert "runs under 'runs'" in page and str(tmp_path) not in page.split("## ")[1]


# ---------------------------------------------------------------- styles and LaTeX

def test_paper_style_leaves_out_the_per_run_sections(tmp_path, capsys):
    paired_sweep(tmp_path / "runs")
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "paper"), "--style", "paper"]) == 0
    page = read(tmp_path / "paper" / "README.md")
    assert "## Main results" in page and "## Paired comparisons with DAFormer-M" in page
    assert "## Runs" not in page and "## Class orders" not in page
    assert not (tmp_path / "paper" / "plots" / "heatmaps").exists()
    assert "Report style: paper" in page


LATEX_ALLOWED = re.compile(r"\\(?:begin|end|toprule|midrule|bottomrule|cmidrule|multicolumn|textbf|textsuperscript|"
                           r"dag|textasciitilde|textasciicircum|textbackslash|pm|Delta|times|[&%$#_{}])")


def check_tabular(tex: str) -> None:
    """A strict structural check of one tables/NAME.tex: one tabular, ASCII only, only known commands,
    balanced braces and math, as many cells in every row as the column spec has columns."""
    assert tex.isascii(), [char for char in tex if not char.isascii()][:5]
    body = [line for line in tex.splitlines() if not line.startswith("%")]
    text = "\n".join(body)
    assert text.count(r"\begin{tabular}") == 1 and text.count(r"\end{tabular}") == 1
    commands = re.findall(r"\\[A-Za-z]+|\\[&%$#_{}]", text)
    assert all(LATEX_ALLOWED.fullmatch(command) for command in commands), set(commands)
    unescaped = re.sub(r"\\[{}$&%#_]", "", text)
    assert unescaped.count("{") == unescaped.count("}") and unescaped.count("$") % 2 == 0
    columns = len(re.search(r"\\begin\{tabular\}\{([lr]+)\}", text)[1])
    for line in body:
        if line.endswith(r"\\"):
            spans = sum(int(n) for n in re.findall(r"\\multicolumn\{(\d+)\}", line))
            cells = re.sub(r"\\multicolumn\{\d+\}\{c\}\{[^}]*\}", "", line).count("&") + 1
            cells += spans - len(re.findall(r"\\multicolumn", line))
            assert cells == columns, line


def test_every_latex_table_is_well_formed(paired):
    tables = sorted((paired / "tables").glob("*.tex"))
    assert len(tables) > 8
    for path in tables:
        check_tabular(read(path))
    document = read(paired / "report.tex")
    assert document.count(r"\input{tables/") == len(tables)
    assert document.startswith(r"\documentclass") and document.rstrip().endswith(r"\end{document}")
    assert "one row per run and task:\n\n\\texttt{results\\_tidy.csv}\\par" in document  # the files the summary names


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex on this machine (the structural check "
                                                              "above still runs)")
def test_latex_article_compiles(paired, tmp_path):
    shutil.copytree(paired, tmp_path / "report")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
                          cwd=tmp_path / "report", capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "report" / "report.pdf").read_bytes()[:5] == b"%PDF-"
    assert "Undefined control sequence" not in proc.stdout and "Missing" not in proc.stdout


def test_titles_name_data_sets_as_papers_do(tmp_path):
    write_run(tmp_path, "tiny", make_result("dytox", dataset="tinyimagenet", n_tasks=5, num_classes=25))
    out = build_report(tmp_path)
    readme = read(out / "README.md")
    assert "**Tiny-ImageNet: average incremental" in readme and "**tinyimagenet:" not in readme
    assert (out / "tables" / "main_tinyimagenet.md").is_file()  # file names keep the key


def test_latex_keeps_each_table_with_its_title_and_floats_the_figures(paired):
    tex = read(paired / "report.tex")
    blocks = re.findall(r"\\begin\{minipage\}\{\\linewidth\}(.*?)\\end\{minipage\}", tex, flags=re.S)
    inputs = re.findall(r"\\input\{(tables/[^}]+)\}", tex)
    assert inputs and len(blocks) == len(inputs)  # one unbreakable block per table
    assert all(re.search(r"\\textbf\{.+\}.*\\input\{tables/", block, flags=re.S) for block in blocks)
    figures = re.findall(r"\\begin\{figure\}\[tbp\](.*?)\\end\{figure\}", tex, flags=re.S)
    assert figures and all("\\includegraphics" in figure for figure in figures)
    assert "\\begin{center}" not in tex


def test_the_paper_sweeps_report_is_dytox_table_one(tmp_path):
    """Results files as configs/sweeps/paper_cifar100.yaml's trials write them (every method of
    DyTox's CIFAR-100 table built here, 10 / 20 / 50 steps, 3 orders; the CNNs on DER's ResNet-18),
    plus joint: DyTox's Table 1 — the settings side by side with #P, Avg and Last, mean ± std over
    the orders, each re-run beside the published row of its protocol with Δ, the upper bound apart."""
    from suite.methods import METHODS

    cnn = ("icarl", "ucir", "wa", "bic", "podnet", "der", "foster")
    for method in ("daformer_m", "dytox", *cnn, "joint"):
        for steps in (10, 20, 50):
            for k, order in enumerate(("cifar100_order1", "cifar100_order2", "cifar100_order3")):
                tasks = 1 if method == "joint" else steps
                result = make_result(method=method, n_tasks=tasks, avg=60.0 + k, last=50.0 + k, order=order,
                                     params=11_220_000 if method in cnn else 10_730_000)
                result["setting"] = f"B0-{steps}steps"
                if method in cnn:
                    result["config"]["model"]["backbone"] = "cifar_resnet18"
                    result["label"] = METHODS[method].display_label(0.0)
                write_run(tmp_path / "runs", f"{method}-{steps}-{k}", result)
    table = read(build_report(tmp_path / "runs", tmp_path / "out", style="paper") / "tables" / "main_cifar100.md")
    assert "| Method | 10 steps #P | 10 steps Avg | 10 steps Last | 20 steps #P | 20 steps Avg | 20 steps Last | " \
           "50 steps #P | 50 steps Avg | 50 steps Last |" in table
    for method in cnn:
        label = METHODS[method].display_label(0.0)
        assert table_row(table, label)[2:4] == ["61.00 ± 1.00", "51.00 ± 1.00"], label
    for published, avg in (("UCIR", 58.66), ("PODNet", 58.03), ("WA", 69.46), ("DER w/o P", 75.36)):
        assert table_row(table, f"{published} (published)")[2].strip("*") == f"{avg:.2f}"  # the best in bold
        assert table_row(table, f"Δ {published} (re-run) − {published} (published)")[2] == f"{61 - avg:+.2f}"
    assert "| FOSTER (re-run) |" in table and "| Δ FOSTER" not in table  # no published row in DyTox's table
    assert table_row(table, "Joint")[2] == "–"  # an upper bound: no average incremental accuracy, as DyTox's


def test_the_imagenet_sweeps_report_is_dytoxs_imagenet_table(tmp_path):
    """Results files as configs/sweeps/imagenet100.yaml's trials write them: DyTox's ImageNet-100 table,
    top-1 and top-5 Avg and Last with #P, each CNN re-run beside its published row (iCaRL's, WA's and
    BiC's top-5 only) with Δ, DER's on its release's pre-activation ResNet-18."""
    from suite.methods import METHODS

    backbones = {"icarl": "resnet18", "wa": "resnet18", "bic": "resnet18", "der": "preact_resnet18"}
    for method in ("daformer_m", "dytox", *backbones):
        result = make_result(method=method, dataset="imagenet_subset", avg=70.0, last=60.0, order="imagenet100_order1",
                             params=11_180_000 if method in backbones else 10_730_000)
        if method in backbones:
            result["config"]["model"]["backbone"] = backbones[method]
            result["label"] = METHODS[method].display_label(0.0)
        write_run(tmp_path / "runs", method, result)
    table = read(build_report(tmp_path / "runs", tmp_path / "out", style="paper") / "tables" / "main_imagenet_subset.md")
    assert "| Method | 10 steps #P | 10 steps Avg | 10 steps Last | 10 steps Avg top-5 | 10 steps Last top-5 |" in table
    for published, top5_avg in (("iCaRL", 83.60), ("WA", 91.00), ("BiC", 90.60), ("DER w/o P", 93.23)):
        delta = table_row(table, f"Δ {published} (re-run) − {published} (published)")
        assert delta[4] == f"{90 - top5_avg:+.2f}", published  # ours: top-5 avg 70 + 20
    assert table_row(table, "Δ DER w/o P (re-run) − DER w/o P (published)")[2:4] == [f"{70 - 77.18:+.2f}",
                                                                                      f"{60 - 66.70:+.2f}"]
