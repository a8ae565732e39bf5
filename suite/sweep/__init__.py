"""A sweep: the sweep file and its trials (spec), Ray Tune running them (tune), summary.csv (summary)."""
