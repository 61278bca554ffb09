"""Tile plans for exact tiled prediction (pure arithmetic, no Keras): the checked run
options, the tiles of a plane and the batch that fits memory (`TilePlan`).

A plan cuts an image whose sides are multiples of ``m = 2**depth`` into windows
of one fixed shape (one compiled graph, no retracing). Each window's *core* is
at least ``halo`` pixels from any window edge that is not an image edge, so the
core sees exactly the context it would see in a whole-image pass: tiled and
untiled predictions agree to float rounding. Window starts are multiples of
``m``, so every tile keeps the pooling grid of the whole image.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Any

from ..common.checks import is_whole
from ..model.config import UNetConfig
from ..model.costs import (
    auto_tile_size,
    default_memory_budget,
    halo,
    inference_bytes_per_pixel,
    round_up,
)

__all__ = ["Tile", "TilePlan", "plan_tiles", "check_run_options", "prediction_memory_budget",
           "small_tile_warning", "budget_for", "first_tile_size", "MAX_BATCH"]

MAX_BATCH = 32


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


@dataclass(frozen=True)
class TilePlan:
    """How planes of one (Y, X) ``shape`` are run: padded to ``padded`` (multiples of
    ``2**depth``), cut into ``tiles`` of ``window`` shape (from windows of ``tile_size``
    px), ``batch`` windows per network call."""

    shape: tuple[int, int]
    padded: tuple[int, int]
    window: tuple[int, int]
    tiles: list[Tile]
    batch: int
    tile_size: int

    @classmethod
    def make(cls, config: UNetConfig, shape: tuple[int, int], tile_size: int,
             batch_size: int | None, memory_budget: int, accelerator: bool = False,
             cost: int = 1) -> TilePlan:
        """The plan for ``config``; the batch (when ``batch_size`` is None) is what fits
        ``memory_budget`` when each window costs ``cost`` windows of memory, at most
        `MAX_BATCH`."""
        m, context = config.size_multiple, halo(config)
        padded = (round_up(shape[0], m), round_up(shape[1], m))
        window, tiles = plan_tiles(padded, tile_size, context, m)
        per_window = cost * inference_bytes_per_pixel(config, accelerator) * window[0] * window[1]
        batch = batch_size or int(max(1, min(MAX_BATCH, memory_budget // per_window)))
        return cls(tuple(shape), padded, window, tiles, batch, tile_size)

    @property
    def whole(self) -> bool:
        """One window covers each whole padded plane."""
        return len(self.tiles) == 1 and self.tiles[0].window == (
            slice(0, self.padded[0]), slice(0, self.padded[1]))

    def smaller(self, config: UNetConfig, err: BaseException) -> tuple[int, int]:
        """The next ``(tile_size, batch_size)`` after running out of memory: half the batch
        first, then half the tile; ``MemoryError`` when neither can shrink."""
        m, context = config.size_multiple, halo(config)
        if self.batch > 1:
            return self.tile_size, max(1, self.batch // 2)
        if self.tile_size // 2 > 2 * context:
            return max(round_up(self.tile_size // 2, m), round_up(2 * context + m, m)), 1
        raise MemoryError("Prediction ran out of memory even with one smallest tile; close "
                          "other programs or use a smaller model.") from err


def first_tile_size(config: UNetConfig, tile_size: int | None, shape: tuple[int, int],
                    memory_budget: int, accelerator: bool, cost: int = 1) -> tuple[int, str]:
    """``(tile side, warning)``: ``tile_size`` with a `small_tile_warning` (or ""), or when
    None the side that fits ``memory_budget`` for windows that cost ``cost`` windows."""
    if tile_size is None:
        return auto_tile_size(config, memory_budget // cost, shape, accelerator), ""
    return int(tile_size), small_tile_warning(config, int(tile_size), shape)


def check_run_options(config: UNetConfig, tile_size: Any, batch_size: Any,
                      memory_budget: Any) -> tuple[int | None, int]:
    """Check the prediction options for ``config`` before any work.

    Returns ``(batch_size, memory_budget)`` as plain ints (the budget filled in
    with `prediction_memory_budget` when None); raises ``ValueError`` naming the
    argument and what is allowed.
    """
    m, context = config.size_multiple, halo(config)
    if tile_size is not None and (not is_whole(tile_size) or tile_size % m
                                  or tile_size <= 2 * context):
        raise ValueError(
            f"tile_size must be a multiple of {m} larger than {2 * context} (twice the "
            f"halo of this model), or None to choose from memory; got {tile_size!r}."
        )
    if batch_size is not None and (not is_whole(batch_size) or batch_size < 1):
        raise ValueError(
            f"batch_size must be a whole number >= 1 (tiles per network call), or None "
            f"to choose from memory; got {batch_size!r}."
        )
    if memory_budget is None:
        memory_budget = prediction_memory_budget()
    elif not is_whole(memory_budget) or memory_budget < 1:
        raise ValueError(
            f"memory_budget must be a whole number of bytes >= 1, or None for half the GPU's "
            f"free memory (on a CPU a quarter of the available memory, at most 1 GiB); got "
            f"{memory_budget!r}."
        )
    return (None if batch_size is None else int(batch_size)), int(memory_budget)


def prediction_memory_budget() -> int:
    """Bytes the network's activations may use when predicting: half of what is free on
    the accelerator the backend computes on, or on a CPU a quarter of the available host
    memory, at most 1 GiB (`napari_unet.model.costs.default_memory_budget`)."""
    from ..backend.devices import accelerator_memory

    return budget_for(accelerator_memory())


def budget_for(free: int | None) -> int:
    """The prediction budget given the accelerator's free bytes (None: no accelerator)."""
    return free // 2 if free else default_memory_budget()


def small_tile_warning(config: UNetConfig, tile_size: int, shape: tuple[int, int]) -> str:
    """A sentence when ``tile_size`` wastes most of each window on the halo, else ``""``.

    ``shape`` is the (Y, X) size of the planes; a window that covers the whole
    padded plane has no waste.
    """
    m, context = config.size_multiple, halo(config)
    if tile_size >= max(round_up(shape[0], m), round_up(shape[1], m)):
        return ""
    useful = ((tile_size - 2 * context) / tile_size) ** 2
    if useful >= 0.25:
        return ""
    return (f"tile_size {tile_size} spends {1 - useful:.0%} of each window on the "
            f"{context}-pixel halo, so prediction is several times slower than it needs to "
            f"be; use tiles of at least {round_up(4 * context, m)} px, or tile_size=None to "
            "choose from memory.")
