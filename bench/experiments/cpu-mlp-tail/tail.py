"""The dual block's MLP tail alone on the CPU, fc1 -> GELU -> token mean over a (128, 10, 64, 384)
input (batch 128, 10 keys), forward + backward: the mean as the block writes it against sum / N.
Profiles both (by op and input shape), then times 3 rounds of 3 calls, seconds per call.

`MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 python bench/experiments/cpu-mlp-tail/tail.py`
(prints; its figures are in README.md).
"""
import time

import torch
from torch.profiler import ProfilerActivity, profile

torch.set_num_threads(2)
fc1 = torch.nn.Linear(384, 1536)
u = torch.randn(128, 10, 64, 384, requires_grad=True)
def mean_form(): return torch.nn.functional.gelu(fc1(u)).mean(dim=2)
def sum_form(): return torch.nn.functional.gelu(fc1(u)).sum(dim=2) / 64
for f in (mean_form, sum_form):
    f().sum().backward()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(2): f().sum().backward()
    print(f.__name__)
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=8, max_name_column_width=30, max_shapes_column_width=70))
for r in range(3):
    for f in (mean_form, sum_form):
        t=time.perf_counter()
        for _ in range(3): f().sum().backward()
        print(f.__name__, (time.perf_counter()-t)/3)
