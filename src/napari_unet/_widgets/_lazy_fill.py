"""Lazy Run results that fill in as they are computed, without blocking napari (no ML here).

The Run widget turns a dask/zarr result into `ProgressiveArray` layers: napari draws
them at once (computed parts, empty elsewhere) and queues what it showed. `LazyFill`
computes the queued chunks in a worker through the engine, refreshes the layers as they
arrive, and reports progress; Cancel stops it between network calls.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from ..engine.client import EngineCancelled, EngineClosed
from ..prediction.progressive import ProgressiveArray, iter_fill
from ._workers import ActivityProgress, start_worker

_IN_FILL = threading.local()  # .active: this thread runs a fill (its Cancel applies)
LEVELS_ABOVE = 2048  # px: a plane wider or taller is shown at several resolutions
COARSEST = 1024  # px: the side the smallest level napari draws from shrinks to
THUMBNAIL = 64  # px: the side of the last level, which napari reads whole for the thumbnail
AFTER_FILL = {  # what comes next, by how a fill ended (`LazyFill.outcome`)
    "": "the rest is computed as you view it",
    "cancelled": "cancelled; press Run again, or view another plane, to go on",
    "gave way": "paused for another job; it goes on when the model is free",
    "removed": "its layers were deleted, so nothing more is computed"}


def levels(lazy: Any) -> list[Any]:
    """The resolution levels napari shows of dask array ``lazy`` (Y and X its last axes):
    ``[lazy]`` for planes up to `LEVELS_ABOVE` px, else ``lazy`` and every second, fourth...
    pixel of it down to `COARSEST` px, and one down to `THUMBNAIL` px last. Drawing a
    zoomed-out 8192² plane then maps a 1024² level, not 67 million labels; a level's
    block is computed from the full resolution's (nearest pixels: labels stay labels).
    napari 0.9 reads the last level whole (``np.asarray``) in its drawing thread and
    keeps it: `LazyFill.wrap` makes it a level that never computes there."""
    out = [lazy]
    if max(lazy.shape[-2:]) <= LEVELS_ABOVE:
        return out
    while max(out[-1].shape[-2:]) > COARSEST:
        step = 2 ** len(out)
        out.append(lazy[..., ::step, ::step])
    step = 2 ** len(out)
    while max(lazy.shape[-2:]) / step > THUMBNAIL:
        step *= 2
    out.append(lazy[..., ::step, ::step])
    return out


def progressive_arrays(data: Any) -> list[ProgressiveArray]:
    """The `ProgressiveArray` (or, multiscale, the levels) a lazy layer's ``data`` is."""
    if isinstance(data, ProgressiveArray):
        return [data]
    if isinstance(data, Sequence):  # napari's MultiScaleData (behind its plugin proxy too)
        parts = list(data)
        if parts and all(isinstance(part, ProgressiveArray) for part in parts):
            return parts
    return []


class LazyFillError(Exception):
    """A block of a lazy result failed with a ``RuntimeError`` (re-raised as this: napari's
    generator workers take a RuntimeError for "worker deleted" and never report it)."""


def fill_job(arrays: list[ProgressiveArray], should_stop: Callable[[], bool]):
    """Worker body: `iter_fill` in a thread marked as filling."""
    _IN_FILL.active = True
    try:
        return (yield from iter_fill(arrays, should_stop))
    except RuntimeError as err:
        raise LazyFillError(f"{type(err).__name__}: {err}") from err
    finally:
        _IN_FILL.active = False


class EngineBlockPredictor:
    """Predict one block of a lazy layer in the engine process (called by dask in the
    fill worker). Results are kept (up to ``max_bytes``), so the labels and probability
    layers of one Run share them. Once ``cancelled`` is set, a call from a fill raises
    `EngineCancelled`; ``on_block()`` is called after each block the engine computed.
    Other callers (``np.asarray(layer.data)``, e.g. to save the layer) are refused with
    a ``ValueError`` while ``blocked()`` (training would keep them waiting)."""

    def __init__(self, engine: Any, model_path: str | None, tile_size: int | None = None,
                 passes: int = 0, max_bytes: int = 256 << 20,
                 blocked: Callable[[], bool] = lambda: False):
        self.engine, self.model_path, self.tile_size, self.passes = (engine, model_path,
                                                                     tile_size, passes)
        self.cancelled = threading.Event()
        self.blocked = blocked
        self.on_block: Callable[[], None] | None = None
        self.max_bytes = max_bytes
        self._kept: OrderedDict[tuple, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __call__(self, block: Any, axes: str, stats: Any, origin: Any = None) -> Any:
        """Probabilities of ``block``; with ``passes``, its entropy and spread stacked last."""
        import hashlib

        # origin is where the block starts along the axes it is cut in (Y, X; and Z for a 3D
        # network): the pixels tell other planes and time points apart
        key = (tuple(origin) if origin is not None else None, block.shape,
               hashlib.blake2b(np.ascontiguousarray(block).data, digest_size=16).digest())
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None:
            return kept
        if getattr(_IN_FILL, "active", False):
            if self.cancelled.is_set():
                raise EngineCancelled("the lazy result was cancelled")
        elif self.blocked():
            raise ValueError("the model is busy (training): the rest of this lazy result can "
                             "be computed when it is done")
        if self.passes:
            result = self.engine.uncertainty_block(block, axes, stats, origin, self.passes,
                                                   model_path=self.model_path,
                                                   tile_size=self.tile_size)
        else:
            result = self.engine.predict_block(block, axes, stats, model_path=self.model_path,
                                               tile_size=self.tile_size)
        with self._lock:  # the fill worker and np.asarray(layer.data) may both be here
            if key not in self._kept:
                self._kept[key] = result
                self._bytes += result.nbytes
            while self._bytes > self.max_bytes and len(self._kept) > 1:
                self._bytes -= self._kept.popitem(last=False)[1].nbytes
        if self.on_block is not None:
            self.on_block()
        return result


class LazyFill:
    """The lazy layers of the last Run of ``widget`` (a `RunWidget`) and the worker that
    fills them. One at a time per widget; it uses the session's busy guard: it waits
    while Train or Build use the engine, and gives way when they (or Run) are pressed
    during a fill."""

    REFRESH_EVERY = 0.3  # s between layer refreshes while chunks arrive

    def __init__(self, widget: Any):
        self.widget = widget
        self.arrays: list[ProgressiveArray] = []
        self.layers: list[Any] = []
        self.predictors: list[EngineBlockPredictor] = []
        self.worker = None
        self.activity = None
        self.blocks = 0
        self.fills = 0  # fill workers that ended (for tests and diagnostics)
        self.outcome = ""  # how the running fill ends: a key of AFTER_FILL, or "failed"
        self._refreshed = 0.0

    @property
    def running(self) -> bool:
        return self.worker is not None

    def wrap(self, tuples: list[tuple], predictors: list[EngineBlockPredictor]) -> list[tuple]:
        """The LayerDataTuples with each dask array made a `ProgressiveArray` of this fill
        (the previous Run's lazy layers are let go: they keep what they computed)."""
        from superqt.utils import ensure_main_thread

        self.detach()
        self.predictors = predictors
        for predictor in predictors:
            predictor.on_block = ensure_main_thread(self._on_block)
            predictor.blocked = lambda: self.widget.session.blocked
        wrapped = []
        for data, meta, kind in tuples:
            parts = levels(data)
            arrays = [ProgressiveArray(level, fill=0, computes_whole=len(parts) == 1
                                       or i < len(parts) - 1) for i, level in enumerate(parts)]
            self.arrays.extend(arrays)
            if len(arrays) > 1:
                wrapped.append((arrays, {**meta, "multiscale": True}, kind))
            else:
                wrapped.append((arrays[0], meta, kind))
        return wrapped

    def show(self, layers: list[Any]) -> None:
        """The napari layers that display the wrapped arrays (refreshed as chunks arrive).
        From now on what napari shows of them is computed: what a new layer sliced
        before it knew the viewer's current plane is forgotten."""
        from superqt.utils import ensure_main_thread

        self.layers = [layer for layer in layers if progressive_arrays(layer.data)]
        for layer in self.layers:
            _read_only(layer)
        viewer = self.widget.viewer
        if not getattr(self, "_watching_removals", False):
            viewer.layers.events.removed.connect(self._on_layer_removed)
            self._watching_removals = True
        request = ensure_main_thread(self.request)
        for array in self.arrays:
            array.forget_pending()
            array.on_request = request
        self._refresh()

    def _on_layer_removed(self, event: Any) -> None:
        """A lazy layer the user deleted is no longer filled (and its memory goes); with
        the last of them gone, the fill stops after its current network call."""
        if event.value in self.layers:
            self.layers.remove(event.value)
            for array in progressive_arrays(event.value.data):
                if array in self.arrays:
                    array.forget_pending()
                    self.arrays.remove(array)
            if not self.layers:
                self._stop("removed", pause=True)

    def incomplete(self) -> list[tuple[Any, int, int]]:
        """``(layer, chunks computed, chunks in all)`` of each lazy layer whose full
        resolution is not computed whole yet."""
        out = []
        for layer in self.layers:
            full = progressive_arrays(layer.data)[0]
            total = int(np.prod(full.lazy.numblocks))
            if full.chunks_done < total:
                out.append((layer, full.chunks_done, total))
        return out

    def close(self) -> None:
        """The Run dock closed: stop, and mark each lazy layer that is
        not computed whole as incomplete (its name says so, and a warning says how to
        finish it), so an empty part is not taken for background."""
        from napari.utils.notifications import show_warning

        for layer, done, total in self.incomplete():
            layer.name = f"{layer.name} (incomplete)"
            show_warning(f"'{layer.name}' holds {done} of its {total} chunks at full "
                         "resolution: the U-Net dock was closed, so the rest is not computed "
                         "(it shows as empty). Open the dock again and press Run to compute "
                         "it all.")
        self.detach()

    def detach(self) -> None:
        """Stop filling the current layers (they keep what they show) and forget them."""
        self.cancel()
        self.arrays, self.layers, self.predictors = [], [], []

    def cancel(self) -> None:
        """Stop after the current network call and drop the queue; the layers keep what
        is computed, and nothing more is computed until `resume`."""
        self._stop("cancelled", pause=True)

    def _give_way(self) -> None:
        """Another action wants the engine: end after the current network call; what is in
        view is queued again and computed once the engine is free."""
        self._stop("gave way", pause=False)

    def _stop(self, outcome: str, pause: bool) -> None:
        """End the running fill after its current network call (the first reason given
        is its ``outcome``) and drop the queue; ``pause``: queue nothing until `resume`."""
        if self.running and not self.outcome:
            self.outcome = outcome
        for predictor in self.predictors:
            predictor.cancelled.set()
        for array in self.arrays:
            array.paused = array.paused or pause
            array.forget_pending()

    def resume(self, *_: Any) -> None:
        """Compute what is in view again (the viewer moved to another plane or view)."""
        if any(array.paused for array in self.arrays):
            for array in self.arrays:
                array.paused = False
            self._refresh()

    def request(self) -> None:
        """Start filling what is queued (soon, not inside napari's slicing), unless a fill
        runs or the model is busy."""
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, self._start)

    def _start(self) -> None:
        session = self.widget.session
        if (self.running or session.busy or self.widget.closed or self.widget.worker is not None
                or not any(a.pending for a in self.arrays)):
            return
        for predictor in self.predictors:
            predictor.cancelled.clear()
        self.blocks, self.outcome = 0, ""
        session.set_busy(True, "computing the lazy result in view", give_way=self._give_way)
        self.activity = ActivityProgress(f"U-Net: {self.layers[0].name if self.layers else 'lazy'}")
        arrays, predictors = list(self.arrays), list(self.predictors)
        generation = self.fills
        self.worker = start_worker(fill_job, arrays,
                                   lambda: any(p.cancelled.is_set() for p in predictors),
                                   on_yield=lambda event: self._on_chunk(event, generation),
                                   on_error=self._on_error, on_finish=self._on_finish)
        self.widget.on_fill_started()

    def _on_block(self) -> None:
        self.blocks += 1
        if self.running:  # (a call posted from the worker may arrive after it finished)
            self.widget.on_fill_progress(self.blocks, None)

    def _on_chunk(self, event: Any, generation: int) -> None:
        if not self.running or generation != self.fills:  # a late event of an ended fill
            return
        self.widget.on_fill_progress(self.blocks, event)
        if time.monotonic() - self._refreshed > self.REFRESH_EVERY:
            self._refresh()
        if self.activity is not None:
            self.activity.show(event.done, max(1, event.total))

    def _refresh(self) -> None:
        self._refreshed = time.monotonic()
        for layer in self.layers:
            layer.refresh()

    def _on_error(self, err: BaseException) -> None:
        if self.widget.closed and isinstance(err, EngineClosed):
            return  # the dock (or the viewer) closed, and with it the engine
        if self.outcome == "removed":
            return  # its layers were deleted: nothing is left to fail
        if not isinstance(err, EngineCancelled):
            self.outcome = "failed"
            self.cancel()  # no retry loop: viewing another part tries again
            self.widget.on_fill_error(err)

    def _on_finish(self) -> None:
        self.worker = None
        self.fills += 1
        if self.activity is not None:
            self.activity.close()
            self.activity = None
        self.widget.session.set_busy(False)  # actions waiting for the model go first
        self._refresh()  # may queue more (the view moved meanwhile): _start runs again
        self.widget.on_fill_finished(sum(a.chunks_done for a in self.arrays), self.outcome)
        self.request()


def _read_only(layer: Any) -> None:
    """Keep a lazy Labels layer from being painted (its data cannot be written; napari
    makes layers editable again when the view changes)."""
    import napari

    if not isinstance(layer, napari.layers.Labels):
        return
    layer.editable = False

    def keep(*_: Any) -> None:
        if layer.editable and progressive_arrays(layer.data):
            layer.editable = False

    layer.events.editable.connect(keep)
