"""Reports from results files only: paper-shaped tables, plots and one page.

    python -m suite.report DIR [--out OUT]

`build_report(results_dir, out_dir)` does the same from code (the run and sweep drivers call
it at the end). Nothing here imports Ray or torch.
"""
from suite.report.build import build_report

__all__ = ["build_report"]
