"""Typed run configuration: YAML files layered left to right, then `--set key.path=value`.

Every key has a default and a one-line description (`describe()` lists them). Anything a user
can get wrong is checked here, at the edge, and raised as `UserError` naming the key.

A key's metadata also carries its policy, the one place the rest of the suite reads it from:
`flag` (the command-line flag that sets it), `resume` ("may differ": a resumed run may change it,
as it says where or how the run executes, not what it computes) and `variant` (false: the report
never tells two runs apart by it, because it has a column of its own or does not change results).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from suite.datasets import DATASETS
from suite.errors import UserError
from suite.methods import BACKBONES, METHODS
from suite.report_options import BANDS, DEFAULT_BAND, DEFAULT_STYLE, STYLES

RELEASE_AUTO_AUGMENT = "rand-m9-mstd0.5-inc1"  # timm policy of the DAFormer and DyTox releases
PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TRACKERS = ("tensorboard", "mlflow", "wandb")  # suite/run/trackers.py has one class for each


NAME_LIMIT = 120  # characters of a run or sweep name: a directory, and part of Ray Train's paths below it


def name_problem(name: str) -> str | None:
    """What is wrong with a run or sweep name (one directory under the output base), or None."""
    if not name.strip():
        return "is empty"
    if "/" in name or "\\" in name or ".." in name or name.startswith("."):
        return "would leave its directory under the output base (a path separator, '..' or a leading '.')"
    if len(name) > NAME_LIMIT:
        return f"is {len(name)} characters long; at most {NAME_LIMIT}"
    if not name.isprintable():
        return "holds a control character"
    return None


def _key(default, help, choices=None, minimum=None, maximum=None, flag=None, resume="must match", variant=True,
         check=None):
    """A config field: its default, a one-line description, its allowed range, its policy, and `check`
    (value -> what is wrong with it, or None) for what a range cannot say."""
    meta = {"help": help, "choices": choices, "min": minimum, "max": maximum, "flag": flag, "resume": resume,
            "variant": variant, "check": check}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    name: str = _key("digits", "data set", choices=DATASETS, variant=False)
    path: Optional[str] = _key(None, "directory holding the data set (not needed for digits, synthetic)",
                               flag="--data-path", resume="may differ", variant=False)
    num_classes: int = _key(10, "synthetic only: number of classes", minimum=2)
    image_size: int = _key(16, "synthetic only: image side in pixels", minimum=4)
    train_per_class: int = _key(100, "synthetic only: training images per class", minimum=1)
    test_per_class: int = _key(20, "synthetic only: test images per class", minimum=1)
    max_classes: Optional[int] = _key(None, "keep only the data set's first N classes (labels 0..N-1); null: all",
                                      minimum=2)
    input_size: Optional[int] = _key(None, "resize images to this side (default: the data set's own)", minimum=4)
    augment: bool = _key(True, "random crop + flip on training images")
    auto_augment: Optional[str] = _key(RELEASE_AUTO_AUGMENT, "timm augmentation policy on training images, e.g. "
                                       "'rand-m9-mstd0.5-inc1' (the releases'); null: off")
    color_jitter: float = _key(0.0, "random brightness change up to this factor on training images (PyCIL's CIFAR "
                               "recipe: 63/255; 0: off)", minimum=0.0)
    repeated_augmentation: int = _key(3, "repeated augmentation: each image this many times per epoch, on different "
                                      "workers or in one batch (the releases: 3; 1: off)", minimum=1)
    num_workers: int = _key(0, "data-loader worker processes per training worker", minimum=0, resume="may differ",
                            variant=False)
    validation_fraction: float = _key(0.0, "hold out this fraction of each class's training images (at least one), "
                                      "chosen by the seed, to evaluate after every task (0: off, the published "
                                      "protocol)", minimum=0.0, maximum=0.5)


@dataclass
class ScenarioConfig:
    increment: int = _key(2, "classes per task", minimum=1, flag="--increment")
    initial_increment: int = _key(0, "classes in the first task (0: same as increment; e.g. 50 for B50)", minimum=0,
                                  flag="--initial-increment")
    class_order: Any = _key(None, "class order: a list of class ids, an order file name in configs/orders, or 'seed:N'",
                            variant=False)


@dataclass
class ModelConfig:
    embed_dim: int = _key(64, "token width C", minimum=8)
    depth: int = _key(2, "ConViT (GPSA) blocks in the shared encoder", minimum=1)
    num_heads: int = _key(4, "attention heads", minimum=1)
    patch_size: int = _key(2, "patch side in pixels", minimum=1)
    mlp_ratio: float = _key(4.0, "MLP hidden width / embed_dim", minimum=0.5)
    drop_path: float = _key(0.0, "stochastic depth, linear over all blocks", minimum=0.0, maximum=1.0)
    num_keys: Optional[int] = _key(None, "external keys K (daformer only; default: one per task)", minimum=1)
    out_proj: bool = _key(False, "apply the dual block's output projection (the release builds it and never "
                          "applies it; true is our ablation)")
    task_token_init: str = _key("random", "DyTox's new task token: random (trunc_normal std 0.02, the release) or "
                                "copy (the previous task's token)", choices=("random", "copy"))
    locality_strength: float = _key(1.0, "GPSA locality strength", minimum=0.0)
    backbone: str = _key("cifar_resnet32", "the CNN methods' backbone (suite/methods.py BACKBONES says which is whose)",
                         choices=tuple(BACKBONES))
    proxies: int = _key(10, "podnet: weights per class of the local similarity classifier (PODNet: 10)", minimum=1)


@dataclass
class MemoryConfig:
    size: int = _key(2000, "rehearsal memory: total exemplars (fixed-total budget)", minimum=0, flag="--memory-size")
    per_class: Optional[int] = _key(None, "exemplars per class instead of a fixed total", minimum=1)
    selection: str = _key("herding", "exemplar selection: herding (iCaRL's loop, as the DyTox and DAFormer releases "
                          "run it), herding_greedy (without revisiting a sample, as PyCIL), or random",
                          choices=("herding", "herding_greedy", "random"))
    per_worker: bool = _key(False, "reproduce DyTox's per-GPU memory (budget × workers); never the default")
    means_second_view: str = _key("none", "the nearest-mean classifier's class means also average a second view "
                                  "of every exemplar: none (PyCIL), mirror (flipped left to right, PODNet's release), "
                                  "or reversed_channels (its colour channels in reverse order, before normalisation: "
                                  "UCIR's CIFAR release, whose 'flipped' copy reverses the last axis of HWC images)",
                                  choices=("none", "mirror", "reversed_channels"))
    herding_images: str = _key("clean", "images herding ranks: clean (the test transform, as iCaRL) or augmented "
                               "(one pass of the training transform, as the DyTox and DAFormer releases)",
                               choices=("clean", "augmented"))


@dataclass
class TrainConfig:
    epochs: int = _key(5, "main-phase epochs per task", minimum=1, flag="--epochs")
    batch_size: int = _key(64, "batch size per worker", minimum=1, flag="--batch-size")
    lr: float = _key(5e-4, "base learning rate, scaled by global batch / 512", minimum=0.0, flag="--lr")
    incremental_lr: Optional[float] = _key(None, "base learning rate of every task after the first, scaled "
                                           "like lr (the releases' incremental_lr); null: lr", minimum=0.0,
                                           flag="--incremental-lr")
    min_lr: float = _key(1e-5, "cosine schedule floor", minimum=0.0)
    weight_decay: float = _key(1e-6, "weight decay (AdamW: not on biases and norms, as timm gives the releases; "
                               "SGD: on every parameter, as PyCIL)", minimum=0.0)
    warmup_epochs: int = _key(0, "linear warm-up epochs per task", minimum=0)
    optimizer: str = _key("adamw", "adamw (the releases') or sgd (with train.momentum: the CNN baselines')",
                          choices=("adamw", "sgd"))
    momentum: float = _key(0.9, "SGD momentum", minimum=0.0, maximum=1.0)
    schedule: str = _key("cosine", "learning-rate schedule per task: cosine (to train.min_lr, stepped per batch), "
                         "cosine_epoch (the same stepped once per epoch, as PyCIL) or multistep (x train.lr_decay "
                         "at train.milestones)", choices=("cosine", "cosine_epoch", "multistep"))
    milestones: list[int] = _key([], "multistep: the epochs of the first task at which the lr decays, "
                                "counted from the warm-up's end (as DER's release)")
    lr_decay: float = _key(0.1, "multistep: the factor at each milestone", minimum=0.0)
    scale_lr: bool = _key(True, "scale lr by global batch / 512, as the releases do (PyCIL: false)")
    incremental_epochs: Optional[int] = _key(None, "main-phase epochs of every task after the first; null: epochs",
                                             minimum=1)
    incremental_milestones: Optional[list[int]] = _key(None, "multistep milestones of every task after the first; "
                                                       "null: milestones")
    incremental_weight_decay: Optional[float] = _key(None, "weight decay of every task after the first; null: "
                                                     "weight_decay", minimum=0.0)
    nonnegative_classifier: bool = _key(False, "wa: clamp the classifier's parameters at 0 or more after every "
                                        "step (DER's release; PyCIL does not)")
    loss: str = _key("bce", "classification loss: soft-target BCE or cross-entropy", choices=("bce", "ce"))
    mixup: float = _key(0.0, "MixUp alpha (0: off)", minimum=0.0)
    label_smoothing: float = _key(0.0, "label smoothing", minimum=0.0, maximum=1.0)
    divergence_weight: float = _key(0.1, "weight of the divergence-head loss", minimum=0.0)
    asam_rho: float = _key(0.0, "ASAM radius from task 1 on (0: off; paper 3.0)", minimum=0.0)
    asam_eta: float = _key(0.0, "ASAM's eta added to |w| in the adaptive scale (the release: 0, so zero weights "
                           "are never perturbed; Kwon et al.: 0.01)", minimum=0.0)
    clip_grad: Optional[float] = _key(None, "gradient-norm clip", minimum=0.0)
    precision: str = _key("auto", "autocast: auto (bf16 where fast), bf16, fp32", choices=("auto", "bf16", "fp32"))
    eval_batch_size: int = _key(256, "evaluation and feature-extraction batch size", minimum=1, resume="may differ",
                                variant=False)
    drop_last: bool = _key(True, "drop each epoch's last, partial batch (as the DyTox and DAFormer releases; PyCIL "
                           "keeps it: its protocol's presets set false)")
    channels_last: bool = _key(False, "images and convolution weights in channels-last memory format (faster for "
                               "the CNN baselines' ResNets; reports/perf/pycil_speed.md)")
    compile: bool = _key(False, "torch.compile the training forward (recompiles as tasks add keys; "
                         "see the README's Performance section for when it pays)")
    skip_nonfinite: bool = _key(False, "skip batches whose loss is NaN/inf (counted in results.json) "
                                "instead of stopping the run")
    checkpoint_every: int = _key(0, "also checkpoint every N epochs inside a task, for pre-emptible machines "
                                 "(0: at task ends only)", minimum=0, resume="may differ", variant=False)
    progress_every: float = _key(60.0, "seconds between progress lines inside a long epoch (0: one line per "
                                 "epoch only)", minimum=0.0, resume="may differ", variant=False)


@dataclass
class FinetuneConfig:
    epochs: int = _key(2, "balanced finetuning epochs per task (0: off)", minimum=0)
    lr: float = _key(5e-5, "balanced finetuning constant learning rate, scaled by global batch / 512", minimum=0.0)
    mixup: bool = _key(True, "keep the recipe's MixUp (train.mixup) in finetuning, as the releases do")
    shuffle: bool = _key(True, "shuffle finetuning batches (false reproduces the release)")
    milestones: list[int] = _key([], "finetuning lr x train.lr_decay after these epochs (empty: a constant lr; DER's "
                            "classifier retraining: [15])")
    temperature: float = _key(1.0, "finetuning divides the logits by this in its loss (DER's classifier "
                              "retraining: 5)", minimum=1e-6)
    retrain_classifier: bool = _key(False, "der only: the DER release's classifier handling, in place of PyCIL's: "
                                    "built afresh each task, reset after the warm-up, and retrained as finetuning "
                                    "(re-initialised, trained alone on a class-balanced subset) instead of weight "
                                    "aligning")


@dataclass
class DistillConfig:
    tau: float = _key(1.0, "temperature of the logit distillation", minimum=1e-6)
    kd_reduction: str = _key("mean", "KL averaged per logit as in the DyTox/DAFormer release ('mean' = "
                             "per-sample KL / old classes) or per sample ('batchmean')", choices=("mean", "batchmean"))
    knn_k: int = _key(5, "neighbours per sample in KNN-invariant distillation", minimum=1)
    knn_temperature: float = _key(0.1, "temperature of the neighbourhood softmax", minimum=1e-6)
    knn_weight: float = _key(0.0, "weight beta of our KNN-invariant distillation (0: off, as in the releases; "
                             "daformer methods only)", minimum=0.0)
    foster_beta1: float = _key(0.96, "foster: the boosting's logit adjustment, class weights (1 - beta) / (1 - "
                               "beta^images of the class), normalised (PyCIL: 0.96)", minimum=0.0, maximum=0.9999)
    foster_beta2: float = _key(0.97, "foster: the compression's class weights, likewise (PyCIL: 0.97)", minimum=0.0,
                               maximum=0.9999)
    compress_epochs: Optional[int] = _key(None, "foster: epochs of each task's compression into one backbone (PyCIL: "
                                          "130); null: the main phase's", minimum=1)
    compress_lr: Optional[float] = _key(None, "foster: the compression's lr, on a cosine stepped per epoch, without "
                                        "weight decay (as PyCIL); null: the main phase's", minimum=0.0)
    pod_flat: float = _key(1.0, "podnet: weight of the features' distillation, POD-flat (PyCIL and the release: 1)",
                           minimum=0.0)
    less_forget: float = _key(5.0, "ucir: base weight of the less-forget constraint, times sqrt(old / new classes) "
                              "(UCIR: 5 on CIFAR, 10 on ImageNet)", minimum=0.0)
    pod_spatial: float = _key(5.0, "podnet: weight of the stage outputs' distillation, POD-spatial (PyCIL: 5; the "
                              "release's CNN results: 3)", minimum=0.0)


@dataclass
class RayConfig:
    num_workers: int = _key(1, "Ray Train workers (data-parallel)", minimum=1, resume="may differ")
    use_gpu: bool = _key(False, "train on GPUs", resume="may differ", variant=False)
    cpus_per_worker: Optional[float] = _key(None, "CPUs per worker, fractions allowed (default: the cluster's "
                                                  "CPUs shared out among the workers; a GPU node's CPUs per GPU for "
                                                  "GPU workers)", minimum=0.01,
                                            resume="may differ", variant=False)
    gpus_per_worker: float = _key(1.0, "GPUs per worker when use_gpu (fractions share a GPU)", minimum=0.0,
                                  resume="may differ", variant=False)
    max_failures: int = _key(2, "worker failures survived per run", minimum=0, resume="may differ", variant=False)
    placement_strategy: str = _key("PACK", "how workers spread over nodes (Ray's placement strategies; SPREAD: "
                                   "one per node where it can)", choices=PLACEMENT_STRATEGIES, resume="may differ",
                                   variant=False)
    log_level: str = _key("WARNING", "level of Ray Train's own log lines (INFO: its per-task lines too)",
                          choices=LOG_LEVELS, resume="may differ", variant=False)


@dataclass
class LoggingConfig:
    backend: list[str] = _key([], "experiment trackers fed from rank 0, several allowed: tensorboard, mlflow, "
                              "wandb ([] or 'none': only log.jsonl and train.log)", choices=TRACKERS,
                              resume="may differ", variant=False)


@dataclass
class ReportConfig:
    at_end: bool = _key(True, "build the run's (or sweep's) report when it ends; false: results.json (and the "
                        "sweep's summary.csv) only, for runs reported together later (python -m suite.report)",
                        resume="may differ", variant=False)
    style: str = _key(DEFAULT_STYLE, "the report a run or sweep ends with: full (every table, plot and run) or "
                      "paper (what a paper prints)", choices=tuple(STYLES), resume="may differ", variant=False)
    band: str = _key(DEFAULT_BAND, "the spread the report's plots shade: std (mean ± sample std over runs) or "
                     "minmax", choices=tuple(BANDS), resume="may differ", variant=False)


@dataclass
class OutputConfig:
    basedir: str = _key("runs", "base directory of runs (a run writes to basedir/name)", flag="--output-basedir",
                        resume="may differ", variant=False)
    name: Optional[str] = _key(None, "run name, a directory under basedir (default: config file stem + method)",
                               flag="--name", resume="may differ", variant=False, check=name_problem)
    storage_path: Optional[str] = _key(None, "where results.json and checkpoints persist: a directory every node "
                                             "mounts, or a URI (s3://, gs://, file://); default: basedir",
                                       resume="may differ", variant=False)


@dataclass
class Config:
    method: str = _key("daformer_m", "method", choices=METHODS, variant=False)
    seed: int = _key(0, "random seed", minimum=0, variant=False, flag="--seed")
    data: DataConfig = field(default_factory=DataConfig)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- key catalogue

def _is_section(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _fields(cls) -> dict[str, dataclasses.Field]:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        f.type = hints[f.name]
        out[f.name] = f
    return out


def all_keys(cls=Config, prefix="") -> dict[str, dataclasses.Field]:
    """Every leaf key as a dotted path, e.g. 'memory.size'."""
    keys = {}
    for name, f in _fields(cls).items():
        if _is_section(f.type):
            keys.update(all_keys(f.type, prefix + name + "."))
        else:
            keys[prefix + name] = f
    return keys


def keys_where(policy: str, value) -> tuple[str, ...]:
    """The dotted keys whose metadata `policy` is `value`, e.g. keys_where("resume", "may differ")."""
    return tuple(key for key, f in all_keys().items() if f.metadata[policy] == value)


def flags() -> dict[str, str]:
    """Config key -> the command-line flag that sets it."""
    return {key: f.metadata["flag"] for key, f in all_keys().items() if f.metadata["flag"]}


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config dict (as to_dict() gives) -> {"dotted.key": leaf value}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def describe() -> str:
    """One line per key: name, default, description, its flag and whether a resume may change it."""
    lines = []
    for key, f in all_keys().items():
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        flag = f" ({f.metadata['flag']})" if f.metadata["flag"] else ""
        resume = " [resume may change]" if f.metadata["resume"] == "may differ" else ""
        lines.append(f"{key:28s} {default!r:14s} {f.metadata['help']}{flag}{resume}")
    return "\n".join(lines)


def unknown_key_error(key: str, where: str) -> UserError:
    close = difflib.get_close_matches(key, list(all_keys()) + list(_fields(Config)), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else "; run with --help-keys for the list"
    return UserError(f"{where}: unknown config key '{key}'{hint}")


# ---------------------------------------------------------------- coercion

def _coerce(key: str, value: Any, f: dataclasses.Field, where: str) -> Any:
    tp = f.type
    optional = False
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        tp = args[0]
    if value is None:
        if optional or tp is Any:
            return None
        raise UserError(f"{where}: '{key}' must not be empty; expected {tp.__name__}")
    if tp is Any:
        return value
    if typing.get_origin(tp) is list and typing.get_args(tp) == (int,):
        return _coerce_int_list(key, value, where)
    if typing.get_origin(tp) is list:
        return _coerce_list(key, value, f, where)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise UserError(f"{where}: '{key}' = {value!r} has the wrong type; expected {tp.__name__}")
    value = tp(value)
    if tp is float and not math.isfinite(value):
        raise UserError(f"{where}: '{key}' = {value} is not a finite number; expected a real value")
    meta = f.metadata
    if meta["choices"] and value not in meta["choices"]:
        raise UserError(f"{where}: '{key}' = {value!r} is not one of {', '.join(meta['choices'])}")
    if meta["min"] is not None and value < meta["min"]:
        raise UserError(f"{where}: '{key}' = {value!r} is too small; expected at least {meta['min']}")
    if meta["max"] is not None and value > meta["max"]:
        raise UserError(f"{where}: '{key}' = {value!r} is too large; expected at most {meta['max']}")
    problem = meta["check"] and meta["check"](value)
    if problem:
        raise UserError(f"{where}: '{key}' = {value!r} {problem}")
    return value


def _coerce_int_list(key: str, value: Any, where: str) -> list[int]:
    """Epochs (multistep milestones): non-negative integers in increasing order."""
    ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    if not ok or value != sorted(set(value)):
        raise UserError(f"{where}: '{key}' = {value!r} is not a list of epochs; expected increasing whole numbers, "
                        "e.g. [60, 120, 170]")
    return list(value)


def _coerce_list(key: str, value: Any, f: dataclasses.Field, where: str) -> list:
    """A list of choices, from a YAML list or one name; 'none' (alone) is the empty list."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise UserError(f"{where}: '{key}' = {value!r} has the wrong type; expected a name or a list of names")
    if items == ["none"]:
        return []
    for item in items:
        if item not in f.metadata["choices"]:
            raise UserError(f"{where}: '{key}' has {item!r}, which is not one of none, {', '.join(f.metadata['choices'])}")
    return list(dict.fromkeys(items))


def _flatten(tree: dict, where: str, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for k, v in tree.items():
        if not isinstance(k, str):
            raise UserError(f"{where}: config key {k!r} is not a name")
        path = prefix + k
        section = _fields(Config).get(k) if not prefix else None
        if section is not None and _is_section(section.type):
            if not isinstance(v, dict):
                raise UserError(f"{where}: '{path}' is a section; expected a mapping of keys, got {v!r}")
            flat.update(_flatten(v, where, path + "."))
        else:
            flat[path] = v
    return flat


def apply(cfg: Config, overrides: dict[str, Any], where: str) -> Config:
    """Set dotted keys on a copy of cfg, validating each."""
    keys = all_keys()
    data = cfg.to_dict()
    for key, value in overrides.items():
        if key not in keys:
            raise unknown_key_error(key, where)
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = _coerce(key, value, keys[key], where)
    return from_dict(data)


def from_dict(data: dict) -> Config:
    """A Config from to_dict()'s shape; a section missing (a config written before it existed) is its default."""
    sections = {
        name: f.type(**data.get(name, {})) if _is_section(f.type) else data[name]
        for name, f in _fields(Config).items()
    }
    return Config(**sections)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a mapping that names a key twice is an error: PyYAML would keep the
    last value silently, and a config that says `method` twice is a mistake either way."""

    def construct_mapping(self, node, deep=False):
        lines = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str) and key in lines:
                raise DuplicateKey(key, lines[key], line)
            if isinstance(key, str):
                lines[key] = line
        return super().construct_mapping(node, deep)


class DuplicateKey(Exception):
    def __init__(self, key: str, first: int, second: int):
        super().__init__(key, first, second)
        self.key, self.first, self.second = key, first, second


def read_yaml(path: str | Path) -> dict:
    """A YAML file's mapping; a file that is missing, is not YAML or names a key twice (in one
    mapping) is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file '{path}' does not exist; expected a YAML file")
    try:
        tree = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except DuplicateKey as e:
        raise UserError(f"config file '{path}' names '{e.key}' twice, at lines {e.first} and {e.second}; "
                        "expected each key once") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"config file '{path}' is not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise UserError(f"config file '{path}' must hold a mapping of keys, not {type(tree).__name__}")
    return tree


def config_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict]]:
    """A config file after the files its `include:` names (paths relative to it), depth first.

    Presets build on each other this way: DyTox+ is DyTox with MixUp, DAFormer's recipe DyTox++'s."""
    if path.resolve() in seen:
        raise UserError(f"config file '{path}' includes itself (through {' -> '.join(str(p) for p in seen)})")
    tree = read_yaml(path)
    included = tree.pop("include", None) or []
    if isinstance(included, str):
        included = [included]
    if not isinstance(included, list) or not all(isinstance(name, str) for name in included):
        raise UserError(f"config file '{path}': 'include' must be a file name or a list of them")
    layers = []
    for name in included:
        layers += config_layers(path.parent / name, seen + (path.resolve(),))
    return layers + [(path, tree)]


def parse_set(item: str) -> tuple[str, Any]:
    """'memory.size=500' -> ('memory.size', 500); the value is read as YAML."""
    if "=" not in item:
        raise UserError(f"--set '{item}' is malformed; expected KEY=VALUE, e.g. memory.size=500")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


BY_METHOD = "by_method"  # a config file's section of keys for one method only


def method_blocks(tree: dict, where: str) -> dict[str, dict[str, Any]]:
    """A config file's `by_method:` section, taken out of `tree`: method -> its dotted keys. They
    apply only when that method is the run's (a recipe a method needs where the file's own does not
    suit it, e.g. the quick start's SGD for the cosine classifiers)."""
    blocks = tree.pop(BY_METHOD, None) or {}
    if not isinstance(blocks, dict):
        raise UserError(f"{where}: '{BY_METHOD}' must map method names to keys, got {blocks!r}")
    out = {}
    for method, keys in blocks.items():
        if method not in METHODS:
            raise UserError(f"{where}: '{BY_METHOD}.{method}' names no method; expected one of {', '.join(METHODS)}")
        if not isinstance(keys, dict):
            raise UserError(f"{where}: '{BY_METHOD}.{method}' must be a mapping of keys, got {keys!r}")
        flat = _flatten(keys, f"{where} ({BY_METHOD}.{method})")
        if "method" in flat:
            raise UserError(f"{where}: '{BY_METHOD}.{method}' may not set 'method'")
        apply(Config(), flat, f"{where} ({BY_METHOD}.{method})")  # every key and value checked, whatever the method
        out[method] = flat
    return out


def load(files: list[str | Path], sets: list[str] = (), extra: dict[str, Any] | None = None,
         where: dict[str, str] | None = None) -> Config:
    """Layer YAML files left to right (each followed by its `by_method:` keys for the run's method),
    then `extra` (CLI flags), then `--set` items. The run's method is what the files and the command
    line make it (a `by_method` section cannot change it): the layers are applied once to find it,
    and again with its sections where any file has one.

    `where` names the origin of an `extra` key in errors (e.g. the flag that set it)."""
    layers = []
    for path in files:
        for layer, tree in config_layers(Path(path)):
            blocks = method_blocks(tree, str(layer))  # taken out of the tree first
            layers.append((str(layer), _flatten(tree, str(layer)), blocks))

    def layered(method: Optional[str]) -> Config:
        cfg = Config()
        for layer, keys, blocks in layers:
            cfg = apply(cfg, keys, layer)
            if method in blocks:
                cfg = apply(cfg, blocks[method], f"{layer} ({BY_METHOD}.{method})")
        return _apply_command_line(cfg, sets, extra, where)

    cfg = layered(None)
    return layered(cfg.method) if any(cfg.method in blocks for _, _, blocks in layers) else cfg


def _apply_command_line(cfg: Config, sets: list[str], extra: dict[str, Any] | None,
                        where: dict[str, str] | None) -> Config:
    for key, value in (extra or {}).items():
        cfg = apply(cfg, {key: value}, (where or {}).get(key, "command line"))
    for item in sets:
        key, value = parse_set(item)
        cfg = apply(cfg, {key: value}, f"--set {item}")
    return cfg
