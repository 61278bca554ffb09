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

Each dropout mask is a hash of the feature's position in the whole image, its
channel, the pass and the layer (`_coordinate_dropout_class`), never of the
tile it was computed in: tiled, untiled and lazy (dask block) results are the same
to float rounding, and the same call gives the same maps twice.
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


# odd multipliers (< 2**31, so every backend keeps them int32) that spread coordinates
_MIX = (73856093, 19349663, 83492791, 1103515245, 1540483477)


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
    """A Keras layer ``CoordinateDropout(rate, stride, salt)`` called on ``[x, origin]``:
    ``x`` (B, h, w, c) features, ``origin`` (B, 3) int32 (row and column of the window's
    first pixel in the whole padded image, pass number). Drops each feature with
    probability ``rate`` by a hash of (global row, global column, channel, pass, salt)
    and scales the rest by 1 / (1 - rate), in inference as in training."""
    from ..backend.runtime import load_keras

    keras = load_keras()
    ops = keras.ops

    class CoordinateDropout(keras.layers.Layer):
        def __init__(self, rate: float, stride: int, salt: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.rate, self.stride, self.salt = float(rate), int(stride), int(salt)

        def call(self, inputs: Any) -> Any:
            x, origin = inputs
            if self.rate <= 0:
                return x
            shape = ops.shape(x)
            origin = ops.cast(origin, "int32")
            rows = ops.reshape(origin[:, 0] // self.stride, (-1, 1, 1, 1)) + ops.reshape(
                ops.arange(shape[1], dtype="int32"), (1, -1, 1, 1))
            cols = ops.reshape(origin[:, 1] // self.stride, (-1, 1, 1, 1)) + ops.reshape(
                ops.arange(shape[2], dtype="int32"), (1, 1, -1, 1))
            chans = ops.reshape(ops.arange(shape[3], dtype="int32"), (1, 1, 1, -1))
            passes = ops.reshape(origin[:, 2], (-1, 1, 1, 1))
            u = _hash_uniform(ops, [rows, cols, chans, passes, ops.convert_to_tensor(
                self.salt, "int32")])
            keep = ops.cast(u >= self.rate, x.dtype)
            return x * keep / ops.cast(1.0 - self.rate, x.dtype)

    return CoordinateDropout


def mc_network(unet: Any) -> Any:
    """A Keras model sharing ``unet``'s layers (and so its current weights) with every
    dropout layer replaced by `CoordinateDropout`; inputs ``[image (B, H, W, C) float32
    normalised, origin (B, 3) int32]``, output the probabilities. Made once per network."""
    km = unet.keras_model
    cached = getattr(km, "_napari_unet_mc", None)
    if cached is not None:
        return cached
    from ..backend.runtime import load_keras
    from ..model.network import unet_graph

    keras = load_keras()
    dropout_class = _coordinate_dropout_class()
    image = keras.Input(shape=(None, None, unet.config.in_channels), name="image")
    origin = keras.Input(shape=(3,), dtype="int32", name="origin")
    salts = iter(range(1, 1000))

    def dropout(x: Any, name: str, rate: float, stride: int) -> Any:
        return dropout_class(km.get_layer(name).rate, stride, next(salts), name=f"{name}_mc")(
            [x, origin])

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
    (`mc_network`) per window, returning per pixel the entropy, the spread and the mean
    probabilities (`_summaries`, 2 + K values). Passes run `_BATCH` at a time, so a
    window costs `_BATCH` windows of memory."""

    cost = _BATCH

    def __init__(self, unet: Any, passes: int):
        if unet.config.ndim == 3:
            raise ValueError("uncertainty maps (Monte-Carlo dropout) are for 2D networks "
                             "for now; a 3D network gives probabilities and labels only.")
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
                     origin: tuple[int, int] = (0, 0)
                     ) -> Generator[PredictProgress, None, Uncertainty]:
    """Monte-Carlo dropout maps of ``image`` (see the module docstring); yields
    `PredictProgress` per batch of windows and returns an `Uncertainty` of numpy arrays.

    ``model``: a `UNetModel` or a model file path. ``image``: numpy YX, stacks
    (ZYX, TYX, ...), with a channel axis when the model has several input channels.
    ``passes``: stochastic passes (2-256, default 8). ``tile_size``: windows of at
    most that side (None: from memory). ``stats``: normalisation statistics (default:
    of this image). ``origin``: where this image's first pixel lies in a larger image
    (row, column; multiples of ``2**depth``), so blocks of a large image get the masks
    the whole image would. The maps run through the one tiled pass
    (`napari_unet.prediction.tiled.iter_tiled`), out-of-memory retry included.
    """
    from ..model.files import resolve_model

    unet = resolve_model(model)
    maps = yield from _mc_maps(unet, image, _check_passes(passes), axes=axes,
                               tile_size=tile_size, stats=stats, origin=origin)
    probs = maps[..., 2:]
    return Uncertainty(maps[..., 0], maps[..., 1],
                       probs[..., 0] if unet.config.n_classes == 1 else probs)


def _mc_maps(unet: Any, image: Any, passes: int, *, axes: str | None, tile_size: int | None,
             stats: Any, origin: tuple[int, int]
             ) -> Generator[PredictProgress, None, np.ndarray]:
    """The `MCDropout` maps (entropy, spread, mean probabilities on a last axis) of ``image``
    through the one tiled pass, with ``image`` mirrored by ``2**depth`` px at every side
    first and that margin cropped after: at an image border the zero padding of the
    network's convolutions makes it unsure of the outermost pixels, which would light
    up the map's edges as "paint here"; the mirror gives them context. The margin keeps
    the pooling grid and the global coordinates the dropout masks hash."""
    from .tiled import iter_tiled

    image = arrays.check_image(image)
    axes = arrays.resolve_axes(axes, image.shape, unet.config.in_channels)
    if stats is None:  # of the image itself, not of the mirrored one
        stats = unet.normalization.statistics(arrays.to_planes(image, axes)[0])
    m = unet.config.size_multiple
    mirrored = np.pad(image, [(m, m) if a in "YX" else (0, 0) for a in axes], mode="symmetric")
    maps = yield from iter_tiled(unet, mirrored, axes=axes, tile_size=tile_size, stats=stats,
                                 network=MCDropout(unet, passes),
                                 origin=(origin[0] - m, origin[1] - m))
    return maps[..., m:-m, m:-m, :]


def _passes(network: Any, x: np.ndarray, start: Any, passes: int,
            batch: int | None = None) -> np.ndarray:
    """``passes`` stochastic probabilities of one window ``x`` (1, H, W, C) whose first
    pixel is at ``start`` (row, column) of the whole image: (passes, H, W, K)."""
    out, batch = [], batch or _BATCH
    for first in range(0, passes, batch):
        # every call has the same batch shape (the last one filled up), so the passes differ
        # only by their dropout masks, not by how the backend splits the batch
        origin = np.array([[start[0], start[1], first + k] for k in range(batch)], np.int32)
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
    with its halo (as `napari_unet.prediction.lazy.predict_dask`), equal to the in-memory maps."""
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


def block_maps(model: Any, block: np.ndarray, axes: str, stats: Any, origin: tuple[int, int],
               passes: int, tile_size: int | None, probabilities: bool = True) -> np.ndarray:
    """One dask block's maps (block at ``origin`` of the whole image, normalised with the
    whole image's ``stats``) stacked on a trailing axis: entropy, spread and, when
    ``probabilities``, the mean probabilities (one per class)."""
    from ..model.files import resolve_model

    unet = resolve_model(model)
    maps = drain(_mc_maps(unet, block, _check_passes(passes), axes=axes, tile_size=tile_size,
                          stats=stats, origin=origin))
    return maps if probabilities else maps[..., :2]


def _uncertainty_block(block: np.ndarray, axes: str, stats: Any, origin: tuple[int, int],
                       handle: Any, passes: int, tile_size: int | None) -> np.ndarray:
    """`block_maps` with the model a dask worker gets from ``handle``."""
    model = handle.get()
    with handle.lock:
        return block_maps(model, block, axes, stats, origin, passes, tile_size)
