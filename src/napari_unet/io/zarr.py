"""Zarr stores: how a path names one (prediction of zarr arrays is in
`napari_unet.prediction.to_zarr`)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["is_zarr"]


def is_zarr(path: str | Path | None) -> bool:
    """True for paths ending in ``.zarr`` (OME-Zarr folders included)."""
    return bool(path) and str(path).rstrip("/\\").lower().endswith(".zarr")
