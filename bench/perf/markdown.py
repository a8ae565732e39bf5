"""How perf.md writes a figure, a spread and a table (shared by every part's section)."""
from __future__ import annotations

from typing import Callable, Optional


def num(x, digits=1) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def span(s: dict, digits=1) -> str:
    """A summary's range, half its relative spread and its sample count."""
    return f"{num(s['min'], digits)}–{num(s['max'], digits)} (±{s['spread'] * 50:.0f}%, n={s['n']})"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def part_section(title: str, part, body: Callable[[dict], list[str]], key: Optional[str] = None) -> list[str]:
    """A part's section: `title`, then `body(part)` where the part measured (its entry a dict, with
    `key` set if given), else why not (its entry: why it was skipped; None where it failed)."""
    if not isinstance(part, dict) or (key and not part.get(key)):
        return [title, "", f"Not measured: {part or 'skipped'}", ""]
    return [title, "", *body(part)]
