"""Training progress on a terminal: a running batch line and one line per epoch."""

from __future__ import annotations

import time
from typing import Any, Callable

from ..common.progress import TrainProgress

__all__ = ["console_progress"]


def console_progress(stream: Any) -> Callable[[TrainProgress], None]:
    """A callback writing training progress to ``stream``: an in-place batch line when
    ``stream`` is a terminal, and one line per epoch with its losses and elapsed time."""
    started = time.perf_counter()
    tty = hasattr(stream, "isatty") and stream.isatty()

    def show(event: TrainProgress) -> None:
        if event.phase == "calibrate":
            stream.write(f"{chr(13) if tty else ''}choosing the label settings (calibration)\n")
            stream.flush()
            return
        if event.phase == "batch":
            if tty:
                stream.write(f"\repoch {event.epoch}/{event.epochs} batch {event.batch}/"
                             f"{event.batches} loss {event.logs['loss']:.4f}")
                stream.flush()
            return
        values = " ".join(f"{k} {v:.4f}" for k, v in event.logs.items())
        stream.write(f"{chr(13) if tty else ''}epoch {event.epoch}/{event.epochs}: {values} "
                     f"({time.perf_counter() - started:.0f} s)\n")
        stream.flush()

    return show
