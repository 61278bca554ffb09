"""Progress of long jobs: the events training and prediction yield, and `drain`, which
runs such a generator to its end (what `train`, `predict` and the engine process do)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator

__all__ = ["TrainProgress", "TrainPreview", "PredictProgress", "drain"]


@dataclass
class TrainProgress:
    """One training event. ``epoch`` and ``batch`` count from 1.

    ``phase`` is ``"batch"`` after a call of the compiled training step (one batch, or
    a few on TensorFlow: ``batch`` counts those done in the epoch), ``"epoch"`` after the
    epoch's validation, and ``"calibrate"`` once when training has ended and the
    label settings are being chosen (which predicts the annotated planes and may take
    a while; ``logs`` is then empty); ``logs`` holds the epoch's running means of ``loss`` and
    ``iou`` (and at epoch end ``val_loss``, ``val_iou``). ``seconds``: training time so
    far, counted as the time limit counts it (from the second call of the compiled
    step: the engine's start and the network's compilation are not training).
    """

    epoch: int
    epochs: int
    batch: int
    batches: int
    phase: str
    logs: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class TrainPreview:
    """What the network makes of a preview region with its weights at ``epoch``, ``batch``
    (see `napari_unet.training.preview`): ``labels`` (H, W) as the model would label it,
    ``foreground`` (H, W) float32 probability, ``origin`` (row, column) of the region in
    plane ``plane`` of image ``image``, and ``seconds`` the preview took."""

    epoch: int
    batch: int
    labels: Any
    foreground: Any
    image: int
    plane: int
    origin: tuple[int, int]
    seconds: float


@dataclass
class PredictProgress:
    """Prediction windows done out of ``total``; ``message`` says when something noteworthy
    happened (a wasteful tile size, a retry after running out of memory)."""

    done: int
    total: int
    message: str = ""


def drain(gen: Generator[Any, Any, Any], callback: Callable[[Any], None] | None = None) -> Any:
    """Exhaust ``gen``, passing each yielded event to ``callback``; return its return value."""
    while True:
        try:
            event = next(gen)
        except StopIteration as done:
            return done.value
        if callback is not None:
            callback(event)
