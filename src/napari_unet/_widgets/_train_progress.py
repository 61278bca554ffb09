"""Where a training run stands, as the Train widget shows it: a progress position and the
"epoch 3/20" text of one `TrainProgress` event. Pure functions (no Qt, no ML)."""

from __future__ import annotations

from typing import Any

__all__ = ["clock", "progress_position"]


def clock(seconds: float) -> str:
    """``90`` -> ``"1:30"`` (minutes and seconds)."""
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def progress_position(event: Any, time_limit: float | None) -> tuple[int, int, str]:
    """``(value, maximum, text)`` of the progress bar for a `TrainProgress` ``event``.

    Without ``time_limit`` (seconds; None when epochs are set) the bar counts batches of all
    epochs and the text is "epoch 3/20"; with it, the training seconds the engine counts
    against the limit (``event.seconds``: not the engine's start or the compilation) and
    "epoch 3, 1:30 of 2:00 min". ``value`` stays below ``maximum`` while training runs:
    only the end of training fills the bar."""
    if time_limit is None:
        total = event.epochs * event.batches
        done = (event.epoch - 1) * event.batches + event.batch
        text = f"epoch {event.epoch}/{event.epochs}"
    else:
        total, done = int(time_limit), int(event.seconds)
        text = (f"epoch {event.epoch}, {clock(min(event.seconds, time_limit))} of "
                f"{clock(time_limit)} min")
    maximum = max(1, total)
    return min(done, maximum - 1), maximum, text
