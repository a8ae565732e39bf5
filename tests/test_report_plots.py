"""The report's figures, built from results files with known numbers (no Ray, no torch)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

from suite.methods import METHODS
from suite.report import plots
from suite.report.aggregate import AXES, curve_stats, finished_runs, runs_frame
from suite.report.history import load_history
from suite.report.load import load_results
from suite.report.step_tables import parameter_table
from tests.fake_results import make_result, write_run

STD_AT_100 = float(np.std([96, 99, 100], ddof=1))


def constant_result(method: str, acc: float, n_tasks: int, seed: int = 0, setting: str | None = None, **kwargs):
    """A finished run whose accuracy is `acc` after every task."""
    result = make_result(method, n_tasks=n_tasks, avg=acc, last=acc, seed=seed, num_classes=2 * n_tasks, **kwargs)
    if setting:
        result["setting"] = setting
    return result


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """cifar100 in three settings (DyTox at 96, 99, 100 %; one DAFormer-M run growing 1.6 %), digits in one."""
    root = tmp_path_factory.mktemp("results")
    for seed, acc in enumerate([96, 99, 100]):
        write_run(root, f"class_order-seed{seed}_method-dytox", constant_result("dytox", acc, 2, seed))
    grown = constant_result("daformer_m", 80, 2)
    grown["num_params"] = [10_000_000, 10_160_000]
    write_run(root, "daformer_m-order-null", grown)
    for seed, acc in enumerate([70, 74]):
        write_run(root, f"four/dytox_{seed}", constant_result("dytox", acc, 4, seed))
    write_run(root, "b50/dytox", constant_result("dytox", 60, 2, setting="B50-2steps"))
    write_run(root, "running", constant_result("daformer_m", 50, 4, seed=3, status="running", tasks_done=2))
    for seed in (0, 1):
        write_run(root, f"digits/finetune_{seed}", constant_result("finetune", 40 + seed, 5, seed, dataset="digits"))
    return root


@pytest.fixture(scope="module")
def tasks(results) -> pd.DataFrame:
    return load_results(results)


@pytest.fixture(scope="module")
def curves(tasks) -> pd.DataFrame:
    return curve_stats(tasks, finished_runs(runs_frame(tasks)))


def cifar(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["dataset"] == "cifar100"]


def line_of(ax, color) -> list:
    return [line for line in ax.lines if line.get_color() == color]


def band_heights(ax) -> list[tuple[float, float]]:
    """Each band's lowest and highest y."""
    return [(path.vertices[:, 1].min(), path.vertices[:, 1].max()) for band in ax.collections
            for path in band.get_paths()]


def assert_written(out_dir: Path, written: list[plots.Plot], stems: list[str]) -> None:
    assert [plot.stem for plot in written] == stems
    for stem in stems:
        png, pdf = (out_dir / f"{stem}.{fmt}" for fmt in plots.FORMATS)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, stem
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000, stem


# ---------------------------------------------------------------- accuracy

def test_setting_titles():
    assert plots.setting_title("B0-10steps") == "10 steps"
    assert plots.setting_title("B50-10steps") == "B50, 10 steps"
    assert plots.setting_title("B0-1steps") == "1 step"
    assert plots.setting_title("joint") == "joint"


def test_one_accuracy_figure_per_dataset(curves, tmp_path):
    written = plots.accuracy_curves(curves, tmp_path, "std")
    assert_written(tmp_path, written, ["plots/accuracy_cifar100", "plots/accuracy_digits"])
    assert "band: ± std over n runs" in written[0].caption


def test_accuracy_panels_per_setting_in_order_with_one_legend(curves):
    figure = plots.accuracy_figure(cifar(curves), "std")
    assert [ax.get_title() for ax in figure.axes] == ["2 steps", "4 steps", "B50, 2 steps"]
    assert all(ax.get_legend() is None for ax in figure.axes) and len(figure.legends) == 1
    legend = figure.legends[0]
    assert [text.get_text() for text in legend.get_texts()] == ["DyTox (n=1–3)", "DAFormer-M (n=1)"]
    assert legend.get_title().get_text() == "mean over runs; band: ± std over n runs"
    dytox = legend.legend_handles[0].get_color()
    assert all(len(line_of(ax, dytox)) == 1 for ax in figure.axes)  # one colour per label in every panel
    assert len({ax.get_ylim() for ax in figure.axes}) == 1 and figure.axes[0].get_ylim()[1] <= 100
    assert [list(ax.get_xticks()) for ax in figure.axes[:2]] == [[2, 4], [2, 4, 6, 8]]  # where each task ends


def test_a_method_has_its_records_colour_and_marker_in_every_figure(curves):
    """Two figures of different subsets (DAFormer-M alone; DyTox beside it) draw DAFormer-M alike:
    the colour and marker of its record, whatever its position among the figure's methods."""
    alone = plots.accuracy_figure(cifar(curves)[cifar(curves)["method"] == "daformer_m"], "std")
    both = plots.accuracy_figure(cifar(curves), "std")
    record = METHODS["daformer_m"]
    for figure in (alone, both):
        (line,) = [line for line in figure.axes[0].lines if line.get_label() != "_nolegend_"
                   and to_rgb(line.get_color()) == to_rgb(record.color)]
        assert line.get_marker() == record.marker
    dytox = [line for line in both.axes[0].lines if to_rgb(line.get_color()) == to_rgb(METHODS["dytox"].color)]
    assert dytox and dytox[0].get_marker() == METHODS["dytox"].marker
    assert line.get_zorder() > dytox[0].get_zorder()  # the headline drawn on top of the others


def test_variants_of_one_method_keep_its_colour_darker_each(curves):
    frame = pd.DataFrame({"method": ["daformer", "daformer", "dytox"], "label": ["K=1", "K=2", "DyTox"]})
    styles = plots.line_styles(frame)
    assert styles["K=1"]["color"] == pytest.approx(to_rgb(METHODS["daformer"].color))
    assert styles["K=2"]["color"] == pytest.approx(tuple(0.72 * c for c in to_rgb(METHODS["daformer"].color)))
    assert styles["K=1"]["linestyle"] != styles["K=2"]["linestyle"]
    assert styles["DyTox"]["color"] == pytest.approx(to_rgb(METHODS["dytox"].color))


def test_std_band_is_mean_plus_minus_std_clipped_at_100(curves):
    two_steps = plots.accuracy_figure(cifar(curves), "std").axes[0]
    mean = np.mean([96, 99, 100])
    assert band_heights(two_steps) == [pytest.approx((mean - STD_AT_100, 100.0))]  # mean + std is 100.4
    assert line_of(two_steps, two_steps.lines[0].get_color())[0].get_ydata() == pytest.approx([mean, mean])
    four_steps = plots.accuracy_figure(cifar(curves), "std").axes[1]
    assert band_heights(four_steps) == [pytest.approx((72 - np.sqrt(8), 72 + np.sqrt(8)))]


def test_minmax_band_and_no_band_for_a_single_run(curves):
    figure = plots.accuracy_figure(cifar(curves), "minmax")
    assert band_heights(figure.axes[0]) == [pytest.approx((96.0, 100.0))]  # DAFormer-M (one run): no band
    assert band_heights(figure.axes[2]) == []  # one DyTox run
    assert figure.legends[0].get_title().get_text() == "mean over runs; band: min–max over runs"


# ---------------------------------------------------------------- parameters

def test_parameter_table_gives_first_last_and_growth_per_setting(curves):
    table = parameter_table("cifar100", cifar(curves))
    assert table.header == ["Method"] + ["First", "Last", "Growth"] * 3
    rows = {row[0]: row[1:] for row in table.rows}
    assert table.groups[1][0] == "2 steps"
    assert rows["DAFormer-M"][:3] == ["10.000", "10.160", "+1.6 %"]
    assert rows["DyTox"][2] == "+0.0 %" and rows["DAFormer-M"][3:] == ["–"] * 6  # no run in the other settings
    assert table.bold == frozenset()  # nothing to rank


# ---------------------------------------------------------------- ablations

def test_ablation_bands_follow_the_choice(tmp_path):
    stats = pd.DataFrame({
        "dataset": "digits", "setting": "B0-5steps", "method": "daformer", "label": "DAFormer", "n": 2,
        "memory_mode": "total", "num_keys": [1, 5], "avg_mean": [60.0, 70.0], "avg_std": [1.0, 2.0],
        "avg_min": [59.0, 68.5], "avg_max": [61.0, 71.5], "last_mean": [50.0, 99.0], "last_std": [1.0, 3.0],
        "last_min": [49.0, 97.0], "last_max": [51.0, 100.0],
    })
    axis = next(axis for axis in AXES if axis.name == "num_keys")
    std = plots.ablation_figure(stats, axis, "std")
    assert band_heights(std.axes[0]) == [pytest.approx((59.0, 72.0))]
    assert band_heights(std.axes[1]) == [pytest.approx((49.0, 100.0))]  # 99 + 3 clipped
    assert band_heights(plots.ablation_figure(stats, axis, "minmax").axes[0]) == [pytest.approx((59.0, 71.5))]
    written = plots.ablation_curves(stats, axis, tmp_path, "std")
    assert_written(tmp_path, written, ["plots/ablation_num_keys_digits_B0-5steps"])


# ---------------------------------------------------------------- heat maps

def test_heat_map_titles_name_the_method_not_the_run_directory(tasks, tmp_path):
    dytox = tasks[tasks["run"] == "class_order-seed1_method-dytox"]
    title = plots.heat_map_figure(dytox).axes[0].get_title()
    assert title == "DyTox, cifar100 B0-2steps (2 steps)\nclass order cifar100_order1, seed 1"
    running = plots.heat_map_figure(tasks[tasks["run"] == "running"]).axes[0].get_title()
    assert running.endswith("seed 3, running") and running.startswith("DAFormer-M, ")
    b50 = plots.heat_map_figure(tasks[tasks["run"] == "b50/dytox"]).axes[0].get_title()
    assert "B50-2steps (B50, 2 steps)" in b50
    written = plots.heat_maps(tasks[tasks["run"].isin(["daformer_m-order-null", "running"])], tmp_path)
    assert_written(tmp_path, written, ["plots/heatmaps/daformer_m-order-null", "plots/heatmaps/running"])
    assert written[0].caption == "daformer_m-order-null: accuracy matrix"


# ---------------------------------------------------------------- training history

def epoch(task: int, phase: str, number: int, loss: float, lr: float = 1e-3) -> dict:
    return {"event": "epoch", "task": task, "phase": phase, "epoch": number, "epochs": 2, "loss": loss, "lr": lr,
            "img_per_s": 100.0, "seconds": 1.0, "time": 1e9}


def write_log(results_json: Path, records: list[dict], tail: str = "") -> None:
    lines = [json.dumps(record) for record in records]
    (results_json.parent / "log.jsonl").write_text("\n".join(lines) + "\n" + tail)


def resumed_log() -> list[dict]:
    """Three tasks of 2 epochs, finetuning from task 2; stopped after task 2's epoch 2, resumed from its
    checkpoint after epoch 1, epoch 2 logged again."""
    return [
        epoch(1, "train", 1, 3.0), epoch(1, "train", 2, 2.0), {"event": "task", "task": 1, "acc": 90.0},
        epoch(2, "train", 1, 2.5), {"event": "checkpoint", "task": 2, "phase": "train", "epochs_done": 1},
        epoch(2, "train", 2, 9.9), {"event": "resume", "next_task": 2, "phase": "train", "epochs_done": 1},
        epoch(2, "train", 2, 1.5), epoch(2, "finetune", 1, 1.0, 1e-4), epoch(2, "finetune", 2, 0.9, 1e-4),
        epoch(3, "train", 1, 2.2), epoch(3, "train", 2, 1.2), epoch(3, "finetune", 1, 0.8, 1e-4),
        epoch(3, "finetune", 2, 0.7, 1e-4),
    ]


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> pd.DataFrame:
    """Two DAFormer-M runs (one resumed, a half-written last line), a Finetune run (no finetuning),
    and a run with no log."""
    root = tmp_path_factory.mktemp("history")
    for seed in (0, 1):
        path = write_run(root, f"daformer_{seed}", constant_result("daformer_m", 80, 3, seed))
        write_log(path, resumed_log(), tail='{"event": "epoch", "task": 3, "pha' if seed == 0 else "")
    path = write_run(root, "finetune", constant_result("finetune", 50, 3))
    write_log(path, [epoch(task, "train", number, 1.0) for task in (1, 2, 3) for number in (1, 2)])
    write_run(root, "older", constant_result("dytox", 60, 3))
    return load_history(finished_runs(runs_frame(load_results(root))))


def test_history_keeps_the_last_record_after_a_resume_and_skips_a_broken_line(history):
    run = history[history["run"] == "daformer_0"]
    assert run["step"].tolist() == list(range(1, 11))
    assert list(zip(run["task"], run["phase"], run["epoch"]))[2:6] == [
        (2, "train", 1), (2, "train", 2), (2, "finetune", 1), (2, "finetune", 2)]
    assert run["loss"].tolist()[3] == 1.5  # the epoch logged again after the resume, not the lost one
    assert run[["label", "dataset", "setting", "method", "variant"]].drop_duplicates().values.tolist() == [
        ["DAFormer-M", "cifar100", "B0-3steps", "daformer_m", ""]]
    assert history.groupby("run").size().to_dict() == {"daformer_0": 10, "daformer_1": 10, "finetune": 6}


def test_no_log_no_history(tmp_path):
    write_run(tmp_path, "older", constant_result("dytox", 60, 2))
    history = load_history(finished_runs(runs_frame(load_results(tmp_path))))
    assert history.empty and {"run", "label", "step", "loss", "lr"} <= set(history.columns)
    assert plots.history_curves(history, tmp_path) == []


def test_history_figure_panels_task_boundaries_and_finetune_markers(history, tmp_path):
    figure = plots.history_figure(history)
    loss, lr = figure.axes
    assert (loss.get_ylabel(), lr.get_ylabel(), lr.get_yscale()) == ("training loss", "learning rate", "log")
    ends_at_zero = history.assign(lr=history["lr"].where(history["step"] != history["step"].max(), 0.0))
    assert plots.history_figure(ends_at_zero).axes[1].get_yscale() == "log"  # an lr of 0 does not flatten the rest
    for ax in figure.axes:
        boundaries = [line.get_xdata()[0] for line in ax.lines if line.get_label() == plots.TASK_BOUNDARY]
        assert boundaries == [2.5, 6.5]  # tasks 2 and 3 last 4 epochs, as long as DAFormer-M's
    segments = [line for line in loss.lines if line.get_label() != plots.TASK_BOUNDARY]
    daformer = segments[0].get_color()
    task_2 = [line for line in segments if line.get_color() == daformer and line.get_xdata()[0] in (3, 5)]
    main, tuned = task_2  # the main phase and its finetuning apart, not joined as one curve
    assert main.get_ydata().tolist() == [2.5, 1.5] and main.get_marker() == "None"  # the mean of both runs
    assert tuned.get_ydata().tolist() == [1.0, 0.9] and tuned.get_marker() == "o"
    finetune = [line for line in segments if line.get_color() != daformer]
    assert [line.get_xdata().tolist() for line in finetune] == [[1, 2], [3, 4], [7, 8]]
    written = plots.history_curves(history, tmp_path)
    assert_written(tmp_path, written, ["plots/history_cifar100_B0-3steps"])


def test_history_figure_shows_a_phase_of_one_epoch(tmp_path):
    path = write_run(tmp_path, "one", constant_result("daformer_m", 80, 2))
    write_log(path, [epoch(1, "train", 1, 2.0), epoch(2, "train", 1, 1.0), epoch(2, "finetune", 1, 0.5, 1e-4)])
    figure = plots.history_figure(load_history(finished_runs(runs_frame(load_results(tmp_path)))))
    segments = [line for line in figure.axes[0].lines if line.get_label() != plots.TASK_BOUNDARY]
    assert [(line.get_xdata().tolist(), line.get_marker()) for line in segments] == [
        ([1], "o"), ([2], "o"), ([3], "o")]  # each a single epoch, each visible
