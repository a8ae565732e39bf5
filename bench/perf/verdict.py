"""A target's verdict (met, not met, or not applicable), and a part's figures to judge it from."""
from __future__ import annotations


def figures(results: dict, name: str) -> dict:
    """A part's figures; {} where it was skipped or failed (its entry is then a string or None)."""
    value = results.get(name)
    return value if isinstance(value, dict) else {}


def target(name, goal, value, threshold, note="", applicable=True) -> dict:
    met = None if (value is None or not applicable) else bool(value >= threshold)
    return {"name": name, "goal": goal, "value": value, "threshold": threshold, "met": met, "note": note}
