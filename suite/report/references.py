"""Published numbers (configs/references.yaml) as a DataFrame, one row per reference and setting."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from suite.errors import UserError

DEFAULT_REFERENCES = Path(__file__).resolve().parents[2] / "configs" / "references.yaml"
COLUMNS = ["label", "method", "dataset", "setting", "avg", "last", "params_m", "source", "note"]
REQUIRED = ("label", "method", "dataset", "source", "results")


def load_references(path: Path = DEFAULT_REFERENCES) -> pd.DataFrame:
    """Every published (avg, last) pair with its source; empty when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))["references"]
        rows = [reference_rows(entry) for entry in entries]
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path}: malformed references file ({err}); see configs/references.yaml") from err
    return pd.DataFrame([row for entry_rows in rows for row in entry_rows], columns=COLUMNS)


def reference_rows(entry: dict) -> list[dict]:
    missing = [key for key in REQUIRED if key not in entry]
    if missing:
        raise ValueError(f"entry '{entry.get('label', '?')}' lacks {', '.join(missing)}")
    return [
        {
            **{key: entry.get(key) for key in ("label", "method", "dataset", "params_m", "source", "note")},
            "setting": setting,
            "avg": float(numbers["avg"]),
            "last": float(numbers["last"]),
        }
        for setting, numbers in entry["results"].items()
    ]
