"""Our training follows the DAFormer and DyTox releases' own trajectories, step by step.

tests/golden/ holds what `python -m bench.parity lockstep` recorded from the releases' code on
our initial weights and the same batches (their commits are in each file): per optimizer step
the loss, the gradient norm and a fingerprint of every parameter, the release's memory after
each task and its predictions on a test batch. Our learner replays it here, with no release
present (bench/parity/golden.py; the bounds and their reasons are its TOLERANCE).
"""
import pytest

from bench.parity import golden
from bench.parity.lockstep_command import golden_path

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = ("DAFormer-M", "DyTox")


@pytest.fixture(scope="module", params=METHODS)
def recorded(request):
    return golden.read(golden_path(request.param))


def test_golden_files_name_the_release_commits_that_produced_them(recorded):
    assert len(recorded["sources"]["release_commit"]) == 40
    assert recorded["steps"] and recorded["memories"] and recorded["predictions"]


def test_our_learner_replays_the_releases_trajectory(recorded):
    result = golden.replay(recorded)
    assert result["problems"] == []
    assert result["steps"] == len(recorded["steps"])
    assert all(result["worst"][k] <= bound for k, bound in golden.TOLERANCE.items())


@pytest.mark.parametrize("broken", [
    "distill.tau=2",  # the distillation temperature
    "finetune.lr=0.15",  # the balanced finetuning's learning rate
    "train.divergence_weight=0.11",  # the divergence head's weight
    "train.incremental_lr=0.21",  # the learning rate of the tasks after the first
    "train.asam_rho=2.5",  # ASAM's radius (DyTox: turns ASAM on)
])
def test_a_recipe_detail_broken_on_purpose_leaves_the_trajectory(recorded, broken):
    result = golden.replay(recorded, sets=(broken,))
    assert result["problems"], f"{broken} replayed within the bounds"
    assert result["worst"]["loss"] > 10 * golden.TOLERANCE["loss"]
