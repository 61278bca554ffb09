"""Sizes in physical units: the smallest object as an area or a volume in the image file's
own units (µm², µm³ ...), turned into the pixel count the decoding takes, and the file's
pixel sizes given to the decoding's distance transforms, per image (each file of a folder
has its own pixel size)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

__all__ = ["min_size_in_pixels", "with_file_spacing"]


def min_size_in_pixels(size: float, meta: Any, spatial_axes: str, linked: bool) -> int:
    """The pixel count of an object of ``size`` physical units: an area (unit²) over Y and
    X for objects labelled plane by plane, a volume (unit³) over Z, Y and X for objects
    linked across Z (``linked``). ``meta`` is the image's `ImageMeta`; ``ValueError``
    when it gives no pixel size along one of those axes, or they differ in unit."""
    axes = "ZYX" if linked and "Z" in spatial_axes else "YX"
    missing = [a for a in axes if a not in meta.scale]
    if missing:
        raise ValueError(f"a minimum size in physical units needs the pixel size along "
                         f"{', '.join(missing)}, which the file does not give; give "
                         "--min-size in pixels instead.")
    units = {meta.units.get(a) for a in axes}
    if len(units) > 1:
        raise ValueError(f"the pixel sizes along {axes} are in different units "
                         f"({', '.join(sorted(str(u) for u in units))}); give --min-size in pixels.")
    per_pixel = math.prod(float(meta.scale[a]) for a in axes)
    return max(0, math.ceil(size / per_pixel - 1e-9))


def with_file_spacing(options: Any, meta: Any, axes: str, size: float | None) -> Any:
    """``options`` (a `LabelOptions`) for an image with ``meta`` and resolved ``axes``: its
    pixel sizes along Z, Y and X as ``spacing`` (when the file gives them in one unit and
    the user gave none), so splits and linking measure true distances, and ``min_size``
    set from the physical ``size`` (unchanged when ``size`` is None)."""
    spatial = axes.replace("C", "")
    given = meta.pixel_sizes(spatial)
    if options.spacing is None and given:
        options = replace(options, spacing=given)
    if size is None:
        return options
    return replace(options, min_size=min_size_in_pixels(size, meta, spatial,
                                                        options.links(spatial)))
