"""torch.profiler over 3 CIFAR steps (daformer_m, 10 keys, batched, batch 1024) in bf16 and fp32 on a
GPU: ops and kernels by self device time, into $OUT/prof_{dtype}.txt (and by input shape,
prof_{dtype}_shapes.txt). Run from the repository root: `PYTHONPATH=. OUT=DIR python3 bench/experiments/gpu-h200-profile/profile.py`.
"""
import os

import torch
from torch.profiler import ProfilerActivity, profile

from bench.perf.step import Case, Step

dev = torch.device("cuda")
for dtype, batch in (("bf16", 1024), ("fp32", 1024)):
    step = Step(Case("daformer_m", 10, "batched", dtype, batch), dev)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        for _ in range(3):
            step()
        torch.cuda.synchronize()
    with open(os.path.join(os.environ["OUT"], f"prof_{dtype}.txt"), "w") as f:
        f.write(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=60, max_name_column_width=90))
    with open(os.path.join(os.environ["OUT"], f"prof_{dtype}_shapes.txt"), "w") as f:
        f.write(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cuda_time_total", row_limit=40,
                                                                   max_name_column_width=60))
    print(dtype, "done", flush=True)
    del step, prof
    torch.cuda.empty_cache()
