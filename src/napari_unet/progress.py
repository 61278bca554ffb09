"""Running the engine's progress generators to completion."""

from __future__ import annotations

from typing import Any, Callable, Generator


def drain(gen: Generator[Any, Any, Any], callback: Callable[[Any], None] | None = None) -> Any:
    """Exhaust ``gen``, passing each yielded event to ``callback``; return its return value."""
    while True:
        try:
            event = next(gen)
        except StopIteration as done:
            return done.value
        if callback is not None:
            callback(event)
