"""`python -m bench.gpu_ray.in_process ARGS`: `python suite/run.py ARGS --in-process`, on the GPU
when the config sets ray.use_gpu.

suite/runner.py's run_in_process builds its Learner with no device, i.e. on the CPU, whatever
ray.use_gpu says, while Ray Train's worker puts it on its GPU. To compare the two paths on one GPU
this runs the suite's own entry point with that one constructor given the device Ray Train's
worker would use (cuda:0 of one visible GPU). Without ray.use_gpu it is plain `--in-process`.
"""
import sys

import torch

import suite.runner
from suite.cli import main


def _on_configured_device(learner_class):
    def build(cfg, data, scenario):
        return learner_class(cfg, data, scenario, torch.device("cuda:0" if cfg.ray.use_gpu else "cpu"))
    return build


if __name__ == "__main__":
    suite.runner.Learner = _on_configured_device(suite.runner.Learner)
    sys.exit(main([*sys.argv[1:], "--in-process"]))
