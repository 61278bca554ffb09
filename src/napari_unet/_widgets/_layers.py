"""Translate between napari layers and the arrays the core works on (no ML here)."""

from __future__ import annotations

from typing import Any

import numpy as np


def layer_array(layer: Any) -> Any:
    """The full-resolution data of an Image/Labels layer (level 0 of a multiscale layer).

    Returns the layer's own array object (numpy, dask or zarr): never modify it.
    """
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    return data


def layer_axes(layer: Any, n_channels_model: int | None = None) -> str:
    """Axes string for a layer: YX / ZYX / TZYX, plus C for RGB(A) layers."""
    from ..arrays import default_axes

    data = layer_array(layer)
    rgb = bool(getattr(layer, "rgb", False))
    return default_axes(tuple(data.shape), n_channels_model or 1, rgb=rgb)


def spatial_placement(layer: Any) -> dict[str, Any]:
    """``scale`` and ``translate`` of an image layer without its RGB channel axis."""
    return {"scale": tuple(layer.scale), "translate": tuple(layer.translate)}


def labels_snapshot(layer: Any) -> np.ndarray:
    """A copy of a Labels layer's data, safe to use in a worker while the user paints."""
    return np.array(layer_array(layer), copy=True)
