"""What each method is, stated once: its facts, its key policy and the name papers print.

Plain data (no torch): the config validates `method` against it, the planner and the learner read
its facts, the report its labels and order. What the method does is its strategy in
`suite/strategies/` (its loss, its phases after the main one, its teacher; registered under the
same name), and its model is built by its family in `suite/models/` (registered likewise). A new
method adds its record here and its strategy there (README, "Adding a method").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# A task's phases, in the order a method's task may run them, as the learner, its checkpoints and
# log.jsonl name them: the main training, the balanced finetuning on the memory (DyTox, DAFormer),
# BiC's bias correction on held-out exemplars, FOSTER's compression. A method's strategy picks its
# own (suite/strategies/).
PHASES = TRAIN, FINETUNE, BIAS, COMPRESS = ("train", "finetune", "bias", "compress")
PHASE_TITLES = {TRAIN: "training", FINETUNE: "finetuning", BIAS: "bias correction", COMPRESS: "compression"}

# The CNN methods' backbones (model.backbone) by name, each built by suite/models/resnet.py.
BACKBONES = {"cifar_resnet32": "PyCIL's CIFAR ResNet-32 (the PyCIL protocol)",
             "cifar_resnet18": "DER's CIFAR ResNet-18 (the DER/DyTox table's protocol)",
             "resnet18": "torchvision's ResNet-18, for ImageNet",
             "cifar_resnet32_cosine": "PyCIL's cosine_resnet32: projection shortcuts, no last ReLU (PODNet, UCIR)",
             "preact_resnet18": "DER's pre-activation ResNet-18, its ImageNet-100 B0 backbone"}

PER_TASK = "per_task"  # one external key per task
CONFIGURED = "configured"  # model.num_keys (default: one per task)


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # as a paper's table prints it
    description: str
    rehearsal: bool = True  # keeps a memory of old exemplars (and finetunes on it)
    distill: bool = True  # logit distillation from the previous task's model
    divergence: bool = True  # the releases' divergence head on the current task's embedding
    freezes_old_heads: bool = True
    knn: bool = False  # may add our KNN-invariant distillation (distill.knn_weight > 0)
    keys: Optional[int | str] = None  # external keys: None (none), a fixed count, PER_TASK or CONFIGURED
    single_task: bool = False  # learns every class in one task (the upper bound)
    bound: Optional[str] = None  # "lower" / "upper": shown in tables, never marked best
    # how it classifies at test time, its headline first: "cnn" (argmax of its logits), "nme" (nearest
    # mean of its exemplars' features) and any classifier its model names (FOSTER's "student"); each
    # is measured and recorded, named
    classifiers: tuple[str, ...] = ("cnn",)
    architecture: str = "vit"  # "vit" (the shared ConViT encoder, model.embed_dim...) or "cnn" (model.backbone)
    rerun: bool = False  # a classic baseline run here, labelled "(re-run)" beside its "(published)" rows
    release: str = ""  # the published code and recipe it follows
    color: Optional[str] = None  # its line colour in every figure (None: one derived from its name)
    marker: str = "o"  # its line marker in every figure

    def num_keys(self, configured: Optional[int], num_tasks: int) -> Optional[int]:
        """The run's external key count (None for methods without keys)."""
        if self.keys == CONFIGURED:
            return configured or num_tasks
        if self.keys == PER_TASK:
            return num_tasks
        return self.keys

    def display_label(self, knn_weight: float) -> str:
        """'DAFormer-M', 'DAFormer-M + KNN (ours)' when our KNN distillation is on, 'iCaRL (re-run)' for a
        baseline whose rows the comparison table otherwise quotes."""
        if self.knn and knn_weight > 0:
            return f"{self.label} + KNN (ours)"
        return f"{self.label} (re-run)" if self.rerun else self.label


HEADLINE = "daformer_m"  # the method the report compares every other method against

_DAFORMER = dict(knn=True, release="DAFormer release (wangsfan/DAFormer), DyTox++ recipe")
_PLAIN = dict(distill=False, divergence=False, freezes_old_heads=False)
_PLAIN_CNN = dict(architecture="cnn", release="the CNN baselines' backbone and recipe (PyCIL's protocol), trained plainly",
                  **_PLAIN)

# In the order tables list them (the CNN baselines as DyTox's table does): lower bound first, upper bound last.
# Colours and markers: matplotlib's tab10 palette for the ViT rows, a hue of its own for each CNN baseline, mid
# tones (a method's second and third classifiers are drawn darker); the markers tell them apart in greyscale.
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("finetune", "Finetune", "plain ViT, no memory (lower bound)", rehearsal=False, bound="lower",
           color="#7f7f7f", marker="v", **_PLAIN),
    Method("finetune_cnn", "Finetune (CNN)", "a CNN (model.backbone), no memory (the CNN rows' lower bound)",
           rehearsal=False, bound="lower", color="#3f3f3f", marker="1", **_PLAIN_CNN),
    Method("replay", "Replay", "plain ViT, rehearsal only", color="#8c564b", marker="s", **_PLAIN),
    Method("dytox", "DyTox", "DyTox: task tokens + class-attention block",
           release="DyTox release (arthurdouillard/dytox): DyTox, DyTox+ or DyTox++ by preset",
           color="#1f77b4", marker="^"),
    Method("daformer_s", "DAFormer-S", "DAFormer-S: one external key shared by all tasks", keys=1,
           color="#2ca02c", marker="D", **{**_DAFORMER, "release": "the suite's reading of the paper: the DAFormer "
                                           "release's code and recipe with one key for every task (the release has "
                                           "no switch for it)"}),
    Method("daformer_m", "DAFormer-M", "DAFormer-M: one external key per task", keys=PER_TASK,
           color="#d62728", marker="o", **_DAFORMER),
    Method("daformer", "DAFormer", "DAFormer with model.num_keys keys over contiguous task groups",
           keys=CONFIGURED, color="#9467bd", marker="P", **_DAFORMER),
    Method("icarl", "iCaRL", "iCaRL: a CNN, logit distillation, nearest mean of exemplars", divergence=False,
           freezes_old_heads=False, classifiers=("nme", "cnn"), architecture="cnn", rerun=True,
           release="PyCIL (LAMDA-CL/PyCIL) models/icarl.py: cross-entropy + distillation at T=2 without T^2",
           color="#ff7f0e", marker="X"),
    Method("ucir", "UCIR", "UCIR: a cosine classifier with imprinted weights, less-forget constraint, margin "
           "ranking loss", divergence=False, freezes_old_heads=False, classifiers=("cnn", "nme"), architecture="cnn",
           rerun=True, release="UCIR's release (hshustc/CVPR19_Incremental_Learning), its CIFAR-100 commands "
                               "(PyCIL has no UCIR)",
           color="#7b4173", marker=">"),
    Method("bic", "BiC", "BiC: a CNN, distillation, a bias-correction layer trained on held-out exemplars",
           divergence=False, freezes_old_heads=False, classifiers=("cnn", "nme"), architecture="cnn", rerun=True,
           release="PyCIL (LAMDA-CL/PyCIL) models/bic.py: one bias layer per task, all applied",
           color="#bcbd22", marker="p"),
    Method("wa", "WA", "WA: a CNN, distillation weighted by the old classes' share, weight aligning",
           divergence=False, freezes_old_heads=False, classifiers=("cnn", "nme"), architecture="cnn", rerun=True,
           release="PyCIL (LAMDA-CL/PyCIL) models/wa.py; train.nonnegative_classifier: DER's release's clipping",
           color="#e377c2", marker="h"),
    Method("podnet", "PODNet", "PODNet: a cosine classifier of 10 proxies a class, NCA loss, pooled-output "
           "distillation of every stage, balanced finetuning", divergence=False, freezes_old_heads=False,
           classifiers=("cnn", "nme"), architecture="cnn", rerun=True,
           release="PyCIL (LAMDA-CL/PyCIL) models/podnet.py (its finetuning trains the backbone too; the table "
                   "in its docstring is NME)",
           color="#1b9e77", marker="<"),
    Method("der", "DER w/o P", "DER without pruning: a new backbone per task, the old ones frozen, one classifier "
           "over all their features, an auxiliary classifier", distill=False, freezes_old_heads=False,
           classifiers=("cnn", "nme"), architecture="cnn", rerun=True,
           release="PyCIL (LAMDA-CL/PyCIL) models/der.py: weight aligning after each task, in place of the DER "
                   "release's classifier retraining",
           color="#5254a3", marker="d"),
    Method("foster", "FOSTER", "FOSTER: boosting with a second backbone and logit adjustment, then compression "
           "into one backbone by distillation", distill=False, divergence=False, freezes_old_heads=False,
           classifiers=("cnn", "nme", "student"), architecture="cnn", rerun=True,
           release="PyCIL (LAMDA-CL/PyCIL) models/foster.py: the boosted network evaluated, as PyCIL reports it "
                   "(its compressed student recorded beside)",
           color="#e6ab02", marker="H"),
    Method("joint", "Joint", "plain ViT, every class in one task (upper bound)", rehearsal=False,
           single_task=True, bound="upper", color="#17becf", marker="*", **_PLAIN),
    Method("joint_cnn", "Joint (CNN)", "a CNN (model.backbone), every class in one task (the CNN rows' upper bound)",
           rehearsal=False, single_task=True, bound="upper", color="#0b6f79", marker="2", **_PLAIN_CNN),
)}
