"""The quickstart's numbers for every method stay what they were (tests/golden/quickstart.json).

A change to the learner or the method seam that is meant to change no number must leave, at a
fixed seed, each method's accuracy matrix, memory sizes and per-epoch losses of the quickstart
(at one epoch a phase) as recorded. A change that is meant to change them rewrites the file on
purpose, and says why in its commit:

    python -m tests.test_quickstart_matrices --write
"""
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from suite.config import load
from suite.learner.learner import Learner
from tests.conftest import data_of

GOLDEN = Path(__file__).parent / "golden" / "quickstart.json"
QUICKSTART = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")
SHORT = ["train.epochs=1", "finetune.epochs=1"]
METHODS = ("finetune", "replay", "dytox", "daformer_s", "daformer_m", "daformer", "joint")
LOSS_RTOL = 1e-5  # float sums may round differently from one CPU kernel to another; no more

pytestmark = pytest.mark.usefixtures("one_thread")


def quickstart_numbers(method: str) -> dict:
    """One quickstart run of `method` at one epoch a phase, in this process: what it measured."""
    cfg = load([QUICKSTART], [f"method={method}", *SHORT])
    data, scenario = data_of(cfg)
    losses = []
    learner = Learner(cfg, data, scenario, log=lambda line: None,
                      on_epoch_end=lambda record: losses.append([record["phase"], record["loss"]]))
    history = learner.run()
    return {"acc_matrix": history.acc_matrix, "memory_size": history.memory_size,
            "num_params": history.num_params, "losses": losses}


@pytest.mark.parametrize("method", METHODS)
def test_quickstart_numbers_are_unchanged(method):
    expected = json.loads(GOLDEN.read_text())[method]
    got = quickstart_numbers(method)
    assert got["acc_matrix"] == expected["acc_matrix"]
    assert got["memory_size"] == expected["memory_size"]
    assert got["num_params"] == expected["num_params"]
    assert [phase for phase, _ in got["losses"]] == [phase for phase, _ in expected["losses"]]
    for (_, loss), (_, want) in zip(got["losses"], expected["losses"]):
        assert math.isclose(loss, want, rel_tol=LOSS_RTOL), (loss, want)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    torch.set_num_threads(1)
    GOLDEN.write_text(json.dumps({m: quickstart_numbers(m) for m in METHODS}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
