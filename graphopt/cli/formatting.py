"""Small helpers for what the CLI shows and writes.

JSON the CLI writes (``--json``, ``--report``) holds numbers as numbers: an infinite SQNR
(outputs equal: no noise) is ``"sqnr_db": null`` with ``"sqnr_db_inf": 1`` beside it (``-1``
for a zero signal), see :func:`json_ready`; every report carries ``graphopt_version``.
"""

from __future__ import annotations

from pathlib import Path

from graphopt import atomic

__all__ = ["human_count", "write_json_atomically", "json_ready"]


def human_count(value: float, unit: str = "") -> str:
    """1234567 -> '1.23M' (SI prefixes; bytes use the same decimal steps)."""
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.2f}{suffix}{unit}"
    return f"{value:g}{unit}"


def write_json_atomically(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename."""
    atomic.write_json(path, data, what="JSON file")


def json_ready(data: object) -> object:
    """``data`` with every ``"inf"``/``"-inf"`` under a ``*sqnr_db`` key turned into ``null``
    and a ``*sqnr_db_inf`` flag of 1/-1 beside it (see the module docstring)."""
    if isinstance(data, dict):
        result = {}
        for key, value in data.items():
            if (isinstance(key, str) and key.endswith("sqnr_db")
                    and isinstance(value, str | float) and str(value) in ("inf", "-inf")):
                result[key] = None
                result[f"{key}_inf"] = -1 if str(value).startswith("-") else 1
            else:
                result[key] = json_ready(value)
        return result
    if isinstance(data, list | tuple):
        return [json_ready(value) for value in data]
    return data
