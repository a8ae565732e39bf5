"""python -m suite.report DIR [--out OUT] [--style full|paper] [--band std|minmax]: build a report from every
results.json under DIR."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite.errors import UserError
from suite.report.build import build_report
from suite.report_options import BANDS, DEFAULT_BAND, DEFAULT_STYLE, STYLES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m suite.report", description=__doc__)
    parser.add_argument("results_dir", type=Path, metavar="DIR", help="a run or sweep directory")
    parser.add_argument("--out", type=Path, metavar="OUT", help="report directory (default: DIR/report)")
    parser.add_argument("--style", choices=tuple(STYLES), default=DEFAULT_STYLE,
                        help="; ".join(f"{name}: {text}" for name, text in STYLES.items()))
    parser.add_argument("--band", choices=tuple(BANDS), default=DEFAULT_BAND,
                        help="the spread plots shade: std (mean ± sample std) or minmax")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        out_dir = build_report(args.results_dir, args.out, args.style, args.band)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report: {out_dir / 'index.html'} (tables: {out_dir / 'README.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
