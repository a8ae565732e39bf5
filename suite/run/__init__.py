"""One run: its plan, its files (layout, schema), recording, checkpoints, execution in process or on Ray Train."""
