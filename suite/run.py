"""Entry point: `python suite/run.py [CONFIG.yaml ...] [flags]`, also under `ray job submit`."""
import sys
from pathlib import Path

# Run as a script, Python puts suite/ itself first on sys.path; put the repository there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from suite.cli import console  # noqa: E402

if __name__ == "__main__":
    console()
