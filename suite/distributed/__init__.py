"""The Ray layer: thin glue that runs the learner on Ray Train workers (and, later, Tune trials)."""
