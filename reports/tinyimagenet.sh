#!/usr/bin/env bash
# The Tiny-ImageNet-100 benchmark: configs/sweeps/tinyimagenet.yaml through Ray Tune, then the
# report into reports/tinyimagenet/ (committed). Resumable: run it again after an interruption and
# the sweep goes on (finished trials kept, unfinished ones resumed from their last task).
# Usage: bash reports/tinyimagenet.sh /path/to/tiny-imagenet-100 [RUNS_DIR]
set -euo pipefail
data=${1:?usage: bash reports/tinyimagenet.sh TINY_IMAGENET_DIR [RUNS_DIR]}
runs=${2:-runs}
cd "$(dirname "$0")/.."
rc=0
python suite/run.py --sweep configs/sweeps/tinyimagenet.yaml --data-path "$data" --output-basedir "$runs" || rc=$?
python -m suite.report "$runs/tinyimagenet" --out reports/tinyimagenet --style paper  # what has finished so far
exit $rc
