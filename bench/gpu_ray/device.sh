#!/usr/bin/env bash
# On the lent GPU machine, from the repository root: install the carried wheels (.whl, made by
# `python -m bench.gpu_ray.wheels`) into /tmp/site as the device notes say, skipping that when a
# warm machine already has them, then run the measurements into $OUT. Arguments go to run.py.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:?OUT is the folder whose files come back}
if ! PYTHONPATH=/tmp/site python3 -c "import ray" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "error: installing .whl/*.whl into /tmp/site failed" >&2; exit 3; }
fi
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv,noheader
python3 -m bench.gpu_ray.run --out "$out" "$@" 2>&1 | tee "$out/log.txt"
