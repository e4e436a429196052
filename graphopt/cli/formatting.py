"""Small helpers for what the CLI shows and writes."""

from __future__ import annotations

from pathlib import Path

from graphopt import atomic

__all__ = ["human_count", "write_json_atomically"]


def human_count(value: float, unit: str = "") -> str:
    """1234567 -> '1.23M' (SI prefixes; bytes use the same decimal steps)."""
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.2f}{suffix}{unit}"
    return f"{value:g}{unit}"


def write_json_atomically(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename."""
    atomic.write_json(path, data, what="JSON file")
