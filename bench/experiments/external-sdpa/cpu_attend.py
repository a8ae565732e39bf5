"""The dual block's attention alone (forward + backward, fp32, batch 128, 10 keys) on the CPU: the
GEMM form against the fused candidates of ab.py, 3 rounds of 3 calls each, seconds per call.

`python bench/experiments/external-sdpa/cpu_attend.py` (prints; its figures are in README.md).
"""
import importlib.util
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
spec = importlib.util.spec_from_file_location("ab", HERE / "ab.py")
ab = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ab)

block = ab.Step(ab.Case("daformer_m", 10, batch=128), torch.device("cpu")).model.dual
x = torch.randn(128, block.num_tokens, block.qkv.in_features, requires_grad=True)
forms = {"gemm": block.attend, "pad": lambda t: ab.fused_attend(block, t, ab.external_pad),
         "mask": lambda t: ab.fused_attend(block, t, ab.external_mask)}
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
for round_ in range(3):
    for name, attend in forms.items():
        start = time.perf_counter()
        for _ in range(3):
            attend(x).sum().backward()
        print(f"round {round_}: {name} {(time.perf_counter() - start) / 3:.3f} s", flush=True)
