"""The report's options as plain data: the config validates report.style and report.band against them and
the report reads them, so that neither imports the other."""

STYLES = {
    "full": "every table and plot, a section per run (heat maps) and the class orders",
    "paper": "what a paper prints: the main, comparison, forgetting, per-step, validation and cost tables, "
             "ablations and one figure per data set",
}
BANDS = {"std": "band: ± std over n runs", "minmax": "band: min–max over runs"}  # → the plots' legend text
DEFAULT_STYLE, DEFAULT_BAND = "full", "std"
