"""Config: YAML layering, --set overrides, and one clear error per kind of mistake."""
import pytest

from suite import config
from suite.errors import UserError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_have_descriptions():
    keys = config.all_keys()
    assert "memory.size" in keys and "model.num_keys" in keys and "ray.num_workers" in keys
    assert all(f.metadata["help"] for f in keys.values())
    assert "memory.size" in config.describe()


def test_files_layer_left_to_right_then_set(tmp_path):
    a = write(tmp_path, "a.yaml", "memory: {size: 500}\ntrain: {epochs: 3}\n")
    b = write(tmp_path, "b.yaml", "memory: {size: 800}\n")
    cfg = config.load([a, b], ["train.epochs=7"], {"data.path": "/x"})
    assert cfg.memory.size == 800  # b over a
    assert cfg.train.epochs == 7  # --set over files
    assert cfg.data.path == "/x"
    assert cfg.train.batch_size == config.TrainConfig().batch_size  # untouched default


def test_set_parses_yaml_values():
    cfg = config.load([], ["scenario.class_order=[2, 0, 1]", "ray.use_gpu=true", "train.lr=1e-3"])
    assert cfg.scenario.class_order == [2, 0, 1]
    assert cfg.ray.use_gpu is True
    assert cfg.train.lr == pytest.approx(1e-3)


@pytest.mark.parametrize("text, expected", [
    ("memroy: {size: 5}\n", "unknown config key 'memroy'; did you mean 'memory'?"),
    ("memory: {sise: 5}\n", "unknown config key 'memory.sise'; did you mean 'memory.size'?"),
    ("memory: {size: lots}\n", "'memory.size' = 'lots' has the wrong type; expected int"),
    ("memory: {size: -1}\n", "'memory.size' = -1 is too small; expected at least 0"),
    ("train: {batch_size: 0}\n", "'train.batch_size' = 0 is too small"),
    ("method: daformr\n", "'method' = 'daformr' is not one of"),
    ("memory: 5\n", "'memory' is a section"),
    ("train: {epochs: 2.5}\n", "'train.epochs' = 2.5 has the wrong type; expected int"),
    ("ray: {use_gpu: 1}\n", "'ray.use_gpu' = 1 has the wrong type; expected bool"),
    ("[1, 2]\n", "must hold a mapping"),
    ("a: [1\n", "is not valid YAML"),
])
def test_bad_files_name_the_key(tmp_path, text, expected):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(UserError) as info:
        config.load([path])
    assert expected in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_set_items():
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        config.load([], ["memory.size"])
    with pytest.raises(UserError, match="did you mean 'memory.size'"):
        config.load([], ["memory.sizes=3"])


def test_missing_file():
    with pytest.raises(UserError, match="does not exist"):
        config.load(["/nonexistent/x.yaml"])


def test_key_policy_is_read_from_the_metadata():
    """The CLI's flags, what a resume may change and what tells report variants apart: one place."""
    assert config.flags() == {"data.path": "--data-path", "memory.size": "--memory-size",
                              "output.basedir": "--output-basedir", "output.name": "--name", "seed": "--seed",
                              "scenario.increment": "--increment", "scenario.initial_increment": "--initial-increment",
                              "train.epochs": "--epochs", "train.batch_size": "--batch-size", "train.lr": "--lr",
                              "train.incremental_lr": "--incremental-lr"}
    may_differ = set(config.keys_where("resume", "may differ"))
    assert {"output.basedir", "output.name", "output.storage_path", "ray.num_workers", "data.path"} <= may_differ
    assert not may_differ & {"method", "seed", "memory.size", "train.lr", "model.num_keys", "scenario.class_order"}
    variants = set(config.keys_where("variant", True))
    assert {"memory.size", "train.lr", "model.num_keys", "ray.num_workers"} <= variants
    assert not variants & {"method", "seed", "data.name", "scenario.class_order", "output.name", "ray.use_gpu"}


def test_a_resume_may_change_where_a_run_executes_but_not_what_it_computes():
    from suite.run.checkpoints import differing_keys

    stored = config.Config().to_dict()
    moved = config.load([], ["data.path=/elsewhere", "ray.num_workers=4", "output.name=x", "train.eval_batch_size=8"])
    assert differing_keys(stored, moved) == []
    changed = config.load([], ["memory.size=500", "data.path=/elsewhere", "train.lr=0.1"])
    assert differing_keys(stored, changed) == ["memory.size", "train.lr"]
