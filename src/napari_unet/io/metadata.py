"""What an image file says about its pixels besides their values: the axes and the
physical size of one pixel along each of them, kept from reading to writing so labels
land on their image in Fiji, napari or a NIfTI viewer.

Axes are the engine's letters (``T``, ``Z``, ``Y``, ``X``, ``C``; see
`napari_unet.common.arrays`), in the order of the array. Sizes are per axis letter, in
units named as in OME-Zarr (NGFF): ``"micrometer"``, ``"nanometer"``, ``"millimeter"``,
``"second"`` ... (`canonical_unit` maps the spellings of ImageJ, OME-TIFF and NIfTI).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

__all__ = ["ImageMeta", "canonical_unit", "output_metas", "input_axes"]

_UNITS = {
    "micrometer": ("micron", "microns", "um", "µm", "μm", "\\u00b5m", "micrometre", "micrometer"),
    "nanometer": ("nm", "nanometre", "nanometer"),
    "millimeter": ("mm", "millimetre", "millimeter"),
    "centimeter": ("cm", "centimetre", "centimeter"),
    "meter": ("m", "metre", "meter"),
    "angstrom": ("å", "angstrom", "\\u00c5"),
    "second": ("s", "sec", "secs", "second", "seconds"),
    "millisecond": ("ms", "msec", "millisecond", "milliseconds"),
    "microsecond": ("us", "µs", "usec", "microsecond", "microseconds"),
    "minute": ("min", "minute", "minutes"),
    "hour": ("h", "hr", "hour", "hours"),
}
_CANONICAL = {spelling: name for name, spellings in _UNITS.items() for spelling in spellings}
_NO_UNIT = ("", "pixel", "pixels", "px", "unknown", "none")


def canonical_unit(unit: Any) -> str | None:
    """The NGFF name of ``unit`` as ImageJ, OME-TIFF, NIfTI or OME-Zarr write it
    (``"micron"``, ``"\\u00B5m"``, ``"µm"``, ``"mm"``, ``"sec"`` ...); None for no unit
    (``"pixel"``, empty); an unknown spelling is kept as it is."""
    if unit is None:
        return None
    text = str(unit).strip()
    if text.lower() in _NO_UNIT:
        return None
    return _CANONICAL.get(text.lower(), _CANONICAL.get(text, text))


@dataclass(frozen=True)
class ImageMeta:
    """An image file's axes and pixel sizes.

    ``axes``: the engine's axes string of the array as read (e.g. ``"ZCYX"``), or None
    when the file does not say (then they are guessed from the shape, or ``--axes``).
    ``scale``: the size of one pixel along each axis letter that the file gives
    (``{"Z": 2.0, "Y": 0.25, "X": 0.25}``), in ``units`` of the same letter
    (``{"Z": "micrometer", ...}``; a letter without a unit: no unit known).
    ``native``: what one format needs to write its own kind back (a NIfTI file's affine
    and header; an OME-Zarr image's metadata), None for the others.
    """

    axes: str | None = None
    scale: Mapping[str, float] = field(default_factory=dict)
    units: Mapping[str, str] = field(default_factory=dict)
    native: Any = None

    def spacing(self, axes: str) -> tuple[float, ...]:
        """The pixel size along each letter of ``axes`` (1.0 where unknown)."""
        return tuple(float(self.scale.get(a, 1.0)) for a in axes)

    def pixel_sizes(self, axes: str = "ZYX") -> dict[str, float] | None:
        """The pixel sizes the file gives along the Z, Y, X letters of ``axes``
        (``{"Z": 2.0, "Y": 0.25, "X": 0.25}``) when they share one unit; None when it gives
        none, their units differ (then they cannot be compared) or one is not a positive
        number."""
        given = {a: float(self.scale[a]) for a in "ZYX" if a in axes and a in self.scale}
        if not given or len({self.units.get(a) for a in given}) > 1:
            return None
        if not all(0 < v < float("inf") for v in given.values()):  # e.g. ImageJ spacing 0
            return None
        return given

    def unit(self, letters: str = "ZYX") -> str | None:
        """The unit shared by the spatial ``letters`` present (None if none or they differ)."""
        found = {self.units.get(a) for a in letters if a in self.scale}
        return found.pop() if len(found) == 1 else None

    def with_axes(self, axes: str) -> "ImageMeta":
        """The same sizes for an array with ``axes`` (letters it lacks are dropped)."""
        return replace(self, axes=axes, scale={a: s for a, s in self.scale.items() if a in axes},
                       units={a: u for a, u in self.units.items() if a in axes})


def output_metas(meta: ImageMeta, axes: str, arrays: Mapping[Any, Any]) -> dict[Any, ImageMeta]:
    """The `ImageMeta` of each output of a prediction of an image with ``meta`` whose
    resolved axes are ``axes``: the spatial axes (``axes`` without ``C``), and a last
    ``C`` axis (classes) for an output with one dimension more (multi-class probabilities).
    An input whose file said nothing (no axes, no sizes) gives none: its outputs are
    written plain, as before, with the classes last."""
    if meta.axes is None and not meta.scale and meta.native is None:
        return {}
    spatial = axes.replace("C", "")
    out = {}
    for key, array in arrays.items():
        extra = len(array.shape) - len(spatial)
        if extra not in (0, 1):
            raise ValueError(f"An output of shape {tuple(array.shape)} does not fit the "
                             f"input's axes {axes!r}.")
        out[key] = meta.with_axes(spatial + "C" * extra)
    return out


def input_axes(meta: ImageMeta, axes: str | None, shape: tuple[int, ...], in_channels: int,
               name: str = "the image") -> str:
    """The axes to predict an image with: ``axes`` when given (``--axes``), else those its
    file names (``meta.axes``), else guessed from ``shape`` for a model of ``in_channels``."""
    from ..common.arrays import resolve_axes

    if axes or not meta.axes:
        return resolve_axes(axes, tuple(shape), in_channels)
    try:
        return resolve_axes(meta.axes, tuple(shape), in_channels)
    except ValueError as err:
        raise ValueError(f"{name}: its file gives the axes {meta.axes!r}, which cannot be "
                         f"predicted ({err}); give the axes to use with --axes (axes=...).") from err
