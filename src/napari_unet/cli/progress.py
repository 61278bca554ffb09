"""What the commands show on a terminal while they work: progress bars for training
and tiles, and the first Ctrl-C turned into "stop training after this batch"."""

from __future__ import annotations

import signal
import sys

__all__ = ["progress_bar", "train_callback", "StopOnInterrupt", "TileBar"]


def progress_bar(total: int, desc: str, unit: str = "batch"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def train_callback(bar_desc: str):
    """A training callback drawing a progress bar sized from the first event."""
    bars: list = []

    def on_event(event) -> None:
        if not bars:
            bars.append(progress_bar(event.epochs * event.batches, bar_desc))
        bar = bars[0]
        if event.phase == "calibrate":
            bar.write("choosing the label settings (calibration)", file=sys.stderr)
            return
        if event.phase == "batch":  # a call of the compiled step may train several batches
            bar.update((event.epoch - 1) * event.batches + event.batch - bar.n)
            bar.set_postfix(epoch=f"{event.epoch}/{event.epochs}", loss=f"{event.logs['loss']:.3f}")
            return
        values = " ".join(f"{k} {v:.4f}" for k, v in event.logs.items())
        bar.write(f"epoch {event.epoch}/{event.epochs}: {values}", file=sys.stderr)

    on_event.close = lambda: [bar.close() for bar in bars]
    return on_event


class StopOnInterrupt:
    """While active, a first Ctrl-C asks training to stop after the batches in progress (so the
    best weights so far are kept and saved); a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupted: stopping after this batch and saving the best weights so far "
              "(Ctrl-C again to quit without saving)", file=sys.stderr)

    def __enter__(self) -> "StopOnInterrupt":
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._previous)


class TileBar:
    """A prediction callback: a tile progress bar, with the engine's messages printed above it."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, event) -> None:
        if self.bar is None:
            self.bar = progress_bar(event.total, "predicting", unit="tile")
        if event.message:
            self.bar.write(f"note: {event.message}", file=sys.stderr)
        self.bar.total = event.total
        self.bar.n = event.done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
