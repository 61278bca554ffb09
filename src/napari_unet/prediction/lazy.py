"""Lazy prediction of dask arrays (napari lazy layers, zarr, data larger than memory).

`predict_dask` returns a dask array of probabilities built block by block: each
block is read with ``halo`` pixels of context from its neighbours
(``dask.array.overlap`` with ``boundary="none"``, so image borders are treated
exactly as in an in-memory pass), predicted with the tiled engine, and cropped
back. A 3D network's blocks are volumes, cut and grown along Z too. Block edges lie
on each axis' pooling grid (``2**depth`` in Y and X) and the normalisation
statistics are computed once for the whole array, so ``compute()`` equals the
in-memory `napari_unet.prediction` to float rounding. Any dask scheduler works,
``dask.distributed`` included: the model travels as its ``.keras`` bytes and
is loaded once per worker process (see `ModelHandle`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from typing import Any

import numpy as np

from ..common import arrays
from ..model.costs import round_up
from ..model.normalization import PercentileNormalization
from ..model.unet import UNetModel

# Models loaded in this process, by content hash: a dask worker process loads a
# model once and reuses it for every block. Bounded to the two most recent.
_LOADED: dict[str, UNetModel] = {}
_LOAD_COUNT = {"loads": 0}
_LOAD_LOCK = threading.Lock()


def loads_in_this_process() -> int:
    """How many models this process has loaded from bytes (for tests and diagnostics)."""
    return _LOAD_COUNT["loads"]


class ModelHandle:
    """A picklable reference to a `UNetModel` for dask tasks.

    In the process that made it, it holds the live model. Pickled (to a dask
    worker process), it carries the model file's bytes and loads them once per
    process, shared by all blocks. Calls to the network are serialised per
    process: TensorFlow already uses every core for one call.
    """

    def __init__(self, model: UNetModel):
        self._model = model
        self._bytes: bytes | None = None
        self.digest: str | None = None
        self._lock = threading.Lock()

    def _serialise(self) -> None:
        if self._bytes is None:
            from ..model.files import save_model

            with tempfile.TemporaryDirectory() as tmp:
                path = save_model(self._model, os.path.join(tmp, "model.keras"))
                self._bytes = path.read_bytes()
            self.digest = hashlib.sha256(self._bytes).hexdigest()

    def __getstate__(self) -> dict:
        self._serialise()
        return {"bytes": self._bytes, "digest": self.digest}

    def __setstate__(self, state: dict) -> None:
        self._model = None
        self._bytes, self.digest = state["bytes"], state["digest"]
        self._lock = threading.Lock()

    def get(self) -> UNetModel:
        if self._model is not None:
            return self._model
        with _LOAD_LOCK:
            model = _LOADED.get(self.digest)
            if model is None:
                from ..model.files import load_model

                with tempfile.TemporaryDirectory() as tmp:
                    path = os.path.join(tmp, "model.keras")
                    with open(path, "wb") as fh:
                        fh.write(self._bytes)
                    model = load_model(path)
                _LOAD_COUNT["loads"] += 1
                while len(_LOADED) >= 2:
                    _LOADED.pop(next(iter(_LOADED)))
                _LOADED[self.digest] = model
        self._model = model
        return model

    @property
    def lock(self) -> threading.Lock:
        return _LOAD_LOCK if self._bytes is not None else self._lock


def _spatial(config: Any) -> str:
    """The axes a network's blocks are cut along: Y and X, and Z for a 3D network."""
    return "ZYX" if config.ndim == 3 else "YX"


def _rechunk(image: Any, axes: str, config: Any, halos: dict[str, int], chunk: int | None):
    """Put C last, one chunk; cut Y/X (and Z for a 3D network) in blocks on the pooling
    grid of that axis, none thinner than its halo. ``chunk`` sets the Y/X side; Z blocks
    follow the input's Z chunks, at least 4 halos."""
    import dask.array as da

    if "C" in axes:
        image = da.moveaxis(image, axes.index("C"), -1)
        axes = axes.replace("C", "") + "C"
    multiples = dict(zip(_spatial(config), config.size_multiples))
    chunks = {}
    for name, halo in halos.items():
        i, size = axes.index(name), image.shape[axes.index(name)]
        wanted = chunk if chunk and name != "Z" else max(max(image.chunks[i]), 4 * halo)
        side = round_up(wanted, multiples[name])
        blocks = [side] * (size // side)
        rest = size - sum(blocks)
        if rest and blocks and rest < halo:  # a sliver could not lend a full halo
            blocks[-1] += rest
        elif rest:
            blocks.append(rest)
        chunks[i] = tuple(blocks)
    if "C" in axes:
        chunks[len(axes) - 1] = -1
    return image.rechunk(chunks), axes


def lazy_probabilities(image: Any, axes: str, config: Any, normalization: PercentileNormalization,
                       block_fn: Any, chunk: int | None = None, outputs: int | None = None,
                       dtype: Any = np.float32) -> Any:
    """Dask array of probabilities; ``block_fn(block, axes, stats, origin)`` predicts one
    block whose first pixel is at ``origin`` (row, column; (z, row, column) for a 3D
    network) of the whole image.

    ``image`` is a dask array with (validated) ``axes``; ``config`` the model's
    `UNetConfig`. A 3D network's blocks are volumes cut along Z too, each with its own Z
    halo. Computes the normalisation statistics of the whole array now
    (one strided read) and returns the lazy result (see the module docstring).
    ``outputs``: values per pixel that ``block_fn`` returns on a trailing axis
    (default: the model's probabilities, no axis for one class), of ``dtype``.
    """
    import dask.array as da

    from ..model.costs import halo as halo_of

    spatial = _spatial(config)
    arrays.to_units(np.zeros((1,) * len(axes)), axes, config.ndim)  # ValueError: 3D, no Z
    halos = {name: halo_of(config, name) for name in spatial}
    image, axes = _rechunk(image, axes, config, halos, chunk)
    planes, _ = arrays.to_planes(image, axes)
    stats = normalization.statistics(planes)
    cut = [axes.index(name) for name in spatial]
    depth = {i: 0 for i in range(image.ndim)}
    for i, name in zip(cut, spatial):  # an axis in one block has no neighbour to lend context
        depth[i] = halos[name] if len(image.chunks[i]) > 1 else 0
    grown = da.overlap.overlap(image, depth=depth, boundary="none")
    n_classes = config.n_classes if outputs is None else outputs
    out_chunks = [c for i, c in enumerate(image.chunks) if axes[i] != "C"]
    kwargs: dict[str, Any] = {}
    if n_classes > 1:
        out_chunks = out_chunks + [(n_classes,)]
        if "C" not in axes:
            kwargs["new_axis"] = image.ndim
    elif "C" in axes:
        kwargs["drop_axis"] = image.ndim - 1
    starts = [np.cumsum((0,) + image.chunks[i]).tolist() for i in cut]
    return grown.map_blocks(_predict_block, block_fn=block_fn, axes=axes, stats=stats,
                            halos=[depth[i] for i in cut], cut=cut, starts=starts,
                            dtype=dtype, chunks=tuple(out_chunks),
                            meta=np.empty((0,) * len(out_chunks), dtype), **kwargs)


def predict_dask(model: Any, image: Any, *, axes: str | None = None, tile_size: int | None = None,
                 batch_size: int | None = None, memory_budget: int | None = None,
                 chunk: int | None = None, probabilities_as: str = "float32") -> Any:
    """Lazy probabilities of a dask array (see the module docstring).

    Returns a float32 dask array (uint8 with ``probabilities_as="uint8"``, see
    `napari_unet.prediction.api.iter_predict`) with the image's spatial axes (channel axis
    dropped), plus a trailing class axis for multi-class models. ``chunk``
    sets the Y/X block side (default: the input's chunks, at least 4 halos,
    rounded up to a multiple of ``2**depth``); a 3D network's Z blocks follow the
    input's Z chunks, at least 4 Z halos.
    """
    from functools import partial

    from ..common.checks import check_whole
    from ..model.files import resolve_model
    from .reduced import probability_reduction
    from .tiled import check_run_options

    unet = resolve_model(model)
    arrays.check_array_type(image)
    axes = arrays.resolve_axes(axes, image.shape, unet.config.in_channels)
    arrays.check_channels(axes, image.shape, unet.config.in_channels)
    check_run_options(unet.config, tile_size, batch_size, memory_budget)
    dtype = probability_reduction(probabilities_as)[2]
    if chunk is not None:
        chunk = check_whole("chunk", chunk, 1, unit=" of pixels")
    options = {"tile_size": tile_size, "batch_size": batch_size, "memory_budget": memory_budget,
               "probabilities_as": probabilities_as}
    block_fn = partial(_predict_with_handle, handle=ModelHandle(unet), options=options)
    return lazy_probabilities(image, axes, unet.config, unet.normalization, block_fn, chunk,
                              dtype=dtype)


def _predict_with_handle(block: np.ndarray, axes: str, stats, origin: tuple[int, int],
                         handle: ModelHandle, options: dict) -> np.ndarray:
    from ..common.progress import drain
    from .tiled import iter_probabilities

    model = handle.get()
    with handle.lock:
        return drain(iter_probabilities(model, block, axes=axes, stats=stats, **options))


def _predict_block(block: np.ndarray, block_fn: Any, axes: str, stats, halos: list[int],
                   cut: list[int], starts: list, block_info=None) -> np.ndarray:
    """``block_fn`` on one block grown by ``halos`` along the ``cut`` axes, cropped back."""
    loc = block_info[0]["chunk-location"]
    nchunks = block_info[0]["num-chunks"]
    origin = tuple(int(first[loc[i]]) - (halo if loc[i] > 0 else 0)
                   for first, i, halo in zip(starts, cut, halos))
    probs = block_fn(block, axes, stats, origin)
    crop = [slice(None)] * probs.ndim
    for i, halo in zip(cut, halos):
        lo = halo if loc[i] > 0 else 0
        hi = halo if loc[i] < nchunks[i] - 1 else 0
        crop[i] = slice(lo, block.shape[i] - hi)
    return np.ascontiguousarray(probs[tuple(crop)])
