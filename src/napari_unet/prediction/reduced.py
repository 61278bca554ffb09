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

__all__ = ["Reduced", "device_reduction", "PROBABILITIES_AS", "probability_reduction",
           "probabilities_as"]

# what probabilities can be handed back as: float32; float32 values rounded to bfloat16
# on the device (half the bytes copied back; within 2**-8 of float32, relative); uint8
# 0-255 (a quarter of the bytes, also on the host; p x 255 rounded, within 0.5 / 255)
PROBABILITIES_AS = ("float32", "bfloat16", "uint8")


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


def probability_reduction(kind: str) -> tuple[tuple | None, Any, np.dtype]:
    """``(key, reduce, dtype)`` (as `device_reduction`) handing probabilities back as
    ``kind`` (one of `PROBABILITIES_AS`): ``(None, None, float32)`` for float32."""
    if kind not in PROBABILITIES_AS:
        raise ValueError(f"probabilities_as must be one of {PROBABILITIES_AS}; got {kind!r}.")
    if kind == "uint8":
        return ("probabilities", kind), (lambda ops, y, values: ops.cast(
            ops.round(ops.cast(y, "float32") * 255.0), "uint8")), np.dtype(np.uint8)
    if kind == "bfloat16":  # copied back as bfloat16, widened to float32 on the host
        return ("probabilities", kind), (lambda ops, y, values: ops.cast(y, "bfloat16")), \
            np.dtype(np.float32)
    return None, None, np.dtype(np.float32)


def probabilities_as(probs: np.ndarray, kind: str) -> np.ndarray:
    """float32 ``probs`` as the host would receive them from `probability_reduction`
    ``kind``: the same values (uint8 0-255, or float32 rounded to bfloat16)."""
    if kind == "uint8":
        return np.round(probs * np.float32(255.0)).astype(np.uint8)
    if kind == "bfloat16":
        import ml_dtypes

        return probs.astype(ml_dtypes.bfloat16).astype(np.float32)
    probability_reduction(kind)  # checks the name
    return probs


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
