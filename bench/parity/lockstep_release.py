"""Drive a release's own training code step by step on given weights and batches (the lockstep's
release side). Runs in the release's venv (timm 0.4.9), with no import from this project:

    python lockstep_release.py RELEASE_DIR WORK_DIR

WORK_DIR holds `spec.json` and `inputs.pt` (written by bench/parity/lockstep.py); this writes
`trajectory.pt` there. What runs is the release's: its argument parser and option files, its
model factory and growth (factory.update_dual / update_dytox), `freeze`, timm 0.4.9's
create_optimizer, its SAM, its Mixup class, criterion, `engine.train_one_epoch` (the whole step:
MixUp, forward, auto-KD, divergence loss, SAM's two passes, the scaler) and its rehearsal
`Memory` (herding and trimming). What this file does instead of mainDual.py/main.py:

- the task loop of their `main()` is re-sequenced here (it is one function with the data sets,
  logging and checkpoints woven in); every step cites the line of mainDual.py it follows;
- the data loaders are lists of the given pre-augmented batches (`batch_order`, shared with our
  side), the MixUp λ of each batch is given (their Mixup's `_params_per_batch` returns it; the
  permutation is timm's batch flip on both sides), drop-path is 0;
- wrapper.py's runtime patches make their CUDA calls run on the CPU;
- losses are read through `engine.check_loss` (it sees every loss the step computes: two per
  step under SAM), gradients and parameters through torch's optimizer step hooks.
"""
import sys

if __name__ == "__main__":
    # the release's folder first (its `continual` package, its entry module); this file's folder
    # last, for wrapper.py's runtime patches, so that nothing here shadows a module of theirs
    sys.path.append(sys.path[0])
    sys.path[0] = sys.argv[1]

import copy  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


def batch_order(n: int, seed: int, offset: int, epoch: int, shuffle: bool) -> list[int]:
    """Positions into a phase's data set, in the order one epoch reads them (both sides use this)."""
    if not shuffle:
        return list(range(n))
    generator = torch.Generator().manual_seed(seed * 1_000_003 + offset * 1009 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def batches_of(order: list[int], batch_size: int) -> list[list[int]]:
    """Batches of `order`; the last partial one dropped when there is more than one batch, as
    both sides' loaders do (drop_last = len > batch size)."""
    drop = len(order) > batch_size
    cut = len(order) // batch_size * batch_size if drop else len(order)
    return [order[i:i + batch_size] for i in range(0, cut, batch_size)]


def grad_norm(optimizer) -> float:
    """The L2 norm of the gradients an optimizer step is about to apply (both sides record it)."""
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


class TaskSet(torch.utils.data.Dataset):
    """What the release's rehearsal reads of a continuum TaskSet: `_x` (here positions into the
    pool of images), `_y`, `_t`, and (image, label, task) items."""

    def __init__(self, images, positions, labels, task):
        self.images = images
        self._x, self._y = np.asarray(positions), np.asarray(labels)
        self._t = np.full(len(positions), task)

    def __len__(self):
        return len(self._x)

    def __getitem__(self, i):
        return self.images[self._x[i]], int(self._y[i]), int(self._t[i])


class Recorder:
    """Per optimizer step: the losses check_loss saw, the gradient norm and every parameter after."""

    def __init__(self, model_ref):
        self.model_ref = model_ref  # a callable: the model as it is now (it is replaced at task 0)
        self.steps, self.losses, self.where = [], [], {}

    def check_loss(self, loss):
        self.losses.append(float(loss))

    def before(self, optimizer, args, kwargs):
        self.grad_norm = grad_norm(optimizer)

    def after(self, optimizer, args, kwargs):
        params = {k: v.detach().clone() for k, v in self.model_ref().named_parameters()}
        self.steps.append({**self.where, "losses": self.losses, "grad_norm": self.grad_norm, "params": params})
        self.losses = []

    def watch(self, optimizer):
        optimizer.register_step_pre_hook(self.before)
        optimizer.register_step_post_hook(self.after)
        return optimizer


def release_args(entry, spec):
    """The release's own defaults, its preset (options/model/*.yaml), then the lockstep's scale-down."""
    args = entry.get_args_parser().parse_args([])
    entry.load_options(args, [spec["preset_path"]])
    for key, value in spec["release_options"].items():
        if not hasattr(args, key):
            raise SystemExit(f"the release has no option {key}")
        setattr(args, key, value)
    return args


def fixed_mixup(mixup_cls, lambdas):
    class FixedMixup(mixup_cls):
        def _params_per_batch(self):
            return next(lambdas), False
    return FixedMixup


def load_new(model, new: dict) -> None:
    """Our initial values for the parameters that are new at this task (every one at task 0)."""
    state = model.state_dict()
    missing = [k for k in new if k not in state]
    if missing:
        raise SystemExit(f"the release's model has no {missing}")
    for k, v in new.items():
        if state[k].shape != v.shape:
            raise SystemExit(f"{k}: release shape {tuple(state[k].shape)}, ours {tuple(v.shape)}")
        state[k].copy_(v)


def run(release_dir: Path, work: Path) -> None:
    spec = json.loads((work / "spec.json").read_text())
    inputs = torch.load(work / "inputs.pt")
    import wrapper
    wrapper.apply()  # the same CPU patches as the release's runs in the parity benchmark
    entry = importlib.import_module(spec["entry"].removesuffix(".py"))
    from continual import engine, factory
    from continual.classifier import Classifier
    from continual.mixup import Mixup
    from continual.rehearsal import Memory, get_finetuning_dataset
    from continual.sam import SAM
    from timm.optim import create_optimizer

    args = release_args(entry, spec)
    images, labels = inputs["pool_images"], inputs["pool_labels"]
    tasks = spec["tasks"]  # per task: its pool positions
    sizes = spec["task_sizes"]
    seed, batch_size = spec["seed"], args.batch_size
    lambdas = iter(spec["lambdas"])
    grow = factory.update_dual if getattr(args, "dual", False) else factory.update_dytox

    args.nb_classes = sum(sizes)
    model = factory.get_backbone(args)  # mainDual.py:348-352
    model.head = Classifier(model.embed_dim, args.nb_classes, args.initial_increment, args.increment, len(sizes))
    recorder = Recorder(lambda: model)
    engine.check_loss = recorder.check_loss
    criterion = entry.soft_bce_with_logits if args.mixup > 0 and args.bce_loss else entry.bce_with_logits  # :396-401
    assert args.bce_loss, "the lockstep covers the presets' BCE criterion"
    loss_scaler = entry.scaler.ContinualScaler(args.no_amp)  # :392
    memory = Memory(args.memory_size, args.nb_classes, args.rehearsal, args.fixed_memory, args.rehearsal_modes)  # :413
    teacher = None
    nb_classes = args.initial_increment  # :417
    base_lr = args.lr  # :418
    memories, predictions = [], []
    for task, positions in enumerate(tasks):
        dataset = list(positions) + ([] if memory.x is None else list(memory.x))  # :467-468 add_samples
        if task > 0 and args.auto_kd:  # :477-480
            teacher = copy.deepcopy(model)
            teacher.freeze(["all"])
            teacher.eval()
        model = grow(model, task, args)  # :485-487
        if task > 0:
            model.freeze(args.freeze_task)  # :496-497
        load_new(model, inputs["init"][task])
        base = args.incremental_lr if task > 0 and args.incremental_lr is not None else base_lr
        args.lr = base * batch_size / 512.0  # :517-522 (world size 1)
        optimizer = recorder.watch(create_optimizer(args, model))  # :523
        mixup = None
        if args.mixup > 0:  # :527-534
            mixup = fixed_mixup(Mixup, lambdas)(
                mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax,
                prob=args.mixup_prob, switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                label_smoothing=args.smoothing, num_classes=nb_classes, loader_memory=None)
        sam = None
        if args.sam_rho > 0 and "tr" in args.sam_mode and (task > 0 or not args.sam_skip_first):  # :562-575
            sam = SAM(optimizer, model, rho=args.sam_rho, adaptive=args.sam_adaptive, div=args.sam_div,
                      use_look_sam=args.look_sam_k > 0, look_sam_alpha=args.look_sam_alpha)
        model.nb_epochs = epochs = args.base_epochs if task == 0 and args.base_epochs else args.epochs  # :544-558
        for epoch in range(epochs):  # :580-597 (constant lr: no scheduler to step)
            order = batch_order(len(dataset), seed, task, epoch, shuffle=True)
            loader = [(images[[dataset[i] for i in b]], labels[[dataset[i] for i in b]], torch.zeros(len(b)))
                      for b in batches_of(order, batch_size)]
            recorder.where = {"task": task, "phase": "train", "epoch": epoch}
            engine.train_one_epoch(model, criterion, loader, optimizer, torch.device("cpu"), epoch, task, loss_scaler,
                                   args.clip_grad, mixup, args=args, teacher_model=teacher, model_without_ddp=model,
                                   sam=sam, loader_memory=None, pod=None, pod_scales=args.pod_scales)
        model.eval()  # eval_and_log ran at the last epoch (:619-625) and left the model in eval mode
        memory.add(TaskSet(images, positions, labels[positions].tolist(), task), model, sizes[task])  # :660
        memories.append([int(i) for i in memory.x])
        if args.finetuning and task > 0:  # :702-746
            tuned = get_finetuning_dataset(TaskSet(images, [], [], task), memory, args.finetuning,
                                           args.oversample_memory_ft, task)
            model.freeze(args.freeze_ft)
            model.begin_finetuning()
            args.lr = args.finetuning_lr * batch_size / 512.0
            optimizer = recorder.watch(create_optimizer(args, model))
            for epoch in range(args.finetuning_epochs):
                order = batch_order(len(tuned), seed, 1000 + task, epoch, shuffle=not args.ft_no_sampling)
                loader = [(images[tuned._x[b]], torch.as_tensor(tuned._y[b]), torch.zeros(len(b)))
                          for b in batches_of(order, batch_size)]
                recorder.where = {"task": task, "phase": "finetune", "epoch": epoch}
                engine.train_one_epoch(model, criterion, loader, optimizer, torch.device("cpu"), epoch, task,
                                       loss_scaler, args.clip_grad, mixup, args=args,
                                       teacher_model=teacher if args.finetuning_teacher else None,
                                       model_without_ddp=model, pod=None, pod_scales=args.pod_scales)
            model.end_finetuning()
        model.eval()
        with torch.no_grad():
            out = model(inputs["test_images"])
            predictions.append((out["logits"] if isinstance(out, dict) else out).argmax(1))
        nb_classes += args.increment
    torch.save({"steps": recorder.steps, "memories": memories, "predictions": predictions,
                "args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool, list))}},
               work / "trajectory.pt")


if __name__ == "__main__":
    run(Path(sys.argv[1]), Path(sys.argv[2]))
