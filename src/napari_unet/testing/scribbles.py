"""Simulated scribbles: sparse annotations (0 = unpainted, 1 = background, 2.. = classes)
drawn from full ground truth the way a user paints them in the Train widget's scribble
mode, for tests, benchmarks and the documentation.

`simulate_scribbles` draws a line through some objects and a few background strokes
between them; `correction_strokes` adds a second round, painted on the mistakes where a
prediction is worst (`worst_block`); `most_uncertain_block` is where an uncertainty map
says to paint next.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["simulate_scribbles", "correction_strokes", "densest_block", "worst_block",
           "most_uncertain_block"]


def _line(p0: Sequence[float], p1: Sequence[float], shape: tuple[int, int]) -> tuple:
    """Pixel rows and columns of the straight segment p0 -> p1 (clipped to ``shape``)."""
    n = int(max(abs(p1[0] - p0[0]), abs(p1[1] - p0[1]))) + 1
    rows = np.clip(np.round(np.linspace(p0[0], p1[0], n)).astype(int), 0, shape[0] - 1)
    cols = np.clip(np.round(np.linspace(p0[1], p1[1], n)).astype(int), 0, shape[1] - 1)
    return rows, cols


def _object_strokes(ids: np.ndarray, objects: np.ndarray, rng: np.random.Generator,
                    margin: int) -> np.ndarray:
    """A stroke along the long axis of each object in ``objects``, kept ``margin`` px
    inside its outline (as a user paints the middle of a nucleus)."""
    from scipy import ndimage

    out = np.zeros(ids.shape, bool)
    for obj in objects:
        mask = ids == obj
        inner = ndimage.distance_transform_edt(mask) > margin
        if not inner.any():
            inner = mask
        rows, cols = np.nonzero(inner)
        centre = np.array([rows.mean(), cols.mean()])
        spread = np.cov(np.stack([rows, cols])) if rows.size > 2 else np.eye(2)
        axis = np.linalg.eigh(spread + 1e-6 * np.eye(2))[1][:, -1]
        reach = 2 * np.sqrt(max(np.linalg.eigvalsh(spread)[-1], 1.0))
        r, c = _line(centre - reach * axis, centre + reach * axis, ids.shape)
        out[r, c] = True
        out &= inner | ~mask
    return out & (ids > 0)


def _background_strokes(background: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random straight strokes across the image, kept only on ``background`` pixels."""
    h, w = background.shape
    out = np.zeros(background.shape, bool)
    for _ in range(n):
        p0 = rng.uniform((0, 0), (h, w))
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(0.2, 0.5) * min(h, w)
        p1 = p0 + length * np.array([np.sin(angle), np.cos(angle)])
        r, c = _line(p0, p1, (h, w))
        out[r, c] = True
    return out & background


def simulate_scribbles(labels: np.ndarray, coverage: float = 0.02, *, classes: Any = None,
                       margin: int = 2, seed: int = 0) -> np.ndarray:
    """Scribbles a user might paint on a YX image whose full labels are ``labels``.

    Parameters
    ----------
    labels : int ``(H, W)`` ground truth, 0 = background, > 0 = object ids.
    coverage : at most this share of the pixels is painted (0 < coverage <= 0.2).
    classes : optional int ``(H, W)`` class of each pixel (1..n); default: every
        object is class 1. Painted value = class + 1.
    margin : strokes stay this many px away from object outlines (users paint
        clearly inside or outside, not on the edge).
    seed : random seed.

    Returns uint8 ``(H, W)`` scribbles: 0 = unpainted, 1 = background, 2.. = classes;
    about half the painted pixels are object strokes, half background strokes.
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a YX array; got shape {labels.shape}.")
    if not 0 < float(coverage) <= 0.2:
        raise ValueError(f"coverage must be a share of the pixels in (0, 0.2]; got {coverage!r}.")
    rng = np.random.default_rng(seed)
    budget = int(coverage * labels.size)
    ids = [int(i) for i in rng.permutation(np.unique(labels[labels > 0]))]
    objects = np.zeros(labels.shape, bool)
    for k in range(len(ids)):
        more = objects | _object_strokes(labels, ids[k:k + 1], rng, margin)
        if more.sum() > budget // 2:
            break
        objects = more
    far = ndimage.distance_transform_edt(labels == 0) > margin
    background = np.zeros(labels.shape, bool)
    for _ in range(200):
        more = background | _background_strokes(far, 1, rng)
        if more.sum() > budget - objects.sum():
            break
        background = more
    out = np.zeros(labels.shape, np.uint8)
    out[background] = 1
    cls = np.where(labels > 0, 1, 0) if classes is None else np.asarray(classes)
    out[objects] = (cls[objects] + 1).astype(np.uint8)
    return out


def densest_block(score: np.ndarray, block: int = 64) -> tuple[slice, slice]:
    """The ``block`` x ``block`` window (on a half-block grid) of a YX ``score`` map with
    the largest sum; returns its (row, column) slices."""
    score = np.asarray(score, dtype=np.float64)
    h, w = score.shape
    step = max(1, block // 2)
    best, where = -np.inf, (slice(0, block), slice(0, block))
    for y0 in range(0, max(1, h - block + 1), step):
        for x0 in range(0, max(1, w - block + 1), step):
            total = float(score[y0:y0 + block, x0:x0 + block].sum())
            if total > best:
                best, where = total, (slice(y0, y0 + block), slice(x0, x0 + block))
    return where


def worst_block(truth: np.ndarray, prediction: np.ndarray, block: int = 64) -> tuple[slice, slice]:
    """The window (`densest_block`) where the binary ``prediction`` disagrees most with
    the binary ``truth``."""
    return densest_block((np.asarray(truth) > 0) != (np.asarray(prediction) > 0), block)


def most_uncertain_block(entropy: np.ndarray, block: int = 64) -> tuple[slice, slice]:
    """Where to paint next: the window (`densest_block`) of highest total uncertainty in
    a YX map such as `napari_unet.prediction.uncertainty.Uncertainty.entropy`."""
    return densest_block(entropy, block)


def correction_strokes(scribbles: np.ndarray, labels: np.ndarray, prediction: np.ndarray, *,
                       block: int = 64, coverage: float = 0.1, margin: int = 1,
                       seed: int = 1) -> np.ndarray:
    """A second round of painting, as a user corrects mistakes: inside the window where
    ``prediction`` is most wrong (`worst_block`), paint the wrongly predicted pixels more
    than ``margin`` px from a true outline (clear mistakes, not a blurred edge) with
    their true class (1 = background, 2 = object), at most ``coverage`` of the window,
    without painting over earlier strokes. Returns a new array (``scribbles`` is kept)."""
    from scipy import ndimage

    rows, cols = worst_block(labels, prediction, block)
    truth = np.asarray(labels)[rows, cols] > 0
    clear = np.maximum(ndimage.distance_transform_edt(truth),
                       ndimage.distance_transform_edt(~truth)) > margin
    wrong = ((truth != (np.asarray(prediction)[rows, cols] > 0)) & clear
             & (scribbles[rows, cols] == 0))
    where = np.flatnonzero(wrong)
    budget = int(coverage * wrong.size)
    if where.size > budget:
        where = np.random.default_rng(seed).choice(where, budget, replace=False)
    out = np.array(scribbles, copy=True)
    region = out[rows, cols]
    region.flat[where] = np.where(truth.flat[where], 2, 1)
    return out
