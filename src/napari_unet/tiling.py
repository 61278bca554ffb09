"""Tile plans for exact tiled prediction (pure arithmetic, no Keras).

A plan cuts an image whose sides are multiples of ``m = 2**depth`` into windows
of one fixed shape (one compiled graph, no retracing). Each window's *core* is
at least ``halo`` pixels from any window edge that is not an image edge, so the
core sees exactly the context it would see in a whole-image pass: tiled and
untiled predictions agree to float rounding. Window starts are multiples of
``m``, so every tile keeps the pooling grid of the whole image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product


@dataclass(frozen=True)
class Tile:
    """One window: where to read it and which part of its output to keep.

    ``window`` are the (y, x) slices of the padded image fed to the network;
    ``core`` the (y, x) slices of the output to keep, in image coordinates;
    ``core_in_window`` the same region in window coordinates.
    """

    window: tuple[slice, slice]
    core: tuple[slice, slice]
    core_in_window: tuple[slice, slice]


def _plan_1d(n: int, window: int, halo: int) -> list[tuple[int, int, int]]:
    """(window start, core start, core stop) along one axis of length ``n``."""
    if n <= window:
        return [(0, 0, n)]
    core = window - 2 * halo
    out = []
    for origin in range(0, n, core):
        start = min(max(origin - halo, 0), n - window)
        out.append((start, origin, min(origin + core, n)))
    return out


def plan_tiles(shape: tuple[int, int], window: int, halo: int, multiple: int) -> tuple[tuple[int, int], list[Tile]]:
    """Plan windows over an image of ``shape`` (padded to multiples of ``multiple``).

    Returns ``(window_shape, tiles)``; ``window_shape`` is ``min(window, side)``
    per axis. ``window`` must be a multiple of ``multiple`` larger than ``2*halo``.
    """
    h, w = shape
    if h % multiple or w % multiple:
        raise ValueError(f"Image shape {shape} must be padded to multiples of {multiple}.")
    if window % multiple or window <= 2 * halo:
        raise ValueError(
            f"Tile size {window} must be a multiple of {multiple} and larger than "
            f"twice the halo ({2 * halo})."
        )
    ys, xs = _plan_1d(h, window, halo), _plan_1d(w, window, halo)
    wh, ww = min(window, h), min(window, w)
    tiles = [
        Tile(
            window=(slice(ys0, ys0 + wh), slice(xs0, xs0 + ww)),
            core=(slice(yc0, yc1), slice(xc0, xc1)),
            core_in_window=(slice(yc0 - ys0, yc1 - ys0), slice(xc0 - xs0, xc1 - xs0)),
        )
        for (ys0, yc0, yc1), (xs0, xc0, xc1) in product(ys, xs)
    ]
    return (wh, ww), tiles


def round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)
