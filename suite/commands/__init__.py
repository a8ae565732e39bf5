"""The doors of the command line: one run (run.py) and a sweep (sweep.py), each plan, execute, report."""
