"""torch.profiler over 3 CPU training steps of the CIFAR preset (daformer_m, 10 keys, fp32, batch 128,
2 threads): ops by self CPU time, then by input shape.

`MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 python bench/experiments/cpu-mlp-tail/profile.py`
(prints; its figures are in README.md).
"""
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench.perf.step import Case, Step  # noqa: E402

torch.set_num_threads(2)
step = Step(Case("daformer_m", 10, batch=128), torch.device("cpu"))
for _ in range(2): step()
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    for _ in range(3): step()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=50))
print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=40, max_shapes_column_width=80))
