"""`LabelOptions`: what the user asks of the labels (instances or a mask, split touching
objects, link objects across Z) and the decoding values they set themselves; every value
they leave out is the model's own (`napari_unet.model.decoding.Decoding`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from ..common.checks import check_switch, is_real
from ..model.decoding import DECODING_FIELDS, Decoding

__all__ = ["LabelOptions", "check_spacing", "relative_sampling"]


@dataclass(frozen=True)
class LabelOptions:
    """How probabilities become labels; every value is checked when it is created.

    ``threshold``, ``min_size``, ``seed_threshold``, ``split_distance``, ``split_ratio``:
    the values of a `Decoding` (there documented) that the user sets; None takes the model's own
    (calibrated) value. ``instances``: one id per object (else a 0/1 mask, or the
    class map of a multi-class model). ``split_touching``: separate touching objects
    of a foreground model by a watershed on the distance transform. ``link_planes``:
    label objects in 3D across Z instead of per plane. ``spacing``: the physical pixel
    size per spatial axis (``{"Z": 2.0, "Y": 0.25, "X": 0.25}``, one unit; None or a
    missing axis: 1), so distance transforms (seed and touching-object splits, and with
    them objects linked in 3D) measure true distances; a split distance then counts
    pixels of the finest axis.
    """

    threshold: float | None = None
    instances: bool = True
    min_size: int | None = None
    split_touching: bool = False
    link_planes: bool = False
    seed_threshold: float | None = None
    split_distance: int | None = None
    split_ratio: float | None = None
    spacing: Any = None

    def __post_init__(self) -> None:
        try:
            own = Decoding(**self._own())  # checks the values the user set
        except ValueError as err:
            raise ValueError(f"{err} (or None for the model's own value)") from None
        for name, value in self._own().items():
            object.__setattr__(self, name, getattr(own, name))
        for name in ("instances", "split_touching", "link_planes"):
            object.__setattr__(self, name, check_switch(name, getattr(self, name)))
        object.__setattr__(self, "spacing", check_spacing(self.spacing))

    def _own(self) -> dict[str, Any]:
        """The decoding values the user set (not None)."""
        return {k: getattr(self, k) for k in DECODING_FIELDS if getattr(self, k) is not None}

    def links(self, spatial_axes: str) -> bool:
        """Whether labels with ``spatial_axes`` are instances linked across Z (a unit is a
        whole Z stack, not a plane)."""
        return self.instances and self.link_planes and "Z" in spatial_axes

    def filled(self, model: Decoding) -> LabelOptions:
        """These options with every decoding value left as None taken from ``model``."""
        return replace(self, **{**model.to_dict(), **self._own()})

    def for_unet(self, unet: Any, spatial_axes: str = "YX") -> LabelOptions:
        """`filled` with the values of ``unet`` (a `UNetModel` or a `ModelSummary`) for
        labels with ``spatial_axes``: its values for objects linked in 3D when these
        options link instances across the Z of those axes and it has them. A 3D network's
        instances are always linked across Z (it predicts volumes)."""
        summary = getattr(unet, "summary", unet)
        options = self
        if summary.config.ndim == 3 and self.instances:  # a 3D network's objects are 3D
            options = replace(self, link_planes=True)
        return options.filled(summary.decoding_for(options.links(spatial_axes)))

    def sampling(self, unit_axes: str) -> tuple[float, ...] | None:
        """`relative_sampling` of these options' ``spacing`` for ``unit_axes``."""
        return relative_sampling(self.spacing, unit_axes)

    @property
    def decoding(self) -> Decoding:
        """The `Decoding` of filled options (`filled`, `for_unet`); ``ValueError`` before."""
        if len(self._own()) < len(DECODING_FIELDS):
            raise ValueError("these label options need the model's values filled in: pass "
                             "options.for_unet(model, axes).")
        return Decoding(**self._own())


def relative_sampling(spacing: Any, unit_axes: str) -> tuple[float, ...] | None:
    """The distance-transform ``sampling`` of a unit with ``unit_axes`` (e.g. ``"ZYX"``) and
    pixel sizes ``spacing`` (checked by `check_spacing`; None or a missing axis: 1): each
    axis' pixel size over the finest one, or None when they are all equal."""
    sizes = dict(check_spacing(spacing) or ())
    values = [sizes.get(a, 1.0) for a in unit_axes]
    finest = min(values)
    if max(values) == finest:
        return None
    return tuple(v / finest for v in values)


def check_spacing(spacing: Any) -> tuple[tuple[str, float], ...] | None:
    """``spacing`` as sorted ``(axis, size)`` pairs of spatial axes Z, Y, X with finite
    positive sizes (None stays None); ``ValueError`` saying what to give otherwise."""
    if spacing is None:
        return None
    try:
        pairs = dict(spacing).items()
    except (TypeError, ValueError):
        raise ValueError(f"spacing must map spatial axes to pixel sizes, e.g. "
                         f"{{'Z': 2.0, 'Y': 0.5, 'X': 0.5}}; got {spacing!r}.") from None
    out = []
    for axis, size in pairs:
        if axis not in ("Z", "Y", "X") or not is_real(size) or not 0 < float(size) < math.inf:
            raise ValueError(f"spacing needs positive finite pixel sizes of the axes Z, Y, X; "
                             f"got {axis!r}: {size!r}.")
        out.append((axis, float(size)))
    return tuple(sorted(out))
