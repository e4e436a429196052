"""Notices: one-line news of slow first-time work (building a zoo model into the cache) for
whoever shows things to a person.

Libraries call :func:`notice`; the CLI :func:`listen`\\ s and prints the line on stderr. No
listener: nothing is shown (the Python API stays quiet). Cheap to import.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["notice", "listen"]

_listeners: list[Callable[[str], None]] = []


def notice(text: str) -> None:
    """Tell every listener ``text``."""
    for listener in list(_listeners):
        listener(text)


def listen(listener: Callable[[str], None]) -> Callable[[], None]:
    """Hear every notice; returns a function that stops listening."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)
