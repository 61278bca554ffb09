"""Headless prediction: tiled with a halo, any size, 2D and stacks, batched planes.

`iter_predict` is the engine: it yields `PredictProgress` after every batch of
tiles and returns the probabilities. `predict` and `segment` drain it. Tiles
have one fixed shape (no retracing); their halo comes from the receptive field
(see `napari_unet.tiling`), so the result equals a whole-image pass.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Generator

import numpy as np

from . import data as D
from .checks import is_whole
from .model import UNetModel
from .progress import drain
from .tiling import plan_tiles, round_up

__all__ = ["PredictProgress", "iter_predict", "predict", "segment", "probabilities_and_labels",
           "inference_bytes_per_pixel", "auto_tile_size", "check_run_options"]

# Peak bytes per window pixel of the default U-Net on CPU (TensorFlow), divided by
# its channel sum below: 374 B/px measured for a 2048x2048 pass (benchmarks/
# bench_predict.py, docs/benchmarks.md), 157 channels -> 2.4, rounded up.
_BYTES_PER_CHANNEL_PIXEL = 2.5


@dataclass
class PredictProgress:
    """Tiles done out of total; ``message`` is set when something noteworthy happened."""

    done: int
    total: int
    message: str = ""


def inference_bytes_per_pixel(config) -> float:
    """Estimated peak memory in bytes per input pixel of one window during inference."""
    channels = config.in_channels + max(1, config.n_classes)
    for level in range(config.depth + 1):
        channels += 5 * config.filters(level) / 4**level
    return _BYTES_PER_CHANNEL_PIXEL * channels


def available_memory() -> int:
    """Bytes of memory available to this process now."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - psutil missing or unsupported platform
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def default_memory_budget() -> int:
    """Bytes the network's activations may use: a quarter of available memory, at most 1 GiB."""
    return min(available_memory() // 4, 1 << 30)


def auto_tile_size(model: UNetModel, memory_budget: int | None = None,
                   shape: tuple[int, int] | None = None) -> int:
    """Window side (a multiple of ``2**depth``) for tiled prediction.

    The window must fit the memory budget (default: a quarter of the available
    memory, at most 1 GiB). Without ``shape`` it is the largest that fits; with
    the (Y, X) ``shape`` of the image it is the one, among those that fit, that
    computes the fewest pixels in total (halos included) for that image.
    """
    if memory_budget is None:
        memory_budget = default_memory_budget()
    m, halo = model.config.size_multiple, model.halo
    smallest = round_up(4 * halo, m)
    largest = int(math.sqrt(memory_budget / inference_bytes_per_pixel(model.config)))
    largest = max(largest // m * m, smallest)
    if shape is None:
        return largest
    hp, wp = round_up(shape[0], m), round_up(shape[1], m)

    def cost(window: int) -> int:
        n = [1 if side <= window else math.ceil(side / (window - 2 * halo)) for side in (hp, wp)]
        return n[0] * n[1] * min(window, hp) * min(window, wp)

    candidates = range(largest, smallest - 1, -m)
    return min(candidates, key=lambda window: (cost(window), -window))


def check_run_options(model: UNetModel, tile_size: Any, batch_size: Any,
                      memory_budget: Any) -> tuple[int | None, int]:
    """Check the prediction options of `iter_predict` before any work.

    Returns ``(batch_size, memory_budget)`` as plain ints (the budget filled in
    with `default_memory_budget` when None); raises ``ValueError`` naming the
    argument and what is allowed.
    """
    m, halo = model.config.size_multiple, model.halo
    if tile_size is not None and (not is_whole(tile_size) or tile_size % m
                                  or tile_size <= 2 * halo):
        raise ValueError(
            f"tile_size must be a multiple of {m} larger than {2 * halo} (twice the "
            f"halo of this model), or None to choose from memory; got {tile_size!r}."
        )
    if batch_size is not None and (not is_whole(batch_size) or batch_size < 1):
        raise ValueError(
            f"batch_size must be a whole number >= 1 (tiles per network call), or None "
            f"to choose from memory; got {batch_size!r}."
        )
    if memory_budget is None:
        memory_budget = default_memory_budget()
    elif not is_whole(memory_budget) or memory_budget < 1:
        raise ValueError(
            f"memory_budget must be a whole number of bytes >= 1, or None for a quarter "
            f"of the available memory; got {memory_budget!r}."
        )
    return (None if batch_size is None else int(batch_size)), int(memory_budget)


def small_tile_warning(model: UNetModel, tile_size: int, shape: tuple[int, int]) -> str:
    """A sentence when ``tile_size`` wastes most of each window on the halo, else ``""``.

    ``shape`` is the (Y, X) size of the planes; a window that covers the whole
    padded plane has no waste.
    """
    m, halo = model.config.size_multiple, model.halo
    if tile_size >= max(round_up(shape[0], m), round_up(shape[1], m)):
        return ""
    useful = ((tile_size - 2 * halo) / tile_size) ** 2
    if useful >= 0.25:
        return ""
    return (f"tile_size {tile_size} spends {1 - useful:.0%} of each window on the "
            f"{halo}-pixel halo, so prediction is several times slower than it needs to be; "
            f"use tiles of at least {round_up(4 * halo, m)} px, or tile_size=None to choose "
            "from memory.")


def _resolve_model(model: Any) -> UNetModel:
    if isinstance(model, UNetModel):
        return model
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from .io import load_model

        return load_model(model)
    raise ValueError(
        f"model must be a UNetModel (from train() or load_model()) or a path to a "
        f".keras model file; got {type(model).__name__}."
    )


def iter_predict(
    model: Any,
    image: Any,
    *,
    axes: str | None = None,
    tile_size: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> Generator[PredictProgress, None, np.ndarray]:
    """Predict probabilities, yielding `PredictProgress`; returns the probability array.

    Parameters
    ----------
    model : a `UNetModel` or a path to a ``.keras`` file saved by `save_model`.
    image : array with axes YX, ZYX, TYX or TZYX, optionally with a channel
        axis (``axes`` names it, e.g. ``"YXC"`` for RGB or ``"CZYX"``); any size.
    axes : axes string; guessed from the shape and the model's channels if None.
    tile_size : side in pixels of the square windows fed to the network
        (including the halo); chosen from ``memory_budget`` if None.
    batch_size : windows per network call; chosen from the budget if None.
    memory_budget : bytes the network's activations may use (default: a quarter
        of available memory, at most 1 GiB).
    stats : per-channel normalisation (lo, hi) to use instead of this image's
        own percentiles (the lazy path passes those of the whole array).

    Returns float32 probabilities with the image's spatial shape and axis order
    (channel axis dropped) for a binary model, or with a trailing class axis of
    length ``n_classes`` for a multi-class model. The input is not modified.
    If the backend runs out of memory, tiles and batches are halved and the
    prediction restarts, with a `PredictProgress` message saying so.
    """
    from .devices import is_out_of_memory, load_keras

    unet = _resolve_model(model)
    config = unet.config
    image = D.check_image(image)
    axes = D.resolve_axes(axes, image.shape, config.in_channels)
    D.check_channels(axes, image.shape, config.in_channels)
    planes, lead = D.to_planes(image, axes)
    batch_size, memory_budget = check_run_options(unet, tile_size, batch_size, memory_budget)
    load_keras()
    m, halo = config.size_multiple, unet.halo
    n, h, w, _ = planes.shape
    hp, wp = round_up(h, m), round_up(w, m)
    message = ""
    if tile_size is None:
        tile_size = auto_tile_size(unet, memory_budget, (h, w))
    else:
        tile_size = int(tile_size)
        message = small_tile_warning(unet, tile_size, (h, w))
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
    if stats is None:
        stats = unet.normalization.statistics(planes)
    n_out = max(1, config.n_classes)

    while True:
        (wh, ww), tiles = plan_tiles((hp, wp), tile_size, halo, m)
        per_window = inference_bytes_per_pixel(config) * wh * ww
        batch = batch_size or int(max(1, min(32, memory_budget // per_window)))
        if message:
            yield PredictProgress(0, len(tiles) * n, message)
            message = ""
        try:
            result = yield from _run_tiles(unet, planes, stats, (hp, wp), tiles, batch, n_out)
            break
        except Exception as err:  # noqa: BLE001 - only out-of-memory is retried
            if not is_out_of_memory(err):
                raise
            if batch > 1:
                batch_size = max(1, batch // 2)
            elif tile_size // 2 > 2 * halo:
                tile_size = max(round_up(tile_size // 2, m), round_up(2 * halo + m, m))
            else:
                raise MemoryError(
                    "Prediction ran out of memory even with one smallest tile; close other "
                    "programs or use a smaller model."
                ) from err
            message = (f"Out of memory: retrying with tiles of {tile_size} px and "
                       f"batches of {batch_size or 1}.")
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            yield PredictProgress(0, len(tiles) * n, message)

    probs = result[:, :h, :w]
    probs = D.from_planes(probs, lead)
    if n_out == 1:
        probs = probs[..., 0]
    return probs


def _run_tiles(unet, planes, stats, padded_shape, tiles, batch, n_out):
    """Run all (plane, tile) windows in batches; yields progress, returns (N, Hp, Wp, K)."""
    n, h, w, c = planes.shape
    hp, wp = padded_shape
    out = np.empty((n, hp, wp, n_out), np.float32)
    jobs = [(i, t) for i in range(n) for t in tiles]
    wh = tiles[0].window[0].stop - tiles[0].window[0].start
    ww = tiles[0].window[1].stop - tiles[0].window[1].start
    cached_plane, cached_index = None, -1
    km = unet.keras_model
    for start in range(0, len(jobs), batch):
        chunk = jobs[start:start + batch]
        x = np.empty((len(chunk), wh, ww, c), np.float32)
        for k, (i, tile) in enumerate(chunk):
            if i != cached_index:
                plane = unet.normalization.apply(planes[i:i + 1], stats)[0]
                if (hp, wp) != (h, w):
                    plane = np.pad(plane, ((0, hp - h), (0, wp - w), (0, 0)), mode="symmetric")
                cached_plane = plane
                cached_index = i
            x[k] = cached_plane[tile.window]
        y = np.asarray(km.predict_on_batch(x))
        for k, (i, tile) in enumerate(chunk):
            out[(i, *tile.core)] = y[(k, *tile.core_in_window)]
        yield PredictProgress(start + len(chunk), len(jobs))
    return out


def predict(model: Any, image: Any, *, callback: Callable[[PredictProgress], None] | None = None,
            **kwargs: Any) -> np.ndarray:
    """Foreground (or class) probabilities of ``image``; see `iter_predict` for arguments.

    A dask array input gives a lazy dask array output (see `napari_unet.lazy`).
    """
    if _is_dask(image):
        from .lazy import predict_dask

        return predict_dask(model, image, **kwargs)
    return drain(iter_predict(model, image, **kwargs), callback)


def _is_dask(x: Any) -> bool:
    return type(x).__module__.startswith("dask.")


def probabilities_and_labels(model: Any, image: Any, options: Any = None, *,
                             axes: str | None = None,
                             callback: Callable[[PredictProgress], None] | None = None,
                             **kwargs: Any) -> tuple[Any, Any]:
    """Probabilities and labels of ``image`` from one network pass.

    ``options`` is a `napari_unet.postprocess.LabelOptions` (default: instance
    labels at the model's threshold); the other arguments are those of
    `iter_predict`. Returns ``(probabilities, labels)`` as described in
    `iter_predict` and `segment`; for a dask ``image`` both are lazy dask
    arrays sharing one graph, so computing both runs the network once.
    """
    from dataclasses import asdict

    from .postprocess import LabelOptions, labels_from_probabilities

    unet = _resolve_model(model)
    options = (options if options is not None else LabelOptions()).with_threshold(unet.threshold)
    axes = D.resolve_axes(axes, np.shape(image), unet.config.in_channels)
    spatial_axes, n_classes = axes.replace("C", ""), unet.config.n_classes
    if _is_dask(image):
        from .lazy import lazy_labels, predict_dask

        probs = predict_dask(unet, image, axes=axes, **kwargs)
        return probs, lazy_labels(probs, spatial_axes, n_classes=n_classes, **asdict(options))
    probs = predict(unet, image, axes=axes, callback=callback, **kwargs)
    return probs, labels_from_probabilities(probs, spatial_axes, n_classes=n_classes,
                                            **asdict(options))


def segment(
    model: Any,
    image: Any,
    *,
    threshold: float | None = None,
    instances: bool = True,
    min_size: int = 0,
    split_touching: bool = False,
    link_planes: bool = False,
    axes: str | None = None,
    callback: Callable[[PredictProgress], None] | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Label image of ``image``: the spatial shape of the input, smallest integer dtype.

    Binary models: pixels with probability > ``threshold`` (default: the
    model's, usually 0.5) are foreground; with ``instances`` each connected
    object gets its own id (objects under ``min_size`` pixels are removed;
    ``split_touching`` separates touching objects by a distance-transform
    watershed; ``link_planes`` connects objects across Z instead of labelling
    each plane alone). Without ``instances`` the result is a 0/1 mask.
    Multi-class models: the class index of each pixel (argmax). A dask
    ``image`` gives lazy labels. Other keyword arguments are those of
    `iter_predict`; every option is checked before any work.
    """
    from .postprocess import LabelOptions

    options = LabelOptions(threshold, instances, min_size, split_touching, link_planes)
    return probabilities_and_labels(model, image, options, axes=axes, callback=callback,
                                    **kwargs)[1]
