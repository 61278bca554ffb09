"""Live preview while training: every few seconds, the network with its current weights
labels one region (the plane or field of view on screen), and training goes on.

`Preview` says what to preview and how often; `PreviewJob` runs it on the training
thread between two batches (`napari_unet.training.fit_loop`), so it sees the weights as they are
and never races the optimiser. The preview takes at most a tenth of the training time:
after a preview that took ``d`` seconds the next one waits at least ``9 d``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..common import arrays
from ..common.checks import check_whole, is_real
from ..common.progress import TrainPreview, drain

__all__ = ["Preview", "PreviewJob"]

SHARE = 0.1  # most of the training time previews may take


@dataclass(frozen=True)
class Preview:
    """A region to preview during training.

    ``image``: index of the training image; ``plane``: index of its YX plane (leading
    axes flattened, 0 for a 2D image); ``rows`` and ``cols``: ``(start, stop)`` pixel
    ranges of the region (None: the whole side); ``every``: seconds between previews
    (>= 0.5; previews are also spaced so they take at most 10 % of the time).
    """

    image: int = 0
    plane: int = 0
    rows: tuple[int, int] | None = None
    cols: tuple[int, int] | None = None
    every: float = 5.0

    def __post_init__(self) -> None:
        check_whole("preview image", self.image, 0)
        check_whole("preview plane", self.plane, 0)
        for name in ("rows", "cols"):
            span = getattr(self, name)
            if span is None:
                continue
            if (not isinstance(span, (tuple, list)) or len(span) != 2
                    or not all(isinstance(v, (int, np.integer)) for v in span)
                    or not 0 <= span[0] < span[1]):
                raise ValueError(f"preview {name} must be (start, stop) pixel indices with "
                                 f"0 <= start < stop, or None; got {span!r}.")
            object.__setattr__(self, name, (int(span[0]), int(span[1])))
        if not is_real(self.every) or self.every < 0.5:
            raise ValueError(f"preview every must be a number of seconds >= 0.5; got "
                             f"{self.every!r}.")


class PreviewJob:
    """Runs a `Preview` of ``images[preview.image]`` (axes ``axes``, one entry per image,
    None: guessed) for ``unet``.

    The region is cut once and normalised with the statistics of the whole image, as
    prediction after training will; ``ValueError`` if it lies outside the image.
    """

    def __init__(self, unet: Any, preview: Preview, images: Sequence[Any],
                 axes: Sequence[str]):
        if not isinstance(preview, Preview):
            raise ValueError(f"preview must be a napari_unet.training.preview.Preview or None; "
                             f"got {type(preview).__name__}.")
        if preview.image >= len(images):
            raise ValueError(f"preview image {preview.image} does not exist: there are "
                             f"{len(images)} training images (0..{len(images) - 1}).")
        image = arrays.check_image(images[preview.image])
        axes = arrays.resolve_axes(axes[preview.image], image.shape, unet.config.in_channels)
        planes, _ = arrays.to_planes(image, axes)
        if preview.plane >= len(planes):
            raise ValueError(f"preview plane {preview.plane} does not exist: the image has "
                             f"{len(planes)} planes.")
        h, w = planes.shape[1:3]
        rows, cols = preview.rows or (0, h), preview.cols or (0, w)
        if rows[1] > h or cols[1] > w:
            raise ValueError(f"the preview region rows {rows}, columns {cols} lies outside the "
                             f"image's {h} x {w} pixels.")
        self.unet, self.preview = unet, preview
        self.stats = unet.normalization.statistics(planes)
        self.region = np.array(planes[preview.plane, rows[0]:rows[1], cols[0]:cols[1]])
        self.origin = (rows[0], cols[0])
        self.last, self.duration, self.runs = time.perf_counter(), 0.0, 0

    def due(self) -> bool:
        """True when the next preview may run (``every`` s and 9x the last one's time passed)."""
        wait = max(float(self.preview.every), self.duration * (1 - SHARE) / SHARE)
        return time.perf_counter() - self.last >= wait

    def run(self, epoch: int, batch: int) -> TrainPreview:
        """Label the region with the network's current weights; returns a `TrainPreview`."""
        from ..labels.decode import labels_from_probabilities
        from ..labels.options import LabelOptions
        from ..prediction.tiled import iter_probabilities

        started = time.perf_counter()
        unet = self.unet
        region = self.region[..., 0] if self.region.shape[-1] == 1 else self.region
        axes = "YX" if region.ndim == 2 else "YXC"
        probs = drain(iter_probabilities(unet, region, axes=axes, stats=self.stats))
        options = LabelOptions().for_unet(unet)
        labels = labels_from_probabilities(probs, "YX", options, unet.target)
        foreground = probs if probs.ndim == 2 else 1.0 - probs[..., 0]
        self.last = time.perf_counter()
        # the first preview also compiles the forward pass once: it does not set the pace
        self.duration = self.last - started if self.runs else 0.0
        self.runs += 1
        return TrainPreview(epoch, batch, labels, foreground.astype(np.float32),
                            self.preview.image, self.preview.plane, self.origin, self.duration)
