"""TIFF files with their metadata: axes and pixel sizes from ImageJ hyperstacks, OME-TIFF
and tifffile's own shaped files; outputs written as ImageJ hyperstacks (or OME-TIFF for
a ``.ome.tif`` name, and for dtypes ImageJ cannot hold) with the input's axes, pixel sizes
and unit, so they overlay in Fiji.

Axes (`ImageMeta.axes`) come from tifffile's ``series.axes`` when the file names them
(ImageJ, OME, or a shaped file with ``axes``): ImageJ and OME ``C`` and RGB samples
``S`` are the channel axis ``C``. Other files (plain multi-page TIFF) give None: the axes
are then guessed from the shape as before. Pixel sizes are physical: ImageJ's
``XResolution``/``YResolution`` (pixels per unit), ``spacing`` (Z) and ``finterval`` (T)
with ``unit``; OME's ``PhysicalSizeX/Y/Z`` with their units (default micrometre).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from .metadata import ImageMeta, canonical_unit

__all__ = ["read_tiff", "tiff_header", "write_tiff"]

_TIFF_TO_ENGINE = {"T": "T", "Z": "Z", "Y": "Y", "X": "X", "C": "C", "S": "C"}
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)
_IMAGEJ_UNITS = {"micrometer": "micron", "nanometer": "nm", "millimeter": "mm",
                 "centimeter": "cm", "meter": "m"}
_OME_UNITS = {"micrometer": "µm", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm",
              "meter": "m", "angstrom": "Å", "second": "s", "millisecond": "ms",
              "microsecond": "µs", "minute": "min", "hour": "h"}


def tiff_header(tif: Any) -> tuple[tuple[int, ...], np.dtype, ImageMeta]:
    """Shape, dtype and `ImageMeta` of an open ``tifffile.TiffFile``'s first series."""
    series = tif.series[0]
    meta = ImageMeta(axes=_engine_axes(tif, series.axes))
    if tif.is_ome:
        meta = _ome_sizes(tif.ome_metadata, meta)
    elif tif.is_imagej:
        meta = _imagej_sizes(tif, meta)
    return tuple(int(n) for n in series.shape), np.dtype(series.dtype), meta


def read_tiff(path: Path) -> tuple[np.ndarray, ImageMeta]:
    """The pixels of a TIFF file's first series (axes as in the file) and its `ImageMeta`."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        _, _, meta = tiff_header(tif)
        return tif.series[0].asarray(), meta


def _engine_axes(tif: Any, axes: str) -> str | None:
    """tifffile's axes as engine letters, when the file itself names them; else None."""
    named = tif.is_imagej or tif.is_ome or (
        tif.is_shaped and "axes" in (tif.shaped_metadata or [{}])[0])
    if not named or set(axes) - set(_TIFF_TO_ENGINE) or ("C" in axes and "S" in axes):
        return None
    return "".join(_TIFF_TO_ENGINE[a] for a in axes)


def _imagej_sizes(tif: Any, meta: ImageMeta) -> ImageMeta:
    info = tif.imagej_metadata or {}
    unit = canonical_unit(info.get("unit"))
    page = tif.pages[0]
    scale = {}
    for letter, tag in (("X", "XResolution"), ("Y", "YResolution")):
        value = page.tags.get(tag)
        if value is not None and value.value[0]:
            scale[letter] = value.value[1] / value.value[0]  # pixels per unit -> size
    if "spacing" in info:
        scale["Z"] = float(info["spacing"])
    if unit is None and all(s == 1.0 for s in scale.values()):
        scale = {}  # ImageJ's "no calibration": 1 pixel per pixel
    units = {a: unit for a in scale if unit}
    if info.get("finterval"):
        scale["T"] = float(info["finterval"])
        units["T"] = canonical_unit(info.get("tunit", "sec")) or "second"
    axes = meta.axes or ""
    return ImageMeta(meta.axes, {a: s for a, s in scale.items() if a in axes or not axes},
                     {a: u for a, u in units.items() if a in axes or not axes})


def _ome_sizes(xml: str, meta: ImageMeta) -> ImageMeta:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return meta
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return meta
    scale, units = {}, {}
    for letter in "XYZ":
        value = pixels.get(f"PhysicalSize{letter}")
        if value is not None:
            scale[letter] = float(value)
            units[letter] = canonical_unit(pixels.get(f"PhysicalSize{letter}Unit", "µm"))
    if pixels.get("TimeIncrement") is not None:
        scale["T"] = float(pixels.get("TimeIncrement"))
        units["T"] = canonical_unit(pixels.get("TimeIncrementUnit", "s"))
    return ImageMeta(meta.axes, scale, {a: u for a, u in units.items() if u})


def write_tiff(path: Path, array: np.ndarray, meta: ImageMeta | None, ome: bool = False) -> None:
    """Write ``array`` (axes ``meta.axes``) to ``path``: OME-TIFF when ``ome``, else an
    ImageJ hyperstack (uint8, uint16, float32; other dtypes, which ImageJ cannot hold,
    as OME-TIFF, which keeps the axes, pixel sizes, Z spacing and units). Without
    ``meta`` (or its axes) a plain zlib-compressed TIFF."""
    import tifffile

    if meta is None or meta.axes is None:
        tifffile.imwrite(path, array, compression="zlib")
        return
    if len(meta.axes) != array.ndim:
        raise ValueError(f"Axes {meta.axes!r} do not fit an array of shape {array.shape}.")
    if ome or np.dtype(array.dtype) not in _IMAGEJ_DTYPES:
        tifffile.imwrite(path, array, ome=True, photometric="minisblack", compression="zlib",
                         metadata={"axes": meta.axes, **_ome_metadata(meta)})
        return
    array, axes = _imagej_order(array, meta.axes)
    resolution = tuple(1.0 / meta.scale[a] for a in "XY") if {"X", "Y"} <= set(meta.scale) \
        else None
    tifffile.imwrite(path, array, imagej=True, photometric="minisblack", compression="zlib",
                     resolution=resolution, metadata={"axes": axes, **_imagej_metadata(meta)})


def _imagej_order(array: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """``array`` with its axes in ImageJ's order (T, Z, C, Y, X) and that axes string."""
    order = [axes.index(a) for a in "TZCYX" if a in axes]
    return np.transpose(array, order), "".join(axes[i] for i in order)


def _imagej_metadata(meta: ImageMeta) -> dict[str, Any]:
    out: dict[str, Any] = {}
    unit = meta.unit("XYZ")
    if unit:
        text = _IMAGEJ_UNITS.get(unit, unit)
        out["unit"] = text.encode("ascii", "backslashreplace").decode("ascii")
    if "Z" in meta.scale:
        out["spacing"] = float(meta.scale["Z"])
    if "T" in meta.scale:
        out["finterval"] = float(meta.scale["T"])
    return out


def _ome_metadata(meta: ImageMeta) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for letter in "XYZ":
        if letter in meta.scale:
            out[f"PhysicalSize{letter}"] = float(meta.scale[letter])
            unit = meta.units.get(letter)
            if unit:
                out[f"PhysicalSize{letter}Unit"] = _OME_UNITS.get(unit, unit)
    if "T" in meta.scale:
        out["TimeIncrement"] = float(meta.scale["T"])
        if meta.units.get("T"):
            out["TimeIncrementUnit"] = _OME_UNITS.get(meta.units["T"], meta.units["T"])
    return out
