"""Entry point: `python suite/run.py [CONFIG.yaml ...] [flags]`, also under `ray job submit`."""
import gc
import sys
from pathlib import Path

# Run as a script, Python puts suite/ itself first on sys.path; put the repository there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from suite.cli import main  # noqa: E402

if __name__ == "__main__":
    code = main()
    # Everything is written by now. Exempt the objects of torch, timm, Ray and pandas from the
    # garbage collection that interpreter shutdown runs: it took 3-4 s on 2 cores, for nothing.
    gc.freeze()
    sys.exit(code)
