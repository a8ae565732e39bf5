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


def test_a_by_method_section_applies_to_its_method_only_and_the_command_line_still_wins(tmp_path):
    write(tmp_path, "base.yaml", "train: {lr: 0.05, epochs: 3}\nby_method:\n  podnet: {train: {optimizer: sgd, "
                                        "lr: 0.1}}\n")
    top = write(tmp_path, "top.yaml", "include: base.yaml\ntrain: {epochs: 4}\n")
    plain = config.load([top], ["method=icarl"])
    assert (plain.train.optimizer, plain.train.lr, plain.train.epochs) == ("adamw", 0.05, 4)
    podnet = config.load([top], ["method=podnet"])
    assert (podnet.train.optimizer, podnet.train.lr, podnet.train.epochs) == ("sgd", 0.1, 4)
    typed = config.load([top], ["method=podnet", "train.lr=0.2"])
    assert (typed.train.optimizer, typed.train.lr) == ("sgd", 0.2)
    later = write(tmp_path, "later.yaml", "method: podnet\ntrain: {lr: 0.3}\n")
    recipe = config.load([top, later])  # a later file's own keys beat an earlier file's section
    assert (recipe.train.optimizer, recipe.train.lr) == ("sgd", 0.3)


@pytest.mark.parametrize("section, expected", [
    ("by_method: {podnit: {train: {lr: 1}}}", "'by_method.podnit' names no method; expected one of"),
    ("by_method: {podnet: {method: wa}}", "'by_method.podnet' may not set 'method'"),
    ("by_method: {podnet: {train: {lrr: 1}}}", "unknown config key 'train.lrr'"),
    ("by_method: [podnet]", "'by_method' must map method names to keys"),
])
def test_a_bad_by_method_section_is_refused_naming_it(tmp_path, section, expected):
    path = write(tmp_path, "c.yaml", section + "\n")
    with pytest.raises(UserError, match=expected.replace("(", r"\(").replace(")", r"\)")) as err:
        config.load([path], ["method=icarl"])  # refused whatever the run's method
    assert str(path) in str(err.value)


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
