"""Lazy results that never make their viewer wait: `ProgressiveArray`.

napari draws a dask layer by computing the slice it shows, in the drawing thread: a
lazy U-Net result would freeze the viewer for the whole prediction. A
`ProgressiveArray` wraps the dask array instead. Indexing it never computes: it
returns the chunks computed so far and an empty value (0, "no label") elsewhere, and
queues the missing chunks, newest request first. A worker computes them with
`iter_fill` (one chunk at a time, so it can be cancelled between chunks) and the
viewer refreshes the layer as they arrive. Nothing here imports Qt.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import Any, Callable, Generator, Sequence

import numpy as np

from ..common.progress import PredictProgress

__all__ = ["ProgressiveArray", "iter_fill"]


class ProgressiveArray:
    """A read-only array view of dask array ``lazy`` that shows what is computed.

    It has ``shape``, ``dtype``, ``ndim``, ``size`` and basic indexing (integers,
    slices, ``...``), which is what napari needs of layer data. ``fill`` stands in
    for chunks not computed yet. Computed chunks are kept up to ``max_bytes`` (the
    least recently viewed go first; they are computed again when viewed); of a view
    larger than that, only what fits is computed (``too_large`` then says so).
    ``on_request()`` is called (in the indexing thread) when indexing queued new
    chunks; while ``paused``, indexing queues nothing. ``np.asarray`` of the whole
    array computes everything, blocking; with ``computes_whole=False`` it gives what is
    computed so far instead (for a thumbnail that napari reads whole, in its drawing
    thread, and keeps).
    """

    def __init__(self, lazy: Any, fill: Any = 0, max_bytes: int = 1 << 30,
                 on_request: Callable[[], None] | None = None, max_pending: int = 4096,
                 computes_whole: bool = True):
        self.lazy = lazy
        self.fill = fill
        self.max_bytes = int(max_bytes)
        self.on_request = on_request
        self.max_pending = max_pending
        self.computes_whole = computes_whole
        self._starts = [np.cumsum((0,) + tuple(c)) for c in lazy.chunks]
        self._done: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._pending: OrderedDict[tuple, None] = OrderedDict()  # newest last
        self._computing: set[tuple] = set()
        self._lock = threading.Lock()
        self.paused = False  # True: indexing queues nothing (after a Cancel)
        self.too_large = False  # the last view held more chunks than max_bytes keeps

    shape = property(lambda self: tuple(self.lazy.shape))
    dtype = property(lambda self: self.lazy.dtype)
    ndim = property(lambda self: self.lazy.ndim)
    size = property(lambda self: int(np.prod(self.lazy.shape)))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"ProgressiveArray(shape={self.shape}, dtype={self.dtype}, "
                f"{len(self._done)} of {int(np.prod(self.lazy.numblocks))} chunks computed)")

    def astype(self, dtype: Any) -> np.ndarray:
        """All of it as ``dtype`` (computing what is missing, blocking)."""
        return np.asarray(self).astype(dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """All of it: computed chunks as kept, the others computed now (blocking), or
        ``fill`` unless ``computes_whole``."""
        out = np.full(self.shape, self.fill, self.dtype)
        for chunk in np.ndindex(*self.lazy.numblocks):
            with self._lock:
                block = self._done.get(chunk)
            if block is None and not self.computes_whole:
                continue
            if block is None:
                block = self.lazy.blocks[chunk].compute(scheduler="synchronous")
            out[tuple(slice(s[c], s[c + 1]) for s, c in zip(self._starts, chunk))] = block
        return out if dtype is None else out.astype(dtype)

    @property
    def chunks_done(self) -> int:
        return len(self._done)

    @property
    def pending(self) -> int:
        """Chunks asked for and not computed yet."""
        return len(self._pending)

    def forget_pending(self) -> None:
        """Drop the queue (after a Cancel): nothing is computed until it is viewed again."""
        with self._lock:
            self._pending.clear()

    def __getitem__(self, key: Any) -> np.ndarray:
        picks = _normalise_key(key, self.shape)
        out = np.full([len(p) for p in picks if not isinstance(p, int)] or (), self.fill,
                      self.dtype)
        missing, shown = [], 0
        for chunk, where, local in self._overlaps(picks):
            with self._lock:
                block = self._done.get(chunk)
                if block is not None:
                    self._done.move_to_end(chunk)  # viewed: kept longest
            if block is None:
                missing.append(chunk)
            else:
                out[where] = block[local]
                shown += 1
        # a view larger than the memory budget fills in part, instead of computing forever
        # the chunks it keeps evicting
        room = max(0, self.max_bytes // self._chunk_bytes() - shown)
        self.too_large = len(missing) > room
        missing = missing[:room]
        if missing and not self.paused and self._queue(missing) and self.on_request is not None:
            self.on_request()
        return out

    def _chunk_bytes(self) -> int:
        """Bytes of the largest chunk."""
        return max(1, int(np.prod([max(c) if c else 0 for c in self.lazy.chunks]))
                   * self.dtype.itemsize)

    def _overlaps(self, picks: list) -> Generator[tuple, None, None]:
        """(chunk index, where in the output, what of the chunk) for each chunk the
        selection ``picks`` (an int or index array per axis) touches."""
        per_axis = []
        for axis, pick in enumerate(picks):
            starts = self._starts[axis]
            idx = np.atleast_1d(pick)
            owner = np.searchsorted(starts, idx, side="right") - 1
            parts = []
            for c in np.unique(owner):
                sel = np.flatnonzero(owner == c)
                local = _as_slice(idx[sel] - starts[c])
                parts.append((int(c), None if isinstance(pick, int) else _as_slice(sel), local))
            per_axis.append(parts)
        for combo in itertools.product(*per_axis):
            chunk = tuple(c for c, _, _ in combo)
            where = tuple(w for _, w, _ in combo if w is not None)
            local = tuple(loc if w is not None else loc.start for _, w, loc in combo)
            yield chunk, where, local

    def _queue(self, chunks: list) -> bool:
        """Put ``chunks`` at the front of the queue; True if one was not queued before."""
        with self._lock:
            chunks = [c for c in chunks if c not in self._computing]
            new = any(c not in self._pending for c in chunks)
            for c in reversed(chunks):  # the first chunk of a view ends up newest
                self._pending[c] = None
                self._pending.move_to_end(c)
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
        return new

    def compute_next(self) -> tuple | None:
        """Compute the most recently asked-for chunk (in this thread) and keep it; returns
        its index, or None when nothing is pending."""
        with self._lock:
            chunk = None
            while self._pending and chunk is None:
                chunk, _ = self._pending.popitem(last=True)
                chunk = None if chunk in self._done else chunk
            if chunk is None:
                return None
            self._computing.add(chunk)
        try:
            block = np.asarray(self.lazy.blocks[chunk].compute(scheduler="synchronous"))
        except BaseException:
            with self._lock:
                self._computing.discard(chunk)
            raise
        with self._lock:  # one step: a view never sees it neither computing nor done
            self._computing.discard(chunk)
            self._done[chunk] = block
            self._bytes += block.nbytes
            while self._bytes > self.max_bytes and len(self._done) > 1:
                _, old = self._done.popitem(last=False)
                self._bytes -= old.nbytes
        return chunk


def iter_fill(arrays: Sequence[ProgressiveArray], should_stop: Callable[[], bool] = lambda: False
              ) -> Generator[PredictProgress, None, int]:
    """Compute the pending chunks of ``arrays`` (the first array's first, each newest
    first), yielding `PredictProgress` (chunks done out of done + pending) after each;
    stops when nothing is pending or ``should_stop()`` is true between chunks.
    Returns the number of chunks computed."""
    done = 0
    while not should_stop():
        array = next((a for a in arrays if a.pending), None)
        if array is None:
            break
        if array.compute_next() is not None:
            done += 1
        yield PredictProgress(done, done + sum(a.pending for a in arrays))
    return done


def _normalise_key(key: Any, shape: tuple) -> list:
    """Per axis, an int or an index array for basic indexing ``key`` of ``shape``."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1:]
    if len(key) > len(shape):
        raise IndexError(f"too many indices ({len(key)}) for an array of {len(shape)} dims")
    key = key + (slice(None),) * (len(shape) - len(key))
    picks = []
    for k, n in zip(key, shape):
        if isinstance(k, slice):
            if k.step is not None and k.step < 1:
                raise IndexError("a ProgressiveArray takes slices with a positive step only")
            picks.append(np.arange(n)[k])
        elif isinstance(k, (int, np.integer)):
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of bounds for an axis of size {n}")
            picks.append(int(k) % n)
        else:
            raise TypeError(f"a ProgressiveArray takes integers and slices, not {type(k).__name__}")
    return picks


def _as_slice(idx: np.ndarray) -> slice:
    """The slice of evenly spaced, increasing ``idx`` (what positive-step slices give)."""
    step = int(idx[1] - idx[0]) if len(idx) > 1 else 1
    return slice(int(idx[0]), int(idx[-1]) + 1, step)
