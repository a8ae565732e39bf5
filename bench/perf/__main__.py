"""`python -m bench.perf`: the same as `python -m bench`."""
import sys

from bench.perf.cli import main

sys.exit(main())
