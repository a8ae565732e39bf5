"""The attention memory estimate: its arithmetic, the warning, and the refusal before anything runs."""
import pytest

from suite import cli
from suite.config import load
from suite.errors import UserError
from suite.run import footprint

BIG = ["data.name=synthetic", "data.image_size=64", "data.num_classes=4", "data.train_per_class=2",
       "data.test_per_class=2", "scenario.increment=2", "model.patch_size=2", "model.num_heads=4",
       "model.embed_dim=16", "memory.size=4"]


def test_scores_grow_with_tokens_squared_and_with_keys():
    cfg = load([], BIG + ["method=daformer_m", "train.batch_size=8", "train.eval_batch_size=16"])
    tokens = (64 // 2) ** 2
    encoder, dual = 16 * 4 * tokens * tokens, 16 * 4 * tokens * 2 * tokens  # 2 tasks: 2 keys
    assert footprint.score_elements(cfg, 64, 2, 16) == [encoder] * cfg.model.depth + [dual]
    need = footprint.estimate(cfg, 64, 2)
    assert need.least == dual * 4 and need.eval == 2 * dual * 4 and need.batch == "train.eval_batch_size"
    assert need.train == 2 * 4 * sum(footprint.score_elements(cfg, 64, 2, 8))
    replay = load([], BIG + ["method=replay", "train.eval_batch_size=16"])
    assert footprint.score_elements(replay, 64, 2, 16)[-1] == encoder  # one self-attention block, no keys


def test_near_the_limit_warns_and_beyond_it_refuses_with_the_fix():
    cfg = load([], BIG + ["method=daformer_m", "train.batch_size=8", "train.eval_batch_size=16"])
    need = footprint.estimate(cfg, 64, 2)
    assert footprint.check(cfg, 64, 2, 10 * need.likely, "this machine") is None
    warning = footprint.check(cfg, 64, 2, need.likely, "this machine")
    assert warning.startswith("warning:") and "model.patch_size (now 2)" in warning
    with pytest.raises(UserError, match=r"cannot fit; use a larger model.patch_size \(now 2\), a smaller "
                                        r"train.eval_batch_size \(now 16\)"):
        footprint.check(cfg, 64, 2, need.least - 1, "this machine")


def test_a_run_that_cannot_fit_is_refused_before_it_starts(tmp_path, capsys):
    sets = [a for s in BIG + ["train.eval_batch_size=100000"] for a in ("--set", s)]
    code = cli.main(["--in-process", "--output-basedir", str(tmp_path), *sets])
    err = capsys.readouterr().err
    assert code == 2 and "cannot fit" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written
