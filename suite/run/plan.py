"""Validate a config against its data set, load what a run needs, describe the plan (`--dry-run`)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from suite.config import Config
from suite.data.registry import DataSet, count_classes, load_dataset
from suite.data.scenario import Scenario, build_scenario, plan_scenario
from suite.data.sources.imagefolder import check_headers, stored_side
from suite.data.validation import validation_split
from suite.errors import UserError
from suite.learner.memory import per_class_budget
from suite.learner.learner import task_epochs
from suite.learner.model import run_model
from suite.models.base import test_time_parameters
from suite.methods import BACKBONES, CONFIGURED, METHODS, PHASE_TITLES, PHASES, TRAIN
from suite.strategies import strategy_for
from suite.run import footprint
from suite.run.layout import run_dir_of
from suite.run.trackers import check_installed


def check_config(cfg: Config) -> Scenario:
    """Everything checkable before loading images: the scenario and the key count."""
    m = cfg.model
    if m.embed_dim % m.num_heads:
        raise UserError(f"model.num_heads = {m.num_heads} does not divide model.embed_dim = {m.embed_dim}; "
                        "expected a divisor of the embedding width")
    check_installed(cfg.logging.backend)
    method = METHODS[cfg.method]
    if cfg.distill.knn_weight > 0 and not method.knn:
        allowed = ", ".join(m.name for m in METHODS.values() if m.knn)
        raise UserError(f"distill.knn_weight = {cfg.distill.knn_weight:g} is our KNN distillation, which only "
                        f"DAFormer takes ({allowed}); method '{cfg.method}' has none: set it to 0")
    scenario = plan_scenario(cfg, count_classes(cfg.data))
    tasks = scenario.num_tasks
    keys = cfg.model.num_keys
    if keys is not None:
        if method.keys != CONFIGURED and keys != method.num_keys(None, tasks):
            fixed = method.num_keys(None, tasks)
            uses = f"which uses {fixed}" if fixed else "which has no external keys"
            raise UserError(f"model.num_keys = {keys} contradicts method '{cfg.method}' ({uses}); "
                            "use method 'daformer' to choose the key count")
        if keys > tasks:
            raise UserError(f"model.num_keys = {keys} is larger than the {tasks} tasks; expected 1..{tasks}")
    problem = strategy_for(cfg).problem([len(t) for t in scenario.tasks])
    if problem:
        raise UserError(problem)
    if cfg.memory.per_class is None and 0 < cfg.memory.size < len(scenario.class_order):
        raise UserError(f"memory.size = {cfg.memory.size} leaves no exemplar per class for "
                        f"{len(scenario.class_order)} classes; expected 0 or at least {len(scenario.class_order)}")
    return scenario


def image_side(cfg: Config, data: DataSet) -> int:
    """The side of the images the model sees: data.input_size, else the data set's own."""
    return cfg.data.input_size or data.image_size


UPSAMPLED = 2  # a training side at least this many times the stored images' earns a warning


def upsampling_warning(cfg: Config, data: DataSet) -> str | None:
    """A data set read from image files that the run would blow up (an ImageFolder of 64-pixel photos
    at the ImageNet pipeline's 224, say): the cost grows with the pixels, the information does not."""
    if data.train.in_memory or not len(data.train):
        return None
    stored, side = stored_side(data.train.images), image_side(cfg, data)
    if side < UPSAMPLED * stored:
        return None
    why = "data.input_size" if cfg.data.input_size else f"'{data.name}''s default, data.input_size unset"
    return (f"warning: the training images of '{data.name}' are about {stored}x{stored} pixels, and would be "
            f"trained at {side}x{side} ({why}): {(side / stored) ** 2:.0f}x the pixels for no new detail; "
            f"--set data.input_size={stored} trains them at their own size")


def check_data(cfg: Config, data: DataSet) -> None:
    """Checks that need the loaded data set: image size vs patch size, the validation split, memory
    vs the images trained on."""
    side = image_side(cfg, data)
    if side % cfg.model.patch_size:
        raise UserError(f"model.patch_size = {cfg.model.patch_size} does not divide the {side}-pixel images "
                        f"of '{data.name}'; expected a divisor of {side}")
    validation_split(data.train.labels, cfg.data.validation_fraction, cfg.seed)  # refuses an empty class


def memory_warning(cfg: Config, data: DataSet) -> str | None:
    """A memory larger than the images it could hold is no error (it keeps every image of the classes
    seen, as a fixed total does once it outgrows the data), but rarely what was meant: say so."""
    if not METHODS[cfg.method].rehearsal:
        return None
    trained, _ = validation_split(data.train.labels, cfg.data.validation_fraction, cfg.seed)
    if cfg.memory.per_class is None and cfg.memory.size > len(trained):
        return (f"warning: memory.size = {cfg.memory.size} is larger than the {len(trained)} training images of "
                f"'{data.name}': the memory will keep every image of the classes seen")
    labels = data.train.labels[trained]
    smallest = min((labels == c).sum() for c in np.unique(labels))
    if cfg.memory.per_class is not None and cfg.memory.per_class > smallest:
        return (f"warning: memory.per_class = {cfg.memory.per_class} is larger than the smallest class of "
                f"'{data.name}' ({smallest} training images): such classes keep every image")
    return None


def plan_run(cfg: Config, run_dir: Path | None = None, data: DataSet | None = None) -> Plan:
    """The run's plan, made once in the driver: its data set loaded (or `data`, one that a sweep's
    trials share, loaded and its files checked once) and checked against the config, its scenario
    built; its directory `run_dir`, by default the config's (output.basedir / output.name).
    Whatever executes the plan (this process, Ray Train's workers, a sweep's trial) takes its data
    from it: no data set is loaded twice for a run."""
    if data is None:
        data = load_dataset(cfg.data)
        check_files(data)
    check_data(cfg, data)
    return Plan(cfg, data, build_scenario(cfg, data), run_dir or run_dir_of(cfg))


def check_files(data: DataSet) -> None:
    """Images kept on disk open as images (headers only), before any worker starts."""
    for split in (data.train, data.test):
        if not split.in_memory:
            check_headers(split.images)


LONG_ON_CPU = 100  # epochs of a run (all tasks) beyond which a CPU-only plan earns a warning


def worker_cpus(r, nodes: list[dict]) -> float:
    """The CPUs a worker asks for: ray.cpus_per_worker, else a share of the `nodes`' CPUs (each node's
    Ray resource counts). CPU workers share out every CPU; GPU workers only the GPU nodes', at the
    CPUs per GPU slot of the smallest of them, so that a worker fits beside its GPU on any GPU node
    (the head's and other CPU-only nodes' CPUs cannot serve one). No GPU node up: the CPU share."""
    if r.cpus_per_worker:
        return r.cpus_per_worker
    gpu_nodes = [n for n in nodes if n.get("GPU", 0) > 0] if r.use_gpu else []
    if gpu_nodes and r.gpus_per_worker > 0:
        return max(1.0, min(n.get("CPU", 0) // max(1, n["GPU"] // r.gpus_per_worker) for n in gpu_nodes))
    return max(1.0, sum(n.get("CPU", 0) for n in nodes) // r.num_workers)


def planned_epochs(cfg: Config, num_tasks: int) -> int:
    """Every epoch a run trains: main phases, and finetuning from task 2 on where there is a memory."""
    return sum(task_epochs(cfg, task) for task in range(num_tasks))


def resources_there(address: str | None, in_process: bool = False, connected: bool = False) -> tuple[list[dict], str]:
    """The resources a request is checked against, and what they are: the cluster's when one is named
    (--address, RAY_ADDRESS) or already connected, else this machine's (a dry run starts no Ray of its own)."""
    address = address or os.environ.get("RAY_ADDRESS")
    if in_process or not (address or connected):
        return [{"CPU": os.cpu_count(), "GPU": torch.cuda.device_count()}], "this machine"
    from suite.run.cluster import cluster_nodes

    return cluster_nodes(address), "the cluster"


def resource_warnings(cfg: Config, nodes: list[dict], where: str, epochs: int) -> list[str]:
    """What the request asks of the `nodes` (each one's Ray resource counts: CPU, GPU) that will not
    work or not as meant, one warning line each."""
    r = cfg.ray
    gpus, cpus = (sum(n.get(key, 0) for n in nodes) for key in ("GPU", "CPU"))
    lines = []
    if r.use_gpu and gpus == 0:
        lines.append(f"warning: ray.use_gpu = true, but {where} has no GPU: the workers would wait for one for ever; "
                     "expected a GPU cluster, or ray.use_gpu=false")
    elif r.use_gpu and r.gpus_per_worker * r.num_workers > gpus:
        lines.append(f"warning: {r.num_workers} worker(s) x {r.gpus_per_worker:g} GPU need more than the {gpus:g} "
                     f"GPU(s) of {where}: the run would wait for them; expected ray.num_workers <= {int(gpus / r.gpus_per_worker)}")
    if r.use_gpu and r.num_workers > 1 and r.gpus_per_worker < 1:
        lines.append(f"warning: ray.gpus_per_worker = {r.gpus_per_worker:g} puts several NCCL ranks of one run on one GPU, "
                     "which NCCL refuses; expected ray.gpus_per_worker=1 (fractions are for sweeps of 1-worker trials)")
    if r.cpus_per_worker and r.cpus_per_worker * r.num_workers > cpus:
        lines.append(f"warning: {r.num_workers} worker(s) x {r.cpus_per_worker:g} CPU need more than the {cpus:g} "
                     f"CPU(s) of {where}: the run would wait for them")
    if not r.use_gpu and epochs >= LONG_ON_CPU:
        lines.append(f"warning: {epochs} epochs on {r.num_workers} CPU worker(s); on a GPU cluster add "
                     "--set ray.use_gpu=true --set ray.num_workers=N")
    return lines


def count_params(cfg: Config, data: DataSet, scenario: Scenario) -> list[int]:
    """Parameters used at test time after each task (models/base.py's rule). The CNNs are built on
    the meta device (shapes only: a DER of 50 ResNet-18s costs no memory); the ViTs' constructors
    read tensor values, which meta tensors do not hold, and are small."""
    counts = []
    with torch.device("meta" if METHODS[cfg.method].architecture == "cnn" else "cpu"):
        model = run_model(cfg, data, scenario.num_tasks)
        for task in scenario.tasks:
            model.add_task(len(task))
            counts.append(test_time_parameters(model))
    return counts


def class_names(data: DataSet, classes, shown: int = 6) -> str:
    """'tailed frog, American alligator, ... (+4 more)': the first `shown` names of `classes`."""
    names = [data.class_names[c] for c in classes]
    more = f", ... (+{len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


@dataclass
class Plan:
    cfg: Config
    data: DataSet
    scenario: Scenario
    run_dir: Path

    def describe(self) -> str:
        cfg, data, sc = self.cfg, self.data, self.scenario
        method = METHODS[cfg.method]
        lines = [
            f"data      {data.name}: {len(data.train)} train / {len(data.test)} test images, "
            f"{data.num_classes} classes, {data.channels}x{data.image_size}x{data.image_size}",
            f"setting   {sc.setting}: {sc.num_tasks} task(s)",
        ]
        if cfg.data.validation_fraction:
            _, held = validation_split(data.train.labels, cfg.data.validation_fraction, cfg.seed)
            lines.insert(1, f"validation {len(held)} training images held out ({cfg.data.validation_fraction:g} of each "
                            f"class, by seed {cfg.seed}): never trained on, evaluated after every task")
        for t, classes in enumerate(sc.tasks):
            seen = len(sc.classes_up_to(t))
            mem = f"memory {per_class_budget(cfg.memory, seen)}/class" if method.rehearsal else "no memory"
            lines.append(f"  task {t + 1:3d}: {len(classes):3d} classes {list(classes)}  ({mem})")
            if any(data.class_names[c] != str(c) for c in classes):
                lines.append(f"             {class_names(data, classes)}")
        params = count_params(cfg, data, sc)
        num_keys = method.num_keys(cfg.model.num_keys, sc.num_tasks)
        keys = f", {num_keys} external key(s)" if num_keys else ""
        lines += [
            f"method    {cfg.method}: {method.display_label(cfg.distill.knn_weight)} ({method.description}){keys}",
            f"model     {self._architecture()}; parameters after the last task: {params[-1]:,} "
            f"({params[-1] / 1e6:.2f}M)",
            f"training  {self._training()}",
            f"memory    {'per class ' + str(cfg.memory.per_class) if cfg.memory.per_class else 'total ' + str(cfg.memory.size)}, "
            f"{cfg.memory.selection}",
            f"ray       {cfg.ray.num_workers} worker(s), {'GPU' if cfg.ray.use_gpu else 'CPU'}, " + self._resources(),
            f"attention {self._footprint()}" if method.architecture == "vit" else None,
            f"output    {self.run_dir}",
        ]
        return "\n".join(line for line in lines if line is not None)

    def _architecture(self) -> str:
        m = self.cfg.model
        if METHODS[self.cfg.method].architecture == "cnn":
            return f"backbone {m.backbone}: {BACKBONES[m.backbone]}"
        return f"embed {m.embed_dim}, depth {m.depth}+1, heads {m.num_heads}, patch {m.patch_size}"

    def _training(self) -> str:
        train = self.cfg.train
        epochs = f"{train.epochs} epochs/task" if not train.incremental_epochs else \
            f"{train.epochs} epochs in task 1, {train.incremental_epochs} after"
        scaled = " (x global batch / 512)" if train.scale_lr else ""
        schedule = f"multistep at {train.milestones}" if train.schedule == "multistep" else \
            {"cosine": "cosine", "cosine_epoch": "cosine stepped per epoch"}[train.schedule]
        if train.schedule == "multistep" and train.incremental_milestones not in (None, train.milestones):
            schedule += f" (after task 1: {train.incremental_milestones})"
        if train.warmup_epochs:
            schedule = f"{train.warmup_epochs} warm-up epochs, {schedule}"
        strategy = strategy_for(self.cfg)
        later = [step for step in strategy.steps(1) if step in PHASES and step != TRAIN]  # a later task's own phases
        finetuning = "".join(f", {PHASE_TITLES[step]} {strategy.epochs(1, step)} epochs" for step in later)
        return (f"{epochs}, batch {train.batch_size}/worker, lr {self._lr()}{scaled}, {train.optimizer}, "
                f"{schedule}{finetuning}")

    @property
    def image_size(self) -> int:
        return image_side(self.cfg, self.data)

    def _footprint(self) -> str:
        need = footprint.estimate(self.cfg, self.image_size, self.scenario.num_tasks)
        return (f"scores of a training batch {footprint.gib(need.train)}, of an evaluation batch "
                f"{footprint.gib(need.eval)} (per worker, at the last task)")

    @property
    def epochs(self) -> int:
        return planned_epochs(self.cfg, self.scenario.num_tasks)

    def out_of_memory(self) -> footprint.OutOfMemory:
        return footprint.out_of_memory(self.cfg, self.image_size, self.scenario.num_tasks)

    def check_memory(self) -> str | None:
        if METHODS[self.cfg.method].architecture != "vit":
            return None  # the estimate is of attention scores
        return footprint.check_run(self.cfg, self.image_size, self.scenario.num_tasks)

    def _lr(self) -> str:
        train = self.cfg.train
        if train.incremental_lr is None or train.incremental_lr == train.lr:
            return f"{train.lr:g}"
        return f"{train.lr:g}, tasks 2+ {train.incremental_lr:g}"

    def _resources(self) -> str:
        r = self.cfg.ray
        share = "a GPU node's CPUs per GPU" if r.use_gpu else "CPUs shared out among workers"
        cpus = f"{r.cpus_per_worker:g} CPU/worker" if r.cpus_per_worker else share
        return cpus + (f", {r.gpus_per_worker:g} GPU/worker" if r.use_gpu else "")
