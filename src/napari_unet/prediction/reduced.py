"""Labels without copying every probability back: the network's output reduced on the
device to the one map per pixel that decoding needs (`napari_unet.labels.decode.label_maps`).

A boundary network's three float32 probabilities per pixel become its masked interior
probability (one float32), a foreground network's probability a 0/1 uint8 mask, a
class network's K probabilities a uint8 class index: 3x to 4K x fewer bytes from the
device and in host memory, and no host pass over the probabilities. The reduction is
compiled into the forward pass (`napari_unet.backend.forward.Forward`), with the
same float32 operations as the host's `label_maps`, so the labels equal those decoded
from the probabilities exactly.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..labels.decode import MASKED, smallest_label_dtype
from ..labels.targets import BACKGROUND, INTERIOR

__all__ = ["Reduced", "device_reduction"]


def device_reduction(target: str, n_classes: int, instances: bool
                     ) -> tuple[tuple, Any, np.dtype]:
    """``(key, reduce, dtype)`` of `label_maps` for a ``target`` network of ``n_classes``
    outputs: ``reduce(ops, y, values)`` maps the probabilities ``y`` (B, ..., K) to (B,
    ...) of ``dtype``, with the foreground threshold in ``values[0]`` (float32, as the
    host compares float32 probabilities with it); ``key`` names it (for `forward_for`)."""
    if target == "classes":
        dtype = smallest_label_dtype(n_classes - 1)
        return (target, n_classes), (lambda ops, y, values: ops.cast(
            ops.argmax(y, axis=-1), dtype.name)), dtype
    if target == "foreground":
        return (target,), (lambda ops, y, values: ops.cast(y[..., 0] > values[0], "uint8")), \
            np.dtype(np.uint8)

    def boundary(ops, y, values):
        mask = (1.0 - y[..., BACKGROUND]) > values[0]
        if not instances:
            return ops.cast(mask, "uint8")
        return ops.where(mask, y[..., INTERIOR], ops.cast(MASKED, y.dtype))

    return (target, bool(instances)), boundary, np.dtype(np.float32 if instances else np.uint8)


class Reduced:
    """A `napari_unet.prediction.tiled.Network` whose output per pixel is the map
    `label_maps` gives for ``unet`` and `LabelOptions` ``options`` (filled in), reduced on
    the device (`device_reduction`): ``outputs`` 1, ``dtype`` that of the map."""

    cost = 1
    outputs = 1

    def __init__(self, unet: Any, options: Any):
        from ..backend.forward import forward_for

        key, reduce, self.dtype = device_reduction(
            unet.target, max(1, unet.config.n_classes), options.instances)
        self.forward = forward_for(unet.keras_model, key, reduce, self.dtype)
        self.values = np.array([options.decoding.threshold], np.float32)

    def run(self, windows: np.ndarray, origins: Sequence[tuple[int, ...]], lo: np.ndarray,
            scale: np.ndarray) -> Any:
        return self.forward.run(windows, lo, scale, self.values)

    def fetch(self, handle: Any) -> np.ndarray:
        return self.forward.fetch(handle)[..., None]
