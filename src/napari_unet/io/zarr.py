"""Zarr stores: how a path names one, and opening one as an image: a plain zarr array, or
an OME-Zarr (NGFF) image's level 0 with its axes and pixel sizes (`napari_unet.io.ngff`).
Prediction of zarr images is in `napari_unet.prediction.to_zarr`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .metadata import ImageMeta
from .ngff import is_ngff, read_ngff

__all__ = ["is_zarr", "open_zarr_image"]


def is_zarr(path: str | Path | None) -> bool:
    """True for paths ending in ``.zarr`` (OME-Zarr folders included)."""
    return bool(path) and str(path).rstrip("/\\").lower().endswith(".zarr")


def open_zarr_image(path: str | Path) -> tuple[Any, ImageMeta]:
    """The zarr image at ``path`` as a lazy dask array and its `ImageMeta` (NGFF: axes,
    scale, units; a plain array: nothing known). Raises ``ValueError`` when it is neither."""
    if is_ngff(path):
        return read_ngff(path)
    import dask.array as da

    try:
        return da.from_zarr(str(path)), ImageMeta()
    except Exception as err:  # noqa: BLE001 - any zarr failure means an unreadable input
        raise ValueError(f"Could not read {str(path)!r} as a zarr array or an OME-Zarr "
                         f"image: {err}") from err
