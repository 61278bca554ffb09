"""Running a network over an image: planes cut into fixed-size tiles with a halo, tiles
batched, batches sized from memory, and smaller ones after running out of it.

`iter_tiled` is the one tiled, batched pass every caller uses: probabilities
(`iter_probabilities`, for `predict`, `segment`, the lazy path's blocks, the engine
process, calibration and the live preview) and Monte-Carlo dropout maps
(`napari_unet.prediction.uncertainty`). What runs on each batch of windows is a `Network`:
`Probabilities` (the compiled forward pass) by default. Tiles have one fixed shape (no
retracing); their halo comes from the receptive field (see
`napari_unet.prediction.tiling`), so the result equals a whole-image pass.
"""

from __future__ import annotations

import warnings
from typing import Any, Generator, Protocol, Sequence

import numpy as np

from ..common import arrays
from ..common.progress import PredictProgress
from ..model.normalization import offset_and_scale
from ..model.unet import UNetModel
from .tiling import TilePlan, budget_for, check_run_options, first_tile_size

__all__ = ["iter_tiled", "iter_probabilities", "Network", "Probabilities"]


class Network(Protocol):
    """What `iter_tiled` runs on batches of windows.

    ``outputs``: values per pixel it returns (of ``dtype``, if it has one, else float32);
    ``cost``: how many windows of memory one window takes (so the batch is sized to fit). ``run(windows, origins, lo, scale)``
    starts the work on windows (B, H, W, C) of raw pixels that ``(windows - lo) /
    scale`` normalises (``lo``, ``scale`` (1, 1, 1, C) float32), whose first pixels lie
    at ``origins`` [(row, column), ...] of the whole image, and returns a handle;
    ``fetch(handle)`` waits for it and returns (B, H, W, outputs) of its ``dtype``.
    """

    outputs: int
    cost: int

    def run(self, windows: np.ndarray, origins: Sequence[tuple[int, int]], lo: np.ndarray,
            scale: np.ndarray) -> Any: ...

    def fetch(self, handle: Any) -> np.ndarray: ...


class Probabilities:
    """The network's probabilities (one per class; one foreground value for a sigmoid
    model), through its compiled forward pass (`napari_unet.backend.forward.Forward`):
    batch k + 1 is dispatched before batch k is fetched. ``probabilities_as``: what is
    copied back (`napari_unet.prediction.reduced.PROBABILITIES_AS`)."""

    cost = 1

    def __init__(self, unet: UNetModel, probabilities_as: str = "float32"):
        from ..backend.forward import forward_for
        from .reduced import probability_reduction

        key, reduce, self.dtype = probability_reduction(probabilities_as)
        self.forward = forward_for(unet.keras_model, key, reduce, self.dtype)
        self.outputs = max(1, unet.config.n_classes)

    def run(self, windows: np.ndarray, origins: Sequence[tuple[int, int]], lo: np.ndarray,
            scale: np.ndarray) -> Any:
        return self.forward.run(windows, lo, scale)

    def fetch(self, handle: Any) -> np.ndarray:
        return self.forward.fetch(handle)


def iter_probabilities(
    unet: UNetModel, image: Any, *, axes: str | None = None, tile_size: int | None = None,
    batch_size: int | None = None, memory_budget: int | None = None,
    stats: tuple[np.ndarray, np.ndarray] | None = None, probabilities_as: str = "float32",
) -> Generator[PredictProgress, None, np.ndarray]:
    """Probabilities of ``image`` under ``unet``, yielding `PredictProgress` after each batch.

    Takes the arguments of `napari_unet.prediction.api.iter_predict` (there
    documented) with a loaded `UNetModel`, and returns the same array.
    """
    network = Probabilities(unet, probabilities_as)
    probs = yield from iter_tiled(unet, image, axes=axes, tile_size=tile_size,
                                  batch_size=batch_size, memory_budget=memory_budget,
                                  stats=stats, network=network)
    return probs[..., 0] if unet.config.n_classes == 1 else probs


def iter_tiled(unet: UNetModel, image: Any, *, axes: str | None = None,
               tile_size: int | None = None, batch_size: int | None = None,
               memory_budget: int | None = None, stats: Any = None,
               network: Network | None = None, origin: tuple[int, ...] | None = None
               ) -> Generator[PredictProgress, None, np.ndarray]:
    """``network`` (default: `Probabilities` of ``unet``) over every plane of ``image``
    (every Z stack, for a 3D network), tiled and batched; yields `PredictProgress` after
    each batch and returns ``(*leading spatial axes, Y, X, network.outputs)`` (float32, or
    the network's ``dtype``).

    ``image``, ``axes``, ``tile_size``, ``batch_size``, ``memory_budget`` and ``stats``
    are those of `napari_unet.prediction.api.iter_predict` (there documented); ``origin``
    (row, column; (z, row, column) in 3D) is where the image's first pixel lies in a larger one (a lazy block),
    which the network is told for each window. Every option is checked first. On
    running out of memory, batches and then tiles are halved and the planes run again,
    with a `PredictProgress` message saying so.
    """
    from ..backend.devices import accelerator_memory, cpu_call_bytes
    from ..backend.runtime import is_out_of_memory

    config = unet.config
    network = network if network is not None else Probabilities(unet)
    image = arrays.check_image(image)
    axes = arrays.resolve_axes(axes, image.shape, config.in_channels)
    arrays.check_channels(axes, image.shape, config.in_channels)
    planes, lead = arrays.to_units(image, axes, config.ndim)
    free = accelerator_memory()  # asked once: on TensorFlow GPUs it runs nvidia-smi
    call_bytes = cpu_call_bytes()
    if memory_budget is None:
        memory_budget = budget_for(free)
    batch_size, memory_budget = check_run_options(config, tile_size, batch_size, memory_budget)
    shape = planes.shape[1:-1]
    origin = (0,) * len(shape) if origin is None else tuple(origin)
    tile_size, message = first_tile_size(config, tile_size, shape, memory_budget,
                                         free is not None, network.cost)
    if stats is None:
        stats = unet.normalization.statistics(planes.reshape((-1,) + planes.shape[-3:]))
    while True:
        plan = TilePlan.make(config, shape, tile_size, batch_size, memory_budget,
                             free is not None, network.cost, call_bytes)
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            yield PredictProgress(0, len(planes) * len(plan.tiles), message)
        try:
            result = yield from _run_tiles(unet, network, planes, stats, plan, origin)
            break
        except Exception as err:  # noqa: BLE001 - only out-of-memory is retried
            if not is_out_of_memory(err):
                raise
            tile_size, batch_size = plan.smaller(config, err)
            if config.ndim == 3:  # fewer planes per window too (a smaller tile takes more)
                memory_budget = max(1, memory_budget // 2)
            message = (f"Out of memory: retrying with tiles of {tile_size} px and "
                       f"batches of {batch_size}.")
    return arrays.from_planes(result[(slice(None),) + tuple(slice(0, n) for n in shape)], lead)


def _run_tiles(unet: UNetModel, network: Network, planes: np.ndarray, stats: Any,
               plan: TilePlan, origin: tuple[int, ...]):
    """Run all (plane, tile) windows of ``planes`` (N, H, W, C), or of volumes (N, Z, H,
    W, C), in batches of ``plan.batch``; yields progress and returns the network's
    outputs on the padded units (N, Hp, Wp, K) or (N, Zp, Hp, Wp, K).

    Batches k + 1 and k + 2 are cut and dispatched before batch k is fetched (at most
    ``IN_FLIGHT`` batches' outputs wait on the device), so the host prepares windows and
    stores results while the device computes, and the device's copy of batch k back
    (started as soon as it is computed, `napari_unet.backend.forward.Forward.run`)
    overlaps the compute of the next.
    """
    n = planes.shape[0]
    source, lo, scale = _device_input(unet, planes, stats, plan.padded)
    jobs = [(i, t) for i in range(n) for t in plan.tiles]
    whole = plan.whole
    dtype = getattr(network, "dtype", np.float32)  # `Reduced` maps: uint8 or float32
    out = [] if whole else np.empty((n, *plan.padded, network.outputs), dtype)
    in_flight: list = []
    for start in range(0, len(jobs) + IN_FLIGHT * plan.batch, plan.batch):
        chunk = jobs[start:start + plan.batch]
        if chunk:
            origins = [tuple(o + w.start for o, w in zip(origin, t.window)) for _, t in chunk]
            in_flight.append((start, chunk, network.run(_windows(source, chunk, whole),
                                                        origins, lo, scale)))
        if len(in_flight) > IN_FLIGHT - 1 or (in_flight and not chunk):
            done, chunk, handle = in_flight.pop(0)
            y = network.fetch(handle)
            if whole:
                out.append(y)
            else:
                for k, (i, tile) in enumerate(chunk):
                    out[(i, *tile.core)] = y[(k, *tile.core_in_window)]
            yield PredictProgress(done + len(chunk), len(jobs))
    if whole:
        return out[0] if len(out) == 1 else np.concatenate(out)
    return out


IN_FLIGHT = 3  # batches dispatched and not yet fetched, at most


# dtypes the device casts to float32 itself, exactly as the host would normalise them
_DEVICE_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.uint32,
                                              np.int32, np.float16, np.float32))


def _device_input(unet: UNetModel, planes: np.ndarray, stats: Any,
                  padded: tuple[int, ...]) -> tuple[Any, np.ndarray, np.ndarray]:
    """What the device receives: the planes (or volumes) mirror-padded to ``padded`` in
    their own dtype, with the float32 ``lo`` and ``scale`` (1, 1, 1, C; one more 1 for
    volumes) that normalise them there; or, for dtypes float32 cannot hold (64-bit),
    units normalised here with ``lo`` 0 and ``scale`` 1.

    Returns ``(source, lo, scale)``; ``source`` is a function of a unit index giving
    (Hp, Wp, C) or (Zp, Hp, Wp, C), so units are padded one at a time and only when needed.
    """
    c, shape = planes.shape[-1], planes.shape[1:-1]
    stat_shape = (1,) * (len(shape) + 1) + (c,)
    if planes.dtype in _DEVICE_DTYPES:
        lo, scale = (v.reshape(stat_shape) for v in offset_and_scale(stats, np.float32))
        prepare = lambda plane: plane  # noqa: E731
    else:
        lo, scale = np.zeros(stat_shape, np.float32), np.ones(stat_shape, np.float32)
        prepare = lambda plane: unet.normalization.apply(plane, stats)  # noqa: E731
    cache: dict[int, np.ndarray] = {}

    def source(i: int) -> np.ndarray:
        if i not in cache:
            cache.clear()
            plane = prepare(planes[i:i + 1])[0]
            if shape != padded:
                plane = np.pad(plane, [(0, p - n) for n, p in zip(shape, padded)] + [(0, 0)],
                               mode="symmetric")
            cache[i] = plane
        return cache[i]

    source.planes = planes if planes.dtype in _DEVICE_DTYPES and shape == padded else None
    return source, lo, scale


def _windows(source: Any, chunk: list, whole: bool) -> np.ndarray:
    """The batch of windows for ``chunk`` [(plane index, tile), ...] as one array; whole
    unpadded planes in a row are a view of the input, not a copy."""
    first = chunk[0][0]
    if whole and source.planes is not None and [i for i, _ in chunk] == list(
            range(first, first + len(chunk))):
        return source.planes[first:first + len(chunk)]
    return np.stack([source(i)[tile.window] for i, tile in chunk])
