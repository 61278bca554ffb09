"""Where the network is unsure: Monte-Carlo dropout (Gal & Ghahramani, 2016).

The seed U-Net has dropout after every pooling and concatenation. Kept on at
prediction time, each pass drops other features; over ``passes`` passes the
per-pixel spread says how much the answer depends on which features the network
happened to use: high where it has not learnt enough, which is where to paint next.

`iter_uncertainty` returns, per pixel:

- ``entropy``: predictive entropy of the mean class probabilities over the passes,
  divided by log(number of classes), so 0 = certain, 1 = all classes equally likely;
- ``spread``: standard deviation over the passes of the foreground probability
  (1 - p(background)); exactly 0 when the network has no dropout;
- ``probabilities``: the mean probabilities over the passes.

Each dropout mask is a hash of the feature's position in the whole image (row and
column; plane, row and column for a 3D network), its channel, the pass and the layer
(`_coordinate_dropout_class`), never of the tile it was computed in: tiled, untiled and
lazy (dask block) results are the same to float rounding, and the same call gives the
same maps twice. A 3D network's volumes are cut into windows along Z too; its masks
count planes of each feature map in that map's own Z steps (`_strides`: Z is not
pooled on the first ``z_unpooled_levels`` levels), so they follow the whole volume.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Generator, NamedTuple

import numpy as np

from ..common import arrays
from ..common.progress import PredictProgress, drain

__all__ = ["Uncertainty", "MCDropout", "iter_uncertainty", "uncertainty", "uncertainty_dask",
           "mc_network", "block_maps"]

DEFAULT_PASSES = 8
_BATCH = 4  # passes of one window run together


class Uncertainty(NamedTuple):
    """Float32 maps with the image's spatial axes (``probabilities`` also a trailing class
    axis for multi-class models)."""

    entropy: Any
    spread: Any
    probabilities: Any


# odd multipliers (< 2**31, so every backend keeps them int32) that spread coordinates;
# the last one mixes in a 3D network's plane
_MIX = (73856093, 19349663, 83492791, 1103515245, 1540483477, 668265263)


def _hash_uniform(ops: Any, keys: list) -> Any:
    """Uniform [0, 1) floats from int32 ``keys`` (broadcastable): a mix of the keys and
    the "lowbias32" integer finaliser, in 32-bit wrapping arithmetic."""
    h = keys[0] * _MIX[0]
    for key, mult in zip(keys[1:], _MIX[1:]):
        h = ops.bitwise_xor(h, key * mult)
    for shift, mult in ((16, 0x7FEB352D), (15, -2073254261), (16, None)):
        h = ops.bitwise_xor(h, ops.bitwise_and(ops.right_shift(h, shift), (1 << (32 - shift)) - 1))
        if mult is not None:
            h = h * mult
    return ops.cast(ops.bitwise_and(h, 0xFFFFFF), "float32") / 16777216.0


@functools.cache
def _coordinate_dropout_class() -> type:
    """A Keras layer ``CoordinateDropout(rate, strides, salt)`` called on ``[x, origin]``:
    ``x`` (B, h, w, c) features, or (B, d, h, w, c) for a 3D network; ``origin`` (B, 3)
    int32 (row and column of the window's first pixel in the whole padded image, pass
    number), or (B, 4) (plane, row, column, pass). ``strides``: input pixels per feature
    step along each spatial axis of ``x`` ((row, column) or (plane, row, column)). Drops
    each feature with probability ``rate`` by a hash of (global row, global column,
    channel, pass, salt[, global plane]) and scales the rest by 1 / (1 - rate), in
    inference as in training."""
    from ..backend.runtime import load_keras

    keras = load_keras()
    ops = keras.ops

    class CoordinateDropout(keras.layers.Layer):
        def __init__(self, rate: float, strides: tuple[int, ...], salt: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.rate, self.salt = float(rate), int(salt)
            self.strides = tuple(int(s) for s in strides)

        def call(self, inputs: Any) -> Any:
            x, origin = inputs
            if self.rate <= 0:
                return x
            n, shape = len(self.strides), ops.shape(x)
            origin = ops.cast(origin, "int32")

            def along(axis: int, values: Any) -> Any:  # broadcast on x's ``axis``
                return ops.reshape(values, [-1 if a == axis else 1 for a in range(n + 2)])

            # global feature index along each spatial axis: window start + position
            coords = [along(0, origin[:, a] // s) + along(a + 1, ops.arange(
                shape[a + 1], dtype="int32")) for a, s in enumerate(self.strides)]
            keys = coords[-2:] + [along(n + 1, ops.arange(shape[n + 1], dtype="int32")),
                                  along(0, origin[:, n]),
                                  ops.convert_to_tensor(self.salt, "int32")] + coords[:-2]
            keep = ops.cast(_hash_uniform(ops, keys) >= self.rate, x.dtype)
            return x * keep / ops.cast(1.0 - self.rate, x.dtype)

    return CoordinateDropout


def _strides(config: Any, stride: int) -> tuple[int, ...]:
    """Input pixels per step of a feature map that is ``stride`` (2**levels) pixels per
    step in Y and X, along each spatial axis: (stride, stride), or for a 3D network
    (planes, stride, stride), planes = 2 ** (those of the ``levels`` that pooled Z)."""
    if config.ndim == 2:
        return (stride, stride)
    levels = stride.bit_length() - 1
    return (2 ** sum(config.pools_z(k) for k in range(levels)), stride, stride)


def mc_network(unet: Any) -> Any:
    """A Keras model sharing ``unet``'s layers (and so its current weights) with every
    dropout layer replaced by `CoordinateDropout`; inputs ``[image (B, H, W, C) float32
    normalised, origin (B, 3) int32]`` (3D network: ``[(B, Z, H, W, C), (B, 4)]``, see
    `_coordinate_dropout_class`), output the probabilities. Made once per network."""
    km = unet.keras_model
    cached = getattr(km, "_napari_unet_mc", None)
    if cached is not None:
        return cached
    from ..backend.runtime import load_keras
    from ..model.network import unet_graph

    keras = load_keras()
    dropout_class = _coordinate_dropout_class()
    ndim = unet.config.ndim
    image = keras.Input(shape=(None,) * ndim + (unet.config.in_channels,), name="image")
    origin = keras.Input(shape=(ndim + 1,), dtype="int32", name="origin")
    salts = iter(range(1, 1000))

    def dropout(x: Any, name: str, rate: float, stride: int) -> Any:
        return dropout_class(km.get_layer(name).rate, _strides(unet.config, stride),
                             next(salts), name=f"{name}_mc")([x, origin])

    outputs = unet_graph(unet.config, image, lambda kind, name, *a, **k: km.get_layer(name),
                         dropout)
    model = keras.Model([image, origin], outputs, name=f"{km.name}_mc_dropout")
    km._napari_unet_mc = model
    return model


def _summaries(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entropy (normalised), spread and mean of ``samples`` (passes, ..., K) probabilities;
    K = 1 is a sigmoid foreground probability."""
    mean = samples.mean(axis=0)
    if samples.shape[-1] == 1:
        p = np.clip(mean[..., 0], 1e-7, 1 - 1e-7)
        entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p)) / np.log(2)
        foreground = samples[..., 0]
    else:
        p = np.clip(mean, 1e-7, 1.0)
        entropy = -(p * np.log(p)).sum(axis=-1) / np.log(samples.shape[-1])
        foreground = 1.0 - samples[..., 0]
    spread = foreground.astype(np.float64).std(axis=0)
    return entropy.astype(np.float32), spread.astype(np.float32), mean.astype(np.float32)


def _check_passes(passes: Any) -> int:
    from ..common.checks import check_whole

    return check_whole("passes", passes, 2, 256, unit=" of dropout passes")


class MCDropout:
    """A `napari_unet.prediction.tiled.Network` of ``passes`` Monte-Carlo dropout passes
    (`mc_network`) per window (B, H, W, C), or (B, Z, H, W, C) for a 3D network, returning
    per pixel the entropy, the spread and the mean probabilities (`_summaries`, 2 + K
    values). Passes run `_BATCH` at a time, so a window costs `_BATCH` windows of memory."""

    cost = _BATCH

    def __init__(self, unet: Any, passes: int):
        self.network = mc_network(unet)
        self.passes = passes
        self.outputs = 2 + max(1, unet.config.n_classes)

    def run(self, windows: np.ndarray, origins: Any, lo: np.ndarray, scale: np.ndarray) -> Any:
        x = (windows.astype(np.float32) - lo) / scale
        out = []
        for k, start in enumerate(origins):
            samples = _passes(self.network, x[k:k + 1], start, self.passes)
            entropy, spread, mean = _summaries(samples)
            out.append(np.concatenate([entropy[..., None], spread[..., None], mean], axis=-1))
        return np.stack(out)

    def fetch(self, handle: Any) -> np.ndarray:
        return handle


def iter_uncertainty(model: Any, image: Any, passes: int = DEFAULT_PASSES, *,
                     axes: str | None = None, tile_size: int | None = None, stats: Any = None,
                     origin: tuple[int, ...] | None = None, memory_budget: int | None = None
                     ) -> Generator[PredictProgress, None, Uncertainty]:
    """Monte-Carlo dropout maps of ``image`` (see the module docstring); yields
    `PredictProgress` per batch of windows and returns an `Uncertainty` of float32 numpy
    arrays: ``entropy`` and ``spread`` with the image's spatial axes, ``probabilities``
    those with a trailing class axis for multi-class models (as `predict` gives them).

    ``model``: a `UNetModel` or a model file path. ``image``: numpy; for a 2D network YX
    or stacks of planes (ZYX, TYX, ...), each plane on its own; for a 3D network volumes
    ZYX (or TZYX, ...), each run as a volume, so a ZYX image gives (Z, Y, X) maps and
    (Z, Y, X[, K]) probabilities; a single YX plane is refused (``ValueError``, no Z).
    A channel axis (ZYXC, ...) when the model has several input channels. ``passes``:
    stochastic passes (2-256, default 8). ``tile_size``: windows of at most that side in
    Y and X (None: from memory; a 3D network's windows take as many planes as fit).
    ``memory_budget``: bytes one batch of windows and its passes may use (None: from the
    device, as for `napari_unet.prediction.api.iter_predict`). ``stats``: normalisation
    statistics (default: of this image). ``origin``: where this image's first pixel lies
    in a larger image, in pixels: (row, column), multiples of ``2**depth``, or for a 3D
    network (plane, row, column), the plane a multiple of ``config.size_multiples[0]``;
    default 0 each. Blocks of a large image so get the masks the whole image would
    (``ValueError`` for the wrong number of offsets). The maps run through the one tiled
    pass (`napari_unet.prediction.tiled.iter_tiled`), out-of-memory retry included.
    """
    from ..model.files import resolve_model

    unet = resolve_model(model)
    maps = yield from _mc_maps(unet, image, _check_passes(passes), axes=axes,
                               tile_size=tile_size, stats=stats, origin=origin,
                               memory_budget=memory_budget)
    probs = maps[..., 2:]
    return Uncertainty(maps[..., 0], maps[..., 1],
                       probs[..., 0] if unet.config.n_classes == 1 else probs)


def _mc_maps(unet: Any, image: Any, passes: int, *, axes: str | None, tile_size: int | None,
             stats: Any, origin: tuple[int, ...] | None, memory_budget: int | None = None
             ) -> Generator[PredictProgress, None, np.ndarray]:
    """The `MCDropout` maps of ``image``: float32 (*spatial axes, 2 + K) with entropy,
    spread and the mean probabilities on the last axis, through the one tiled pass.
    ``image`` is mirrored first by the network's size multiple at every side of each
    axis it runs along (Y and X; Z too for a 3D network) and that margin cropped after:
    at an image border the zero padding of the network's convolutions makes it unsure of
    the outermost pixels, which would light up the map's edges as "paint here"; the
    mirror gives them context. The margin keeps the pooling grid and the global
    coordinates the dropout masks hash (``origin``: see `iter_uncertainty`)."""
    from .tiled import iter_tiled

    image = arrays.check_image(image)
    axes = arrays.resolve_axes(axes, image.shape, unet.config.in_channels)
    config = unet.config
    if config.ndim == 3:  # refused before the network is built: the message of iter_tiled
        arrays.to_units(image[tuple(slice(0, 1) for _ in axes)], axes, 3)
    if stats is None:  # of the image itself, not of the mirrored one
        stats = unet.normalization.statistics(arrays.to_planes(image, axes)[0])
    origin, margins = _origin(config, origin), config.size_multiples  # (Z,) Y, X
    margin = dict(zip("ZYX"[-config.ndim:], margins))
    mirrored = np.pad(image, [(margin.get(a, 0),) * 2 for a in axes], mode="symmetric")
    maps = yield from iter_tiled(unet, mirrored, axes=axes, tile_size=tile_size, stats=stats,
                                 memory_budget=memory_budget, network=MCDropout(unet, passes),
                                 origin=tuple(o - m for o, m in zip(origin, margins)))
    return maps[(Ellipsis, *(slice(m, -m) for m in margins), slice(None))]


def _origin(config: Any, origin: Any) -> tuple[int, ...]:
    """``origin`` (None: zeros) as a tuple of ``config.ndim`` pixel offsets: (row, column),
    or (plane, row, column) for a 3D network; ``ValueError`` for another length."""
    origin = (0,) * config.ndim if origin is None else tuple(int(o) for o in origin)
    if len(origin) != config.ndim:
        names = "(plane, row, column)" if config.ndim == 3 else "(row, column)"
        raise ValueError(f"origin must be {config.ndim} pixel offsets {names} for this "
                         f"{config.ndim}D network; got {origin!r}.")
    return origin


def _passes(network: Any, x: np.ndarray, start: Any, passes: int,
            batch: int | None = None) -> np.ndarray:
    """``passes`` stochastic probabilities of one window ``x`` (1, H, W, C), or (1, Z, H,
    W, C), whose first pixel is at ``start`` (row, column), or (plane, row, column), of
    the whole image: (passes, H, W, K), or (passes, Z, H, W, K)."""
    out, batch = [], batch or _BATCH
    for first in range(0, passes, batch):
        # every call has the same batch shape (the last one filled up), so the passes differ
        # only by their dropout masks, not by how the backend splits the batch
        origin = np.array([[*start, first + k] for k in range(batch)], np.int32)
        y = network.predict_on_batch([np.repeat(x, batch, axis=0), origin])
        out.append(np.asarray(y)[:passes - first])
    return np.concatenate(out).astype(np.float32)


def uncertainty(model: Any, image: Any, passes: int = DEFAULT_PASSES, *,
                callback: Callable[[PredictProgress], None] | None = None,
                **kwargs: Any) -> Uncertainty:
    """`iter_uncertainty` drained: returns the `Uncertainty` maps. A dask ``image`` gives
    lazy maps (`uncertainty_dask`)."""
    if type(image).__module__.startswith("dask"):
        return uncertainty_dask(model, image, passes, **kwargs)
    return drain(iter_uncertainty(model, image, passes, **kwargs), callback)


def uncertainty_dask(model: Any, image: Any, passes: int = DEFAULT_PASSES, *,
                     axes: str | None = None, tile_size: int | None = None,
                     chunk: int | None = None) -> Uncertainty:
    """Lazy `Uncertainty` of a dask array: each map a dask array computed block by block
    with its halo (as `napari_unet.prediction.lazy.predict_dask`; a 3D network's blocks
    are volumes, cut along Z too), equal to the in-memory maps."""
    from functools import partial

    from ..model.files import resolve_model
    from .lazy import ModelHandle, lazy_probabilities

    unet = resolve_model(model)
    passes = _check_passes(passes)
    arrays.check_array_type(image)
    axes = arrays.resolve_axes(axes, image.shape, unet.config.in_channels)
    arrays.check_channels(axes, image.shape, unet.config.in_channels)
    block_fn = partial(_uncertainty_block, handle=ModelHandle(unet), passes=passes,
                       tile_size=tile_size)
    k = max(1, unet.config.n_classes)
    stacked = lazy_probabilities(image, axes, unet.config, unet.normalization, block_fn, chunk,
                                 outputs=2 + k)
    probs = stacked[..., 2:] if k > 1 else stacked[..., 2]
    return Uncertainty(stacked[..., 0], stacked[..., 1], probs)


def block_maps(model: Any, block: np.ndarray, axes: str, stats: Any, origin: tuple[int, ...],
               passes: int, tile_size: int | None, probabilities: bool = True) -> np.ndarray:
    """One dask block's maps (block at ``origin`` of the whole image: (row, column), or
    (plane, row, column) for a 3D network; normalised with the whole image's ``stats``)
    stacked on a trailing axis: entropy, spread and, when ``probabilities``, the mean
    probabilities (one per class)."""
    from ..model.files import resolve_model

    unet = resolve_model(model)
    maps = drain(_mc_maps(unet, block, _check_passes(passes), axes=axes, tile_size=tile_size,
                          stats=stats, origin=origin))
    return maps if probabilities else maps[..., :2]


def _uncertainty_block(block: np.ndarray, axes: str, stats: Any, origin: tuple[int, ...],
                       handle: Any, passes: int, tile_size: int | None) -> np.ndarray:
    """`block_maps` with the model a dask worker gets from ``handle``."""
    model = handle.get()
    with handle.lock:
        return block_maps(model, block, axes, stats, origin, passes, tile_size)
