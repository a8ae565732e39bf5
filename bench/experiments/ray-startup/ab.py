"""Quickstart through Ray, alternating the driver's environment: as is, and with Ray Train's
controller polling every 0.5 s and no idle workers prestarted (RAY_prestart_worker_first_driver=0).

Run from the repository root at a commit before those settings were made the default (before
they were in suite.run.cluster, the driver's environment reached every Ray process):
`PYTHONPATH=. python bench/experiments/ray-startup/ab.py OUT.json` (at such a commit, e.g. 6baf9cc~1, the
module below was suite.perf.e2e).
"""
import json
import sys

from bench.perf.e2e import quickstart_wall

VARIANTS = ({}, {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5", "RAY_prestart_worker_first_driver": "0"})

runs = []
for _ in range(2):
    for env in VARIANTS:
        r = quickstart_wall(False, env)
        runs.append(r)
        print(env, round(r["wall_s"], 1), round(r["first_epoch_line_s"], 1), round(r["last_accuracy_line_s"], 1),
              r["train_images_per_s_median"], flush=True)
with open(sys.argv[1], "w") as f:
    json.dump(runs, f, indent=1)
