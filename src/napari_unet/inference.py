"""Running the network over an image: planes cut into fixed-size tiles with a halo,
tiles batched, batches sized from memory, and smaller ones after running out of it.

`iter_probabilities` is the one implementation every caller uses (`predict`,
`segment`, the lazy path's blocks, the engine process). Tiles have one fixed
shape (no retracing); their halo comes from the receptive field (see
`napari_unet.tiling`), so the result equals a whole-image pass.
"""

from __future__ import annotations

import warnings
from typing import Any, Generator

import numpy as np

from . import arrays
from .checks import is_whole
from .config import UNetConfig
from .costs import auto_tile_size, default_memory_budget, halo, inference_bytes_per_pixel
from .model import UNetModel
from .normalization import offset_and_scale
from .progress import PredictProgress
from .tiling import plan_tiles, round_up

__all__ = ["iter_probabilities", "check_run_options", "prediction_memory_budget",
           "small_tile_warning"]

MAX_BATCH = 32


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
    memory, at most 1 GiB (`napari_unet.costs.default_memory_budget`)."""
    from .keras_backend import accelerator_memory

    return _budget(accelerator_memory())


def _budget(free: int | None) -> int:
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


def iter_probabilities(
    unet: UNetModel, image: Any, *, axes: str | None = None, tile_size: int | None = None,
    batch_size: int | None = None, memory_budget: int | None = None,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> Generator[PredictProgress, None, np.ndarray]:
    """Probabilities of ``image`` under ``unet``, yielding `PredictProgress` after each batch.

    Takes the arguments of `napari_unet.prediction.iter_predict` (there
    documented) with a loaded `UNetModel`, and returns the same float32 array.
    """
    from .keras_backend import accelerator_memory, is_out_of_memory

    config = unet.config
    image = arrays.check_image(image)
    axes = arrays.resolve_axes(axes, image.shape, config.in_channels)
    arrays.check_channels(axes, image.shape, config.in_channels)
    planes, lead = arrays.to_planes(image, axes)
    free = accelerator_memory()  # asked once: on TensorFlow GPUs it runs nvidia-smi
    if memory_budget is None:
        memory_budget = _budget(free)
    batch_size, memory_budget = check_run_options(config, tile_size, batch_size, memory_budget)
    shape = planes.shape[1:3]
    accelerator = free is not None
    if tile_size is None:
        tile_size, message = auto_tile_size(config, memory_budget, shape, accelerator), ""
    else:
        tile_size, message = int(tile_size), small_tile_warning(config, int(tile_size), shape)
    if stats is None:
        stats = unet.normalization.statistics(planes)
    while True:
        padded, window, tiles, batch = _plan(config, shape, tile_size, batch_size, memory_budget,
                                             accelerator)
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            yield PredictProgress(0, len(planes) * len(tiles), message)
        try:
            result = yield from _run_tiles(unet, planes, stats, padded, window, tiles, batch)
            break
        except Exception as err:  # noqa: BLE001 - only out-of-memory is retried
            if not is_out_of_memory(err):
                raise
            tile_size, batch_size = _smaller_after_oom(config, tile_size, batch, err)
            message = (f"Out of memory: retrying with tiles of {tile_size} px and "
                       f"batches of {batch_size}.")
    probs = arrays.from_planes(result[:, :shape[0], :shape[1]], lead)
    return probs[..., 0] if config.n_classes == 1 else probs


def _smaller_after_oom(config: UNetConfig, tile_size: int, batch_size: int,
                       err: BaseException) -> tuple[int, int]:
    """The next, smaller ``(tile_size, batch_size)`` after running out of memory: halve the
    batch first, then the tile; ``MemoryError`` when neither can shrink."""
    m, context = config.size_multiple, halo(config)
    if batch_size > 1:
        return tile_size, max(1, batch_size // 2)
    if tile_size // 2 > 2 * context:
        return max(round_up(tile_size // 2, m), round_up(2 * context + m, m)), 1
    raise MemoryError("Prediction ran out of memory even with one smallest tile; close other "
                      "programs or use a smaller model.") from err


def _plan(config: UNetConfig, shape: tuple[int, int], tile_size: int, batch_size: int | None,
          memory_budget: int, accelerator: bool = False
          ) -> tuple[tuple[int, int], tuple[int, int], list, int]:
    """Padded plane shape, window shape, tiles and batch size for planes of (Y, X) ``shape``;
    the batch (when ``batch_size`` is None) is what fits ``memory_budget``, at most `MAX_BATCH`."""
    m, context = config.size_multiple, halo(config)
    padded = (round_up(shape[0], m), round_up(shape[1], m))
    window, tiles = plan_tiles(padded, tile_size, context, m)
    per_window = inference_bytes_per_pixel(config, accelerator) * window[0] * window[1]
    batch = batch_size or int(max(1, min(MAX_BATCH, memory_budget // per_window)))
    return padded, window, tiles, batch


def _run_tiles(unet: UNetModel, planes: np.ndarray, stats: Any, padded: tuple[int, int],
               window: tuple[int, int], tiles: list, batch: int):
    """Run all (plane, tile) windows of ``planes`` (N, H, W, C) in batches of ``batch``;
    yields progress and returns the probabilities of the padded planes (N, Hp, Wp, K).

    Batch k + 1 is cut and dispatched before batch k is fetched, so the host
    prepares the next windows while the device computes (see `Forward`).
    """
    from .keras_backend import forward_for

    forward = forward_for(unet.keras_model)
    n = planes.shape[0]
    source, lo, scale = _device_input(unet, planes, stats, padded)
    jobs = [(i, t) for i in range(n) for t in tiles]
    whole = len(tiles) == 1 and tiles[0].window == (slice(0, padded[0]), slice(0, padded[1]))
    out = [] if whole else np.empty((n, *padded, max(1, unet.config.n_classes)), np.float32)
    in_flight: list = []
    for start in range(0, len(jobs) + batch, batch):
        chunk = jobs[start:start + batch]
        if chunk:
            in_flight.append((start, chunk, forward.run(_windows(source, chunk, whole), lo, scale)))
        if len(in_flight) > 1 or (in_flight and not chunk):
            done, chunk, handle = in_flight.pop(0)
            y = forward.fetch(handle)
            if whole:
                out.append(y)
            else:
                for k, (i, tile) in enumerate(chunk):
                    out[(i, *tile.core)] = y[(k, *tile.core_in_window)]
            yield PredictProgress(done + len(chunk), len(jobs))
    if whole:
        return out[0] if len(out) == 1 else np.concatenate(out)
    return out


# dtypes the device casts to float32 itself, exactly as the host would normalise them
_DEVICE_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.uint32,
                                              np.int32, np.float16, np.float32))


def _device_input(unet: UNetModel, planes: np.ndarray, stats: Any,
                  padded: tuple[int, int]) -> tuple[Any, np.ndarray, np.ndarray]:
    """What the device receives: the planes mirror-padded to ``padded`` in their own dtype,
    with the float32 ``lo`` and ``scale`` (1, 1, 1, C) that normalise them there; or, for
    dtypes float32 cannot hold (64-bit), planes normalised here with ``lo`` 0 and ``scale`` 1.

    Returns ``(source, lo, scale)``; ``source`` is a function of a plane index giving
    (Hp, Wp, C), so planes are padded one at a time and only when needed.
    """
    c = planes.shape[-1]
    if planes.dtype in _DEVICE_DTYPES:
        lo, scale = (v.reshape(1, 1, 1, c) for v in offset_and_scale(stats, np.float32))
        prepare = lambda plane: plane  # noqa: E731
    else:
        lo, scale = np.zeros((1, 1, 1, c), np.float32), np.ones((1, 1, 1, c), np.float32)
        prepare = lambda plane: unet.normalization.apply(plane, stats)  # noqa: E731
    h, w = planes.shape[1:3]
    cache: dict[int, np.ndarray] = {}

    def source(i: int) -> np.ndarray:
        if i not in cache:
            cache.clear()
            plane = prepare(planes[i:i + 1])[0]
            if (h, w) != padded:
                plane = np.pad(plane, ((0, padded[0] - h), (0, padded[1] - w), (0, 0)),
                               mode="symmetric")
            cache[i] = plane
        return cache[i]

    source.planes = planes if planes.dtype in _DEVICE_DTYPES and (h, w) == padded else None
    return source, lo, scale


def _windows(source: Any, chunk: list, whole: bool) -> np.ndarray:
    """The batch of windows for ``chunk`` [(plane index, tile), ...] as one array; whole
    unpadded planes in a row are a view of the input, not a copy."""
    first = chunk[0][0]
    if whole and source.planes is not None and [i for i, _ in chunk] == list(
            range(first, first + len(chunk))):
        return source.planes[first:first + len(chunk)]
    return np.stack([source(i)[tile.window] for i, tile in chunk])
