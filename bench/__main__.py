"""`python -m bench [--quick] [--out DIR] ...`: the speed benchmarks (bench/perf)."""
import sys

from bench.perf.cli import main

sys.exit(main())
