"""Tile plans for exact tiled prediction (pure arithmetic, no Keras): the checked run
options, the tiles of a plane and the batch that fits memory (`TilePlan`).

A plan cuts an image whose sides are multiples of ``m = 2**depth`` into windows
of one fixed shape (one compiled graph, no retracing); a 3D network's volumes are cut
along Z too, with that axis' own multiple and halo. Each window's *core* is
at least ``halo`` pixels from any window edge that is not an image edge, so the
core sees exactly the context it would see in a whole-image pass: tiled and
untiled predictions agree to float rounding. Window starts are multiples of
``m``, so every tile keeps the pooling grid of the whole image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Any

from ..common.checks import is_whole
from ..model.config import UNetConfig
from ..model.costs import (
    auto_tile_size,
    auto_z_window,
    default_memory_budget,
    halo,
    halos,
    inference_bytes_per_pixel,
    round_up,
)

__all__ = ["Tile", "TilePlan", "plan_tiles", "check_run_options", "prediction_memory_budget",
           "small_tile_warning", "budget_for", "first_tile_size", "MAX_BATCH"]

MAX_BATCH = 32


@dataclass(frozen=True)
class Tile:
    """One window: where to read it and which part of its output to keep.

    ``window`` are the (y, x) (or (z, y, x)) slices of the padded image fed to the
    network; ``core`` the slices of the output to keep, in image coordinates;
    ``core_in_window`` the same region in window coordinates.
    """

    window: tuple[slice, ...]
    core: tuple[slice, ...]
    core_in_window: tuple[slice, ...]


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


def plan_tiles(shape: tuple[int, ...], window: Any, halo: Any, multiple: Any
               ) -> tuple[tuple[int, ...], list[Tile]]:
    """Plan windows over an image of ``shape`` ((Y, X) or (Z, Y, X), padded to multiples
    of ``multiple``); ``window``, ``halo`` and ``multiple`` are one value for every axis
    or one per axis.

    Returns ``(window_shape, tiles)``; ``window_shape`` is ``min(window, side)``
    per axis. ``window`` must be a multiple of ``multiple`` larger than ``2*halo``.
    """
    window, halo, multiple = (tuple(v) if isinstance(v, (tuple, list)) else (v,) * len(shape)
                              for v in (window, halo, multiple))
    if any(n % m for n, m in zip(shape, multiple)):
        raise ValueError(f"Image shape {shape} must be padded to multiples of "
                         f"{multiple[-1] if len(set(multiple)) == 1 else multiple}.")
    for w, h, m in zip(window, halo, multiple):
        if w % m or w <= 2 * h:
            raise ValueError(f"Tile size {w} must be a multiple of {m} and larger than "
                             f"twice the halo ({2 * h}).")
    plans = [_plan_1d(n, w, h) for n, w, h in zip(shape, window, halo)]
    sides = tuple(min(w, n) for w, n in zip(window, shape))
    tiles = [Tile(window=tuple(slice(s0, s0 + side) for (s0, _, _), side in zip(axes, sides)),
                  core=tuple(slice(c0, c1) for _, c0, c1 in axes),
                  core_in_window=tuple(slice(c0 - s0, c1 - s0) for s0, c0, c1 in axes))
             for axes in product(*plans)]
    return sides, tiles


@dataclass(frozen=True)
class TilePlan:
    """How planes of one (Y, X) ``shape`` (volumes of one (Z, Y, X) shape, for a 3D
    network) are run: padded to ``padded`` (the network's size multiples), cut into
    ``tiles`` of ``window`` shape (from windows of ``tile_size`` px in Y and X; in Z as
    many planes as fit the memory), ``batch`` windows per network call."""

    shape: tuple[int, ...]
    padded: tuple[int, ...]
    window: tuple[int, ...]
    tiles: list[Tile]
    batch: int
    tile_size: int

    @classmethod
    def make(cls, config: UNetConfig, shape: tuple[int, int], tile_size: int,
             batch_size: int | None, memory_budget: int, accelerator: bool = False,
             cost: int = 1, call_bytes: int | None = None) -> TilePlan:
        """The plan for ``config``; the batch (when ``batch_size`` is None) is what fits
        ``memory_budget`` when each window costs ``cost`` windows of memory, at most
        `MAX_BATCH`, and with ``call_bytes`` at most what keeps one call's activations
        within those bytes (a CPU backend's fastest size,
        `napari_unet.backend.devices.cpu_call_bytes`); at least 1."""
        multiples, context = config.size_multiples, halos(config)
        padded = tuple(round_up(n, m) for n, m in zip(shape, multiples))
        sides = (tile_size,) * 2
        if config.ndim == 3:
            budget = memory_budget // cost
            sides = (auto_z_window(config, budget, padded, tile_size, accelerator), *sides)
        window, tiles = plan_tiles(padded, sides, context, multiples)
        per_window = (cost * inference_bytes_per_pixel(config, accelerator)
                      * math.prod(window))
        fits = min(memory_budget, call_bytes or memory_budget) // per_window
        batch = batch_size or int(max(1, min(MAX_BATCH, fits)))
        return cls(tuple(shape), padded, window, tiles, batch, tile_size)

    @property
    def whole(self) -> bool:
        """One window covers each whole padded plane."""
        return len(self.tiles) == 1 and self.tiles[0].window == tuple(
            slice(0, n) for n in self.padded)

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


def first_tile_size(config: UNetConfig, tile_size: int | None, shape: tuple[int, ...],
                    memory_budget: int, accelerator: bool, cost: int = 1) -> tuple[int, str]:
    """``(tile side, warning)``: ``tile_size`` with a `small_tile_warning` (or ""), or when
    None the side that fits ``memory_budget`` for windows that cost ``cost`` windows
    (``shape``: (Y, X), or (Z, Y, X) for a 3D network)."""
    if tile_size is None:
        return auto_tile_size(config, memory_budget // cost, shape, accelerator), ""
    return int(tile_size), small_tile_warning(config, int(tile_size), shape[-2:])


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
