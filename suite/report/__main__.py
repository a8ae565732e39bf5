"""python -m suite.report DIR [--out OUT] [--style full|paper] [--band std|minmax]: build a report from every
results.json under DIR."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite.atomic import nearest_existing
from suite.errors import OneLineParser, UserError
from suite.report.build import build_report
from suite.report_options import BANDS, DEFAULT_BAND, DEFAULT_STYLE, STYLES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m suite.report", description=__doc__)
    parser.add_argument("results_dir", type=Path, metavar="DIR", help="a run or sweep directory")
    parser.add_argument("--out", type=Path, metavar="OUT", help="report directory (default: DIR/report)")
    parser.add_argument("--style", choices=tuple(STYLES), default=DEFAULT_STYLE,
                        help="; ".join(f"{name}: {text}" for name, text in STYLES.items()))
    parser.add_argument("--band", choices=tuple(BANDS), default=DEFAULT_BAND,
                        help="the spread plots shade: std (mean ± sample std) or minmax")
    return parser.parse_args(argv)


def check_out(out: Path | None) -> None:
    """--out must be, or become, a directory."""
    existing = out and nearest_existing(out)
    if existing is not None and not existing.is_dir():
        raise UserError(f"--out '{out}': '{existing}' is a file; expected a directory for the report")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        check_out(args.out)
        out_dir = build_report(args.results_dir, args.out, args.style, args.band)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report: {out_dir / 'index.html'} (tables: {out_dir / 'README.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
