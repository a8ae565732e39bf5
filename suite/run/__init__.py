"""One run: its plan (data loaded once), the per-task session both paths share, its files (layout,
recorder, checkpoints, history), execution in process or on Ray Train, the driver's supervision."""
