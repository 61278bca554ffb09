"""Choose a `Decoding` on held-out pixels, and say how well the choice carries over.

`calibrate` takes a network's probabilities of annotated planes (or of stacks of them,
for objects linked in 3D) and picks the foreground threshold, the seed threshold and how
seeds are split (boundary models: not at all, or where they narrow to a neck) and the
minimum object size that score best on the held-out validation blocks: instance AP@0.5
for boundary models (objects cut by a block's edge are cut the same way in the truth,
so they still match), foreground IoU for foreground models. A region of a hundred
objects often gives several settings a perfect AP@0.5, so ties go to the best mean of
AP@0.5, 0.75 and 0.9 (objects whose outlines fit). Values are searched on small grids,
the seed settings and the threshold in turn, twice (they interact); the old defaults
(0.5, 0.5, 0, no split) are scored for the record.

One annotated image holds out only a few dozen objects, and values chosen on so few fit
their noise. So candidates are compared on blocks that did not choose them: `PRIOR`
(confident seeds, 0.95, split at necks under 0.7 of their width: on the hard benchmark
within 0.01-0.02 of the best values of every trained network), the values chosen on
the held-out blocks (cross-validated: the blocks are dealt into up to `CV_FOLDS` folds,
the search is repeated without each fold and scored on it), the values chosen on the
training pixels (scored on the held-out blocks; a network is more sure of the pixels it
learnt, but there are many more of them). The prior is kept unless another beats it by
more than twice the standard error of its score over the held-out objects (`_choose`), and the record says which was kept (``chosen_on``). With fewer than
`MIN_OBJECTS` held-out objects, values chosen on all annotated pixels compete with the
prior there, and the result says so (``measured_on="annotated"``: its scores are
optimistic).

Nothing here runs a network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy import ndimage as ndi

from ..labels.metrics import average_precision, match_counts_at
from ..model.decoding import Decoding

__all__ = ["Calibration", "calibrate", "CV_FOLDS", "MIN_OBJECTS"]

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
SEED_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
SIZE_FRACTIONS = (0.0, 0.05, 0.1, 0.2, 0.35)  # of the median object area
NECK_RATIOS = (0.5, 0.7, 0.8)  # seeds split at necks under this share of their width
TIE_BREAK_IOUS = (0.5, 0.75, 0.9)  # the first is the score; the mean of all breaks ties
MIN_OBJECTS = 15  # fewer held-out objects than this: calibrate on all annotated pixels
CV_FOLDS = 4  # the held-out blocks are dealt into at most this many folds
NO_SPLIT = (0, 0.0)  # (split distance, neck ratio)
DEFAULTS = (0.5, 0.5, 0, NO_SPLIT)  # threshold, seed threshold, min size, split
PRIOR = (0.5, 0.95, 0, (0, 0.7))  # confident seeds split at necks: robust across trainings
MARGIN_SE = 2.0  # another candidate must beat the prior by this many standard errors
TRAINING_PIXELS = 1_000_000  # at most this many training pixels choose candidate values (time)


@dataclass(frozen=True)
class Calibration:
    """The chosen `Decoding` and what it scored: ``metric`` (``"ap@0.5"`` or
    ``"foreground_iou"``) measured on ``measured_on`` (the held-out ``"validation"``
    blocks or, when too few objects were held out, all ``"annotated"`` pixels, holding
    ``objects`` objects) with these values (``score``) and with the defaults
    (``default_score``). ``chosen_on`` says where the values come from: the ``"prior"``
    (`PRIOR`), chosen on the ``"validation"`` blocks, on the
    ``"training"`` pixels (then ``score`` is measured on blocks the choice never saw), or
    on all ``"annotated"`` pixels; ``candidates`` pairs each candidate compared with its
    honest AP@0.5. ``cv_score`` is the score of values chosen on the held-out
    blocks without each of ``folds`` folds of blocks, on that fold (None when not measured)."""

    decoding: Decoding
    metric: str
    score: float
    default_score: float
    measured_on: str
    objects: int
    cv_score: float | None = None
    folds: int = 0
    chosen_on: str = ""
    candidates: tuple = ()

    def to_dict(self) -> dict[str, Any]:
        """The record a model keeps in ``info["calibration"]``: the values and the scores."""
        return {**self.decoding.to_dict(), "metric": self.metric, "score": self.score,
                "default_score": self.default_score, "measured_on": self.measured_on,
                "objects": self.objects, "cv_score": self.cv_score, "folds": self.folds,
                "chosen_on": self.chosen_on or self.measured_on,
                "candidates": dict(self.candidates)}


def calibrate(unet: Any, probs: Sequence[np.ndarray], truths: Sequence[np.ndarray],
              regions: Sequence[np.ndarray] | None,
              annotated: Sequence[np.ndarray] | None = None,
              sampling: Any = None) -> Calibration | None:
    """Best label settings for ``unet`` (a `UNetModel`) on planes it predicted as ``probs``.

    ``probs`` are (H, W) or (H, W, K) planes, or (Z, H, W, K) volumes decoded in 3D;
    ``truths`` are their labels (instance ids, or a 0/1 mask for a foreground
    model); ``regions`` are boolean masks of the held-out validation pixels
    (None, or holding fewer than `MIN_OBJECTS` objects: all annotated pixels count);
    ``annotated`` masks the pixels that have labels (None: all); ``sampling`` is the
    relative pixel size per axis of the planes or volumes (one tuple for all, or one per
    item of ``probs``; None: 1, see `napari_unet.labels.options.relative_sampling`), so
    seeds split at necks as they will be when the model labels images of that spacing.
    Returns None for models whose labels need no settings (``"classes"``).
    """
    if unet.target == "classes":
        return None
    annotated = ([np.ones(t.shape, bool) for t in truths] if annotated is None
                 else [np.asarray(a, bool) for a in annotated])
    samplings = (list(sampling) if isinstance(sampling, list)
                 else [sampling] * len(probs))
    if len(samplings) != len(probs):
        raise ValueError(f"sampling must be one tuple for all, or a list with one per item of "
                         f"probs ({len(probs)}); got {len(samplings)}.")
    if regions is not None and _objects(truths, regions) >= MIN_OBJECTS:
        if unet.target == "boundary":
            return _calibrate_held_out(probs, truths, regions, annotated, samplings)
        measured_on = "validation"
    else:
        regions, measured_on = annotated, "annotated"
    probs, truths, regions, kept = _crop_to_regions(probs, truths, regions)
    truths = [np.where(r, t, 0) for t, r in zip(truths, regions)]
    if unet.target == "boundary":
        counts = _fold_counts(probs, truths, [r.astype(np.int32) for r in regions],
                              [samplings[i] for i in kept])
        values = _search(counts, (0,), *_size_and_split_grids(truths))
        objects = _objects(truths, regions)
        candidates = {"prior": (_scores(counts(*PRIOR), (0,)), PRIOR),
                      "annotated": (_scores(counts(*values), (0,)), values)}
        chosen = _choose(candidates, objects)
        return _instance_result(candidates[chosen][1], candidates[chosen][0],
                                _scores(counts(*DEFAULTS), (0,)), "annotated", objects,
                                chosen_on=chosen, candidates=candidates)
    return _calibrate_foreground(probs, truths, regions, measured_on)


def _crop_to_regions(probs, truths, regions, margin: int = 32):
    """Only the planes that hold region pixels, each cut to the box around them plus
    ``margin`` px of context (decoding near the region then sees what a whole plane
    would), so calibration decodes little more than the held-out blocks. Returns the cut
    ``(probs, truths, regions, indices of the planes kept)``."""
    out = ([], [], [], [])
    for i, (p, t, r) in enumerate(zip(probs, truths, regions)):
        if not r.any():
            continue
        box = tuple(slice(max(0, int(ix.min()) - margin), int(ix.max()) + 1 + margin)
                    for ix in np.nonzero(r))
        for kept, a in zip(out, (p, t, r)):
            kept.append(a[box])
        out[3].append(i)
    return out


def _objects(truths: Sequence[np.ndarray], regions: Sequence[np.ndarray]) -> int:
    return sum(len(np.unique(t[r & (t > 0)])) for t, r in zip(truths, regions))


def _folds(regions: Sequence[np.ndarray], n_folds: int = CV_FOLDS) -> list[np.ndarray]:
    """Int32 maps, one per region: 0 outside it, else the fold (1..n) of the connected
    block the pixel lies in. Blocks are dealt largest first to the fold with the fewest
    pixels so far, so folds hold about the same share of the region."""
    blocks = [ndi.label(r)[0] for r in regions]
    sizes = [(int(n), i, b) for i, lab in enumerate(blocks)
             for b, n in enumerate(np.bincount(lab.ravel())) if b > 0]
    n_folds = max(1, min(n_folds, len(sizes)))
    load, fold_of = np.zeros(n_folds, np.int64), {}
    for n, i, b in sorted(sizes, key=lambda s: -s[0]):
        fold = int(np.argmin(load))
        fold_of[i, b], load[fold] = fold + 1, load[fold] + n
    out = []
    for i, lab in enumerate(blocks):
        lut = np.zeros(int(lab.max()) + 1, np.int32)
        for b in range(1, len(lut)):
            lut[b] = fold_of[i, b]
        out.append(lut[lab])
    return out


def _calibrate_foreground(probs, truths, regions, measured_on) -> Calibration:
    def iou(threshold: float) -> float:
        both = union = 0
        for p, t, r in zip(probs, truths, regions):
            pred, true = (p > threshold) & r, t > 0
            both += np.count_nonzero(pred & true)
            union += np.count_nonzero(pred | true)
        return both / union if union else 1.0

    scores = {th: iou(th) for th in sorted(set(THRESHOLDS) | {0.2, 0.8})}
    best = max(scores, key=lambda th: (scores[th], -abs(th - 0.5)))
    return Calibration(Decoding(best), "foreground_iou", round(scores[best], 4),
                       round(scores[0.5], 4), measured_on, _objects(truths, regions))


def _calibrate_held_out(probs, truths, regions, annotated, samplings) -> Calibration:
    """A boundary model's values, chosen where they carry over best to blocks that did not
    choose them: `PRIOR`, values chosen on the held-out blocks (scored by
    cross-validation over folds of them) or on the training pixels (scored on the
    held-out blocks); the old defaults are only scored, for the record."""
    held_p, held_t, held_r, kept = _crop_to_regions(probs, truths, regions)
    held_t = [np.where(r, t, 0) for t, r in zip(held_t, held_r)]
    folds = _folds(held_r)
    held = _fold_counts(held_p, held_t, folds, [samplings[i] for i in kept])
    every = tuple(range(max(int(f.max()) for f in folds)))
    train_p, train_t, train_r, train_s = _training_pixels(probs, truths, regions, annotated,
                                                          samplings)
    sizes, splits = _size_and_split_grids(held_t + train_t)
    by_blocks = _search(held, every, sizes, splits)
    candidates = {"prior": (_scores(held(*PRIOR), every), PRIOR)}
    cv = None
    if len(every) > 1:
        unseen = sum(held(*_search(held, tuple(set(every) - {f}), sizes, splits))[f]
                     for f in every)
        cv = _scores(unseen[None], (0,))
        candidates["validation"] = (cv, by_blocks)
    if train_p:
        train = _fold_counts(train_p, train_t, [r.astype(np.int32) for r in train_r], train_s)
        by_training = _search(train, (0,), sizes, splits)
        candidates["training"] = (_scores(held(*by_training), every), by_training)
    objects = _objects(held_t, held_r)
    chosen = _choose(candidates, objects)
    values = candidates[chosen][1]
    return _instance_result(values, _scores(held(*values), every),
                            _scores(held(*DEFAULTS), every), "validation", objects,
                            None if cv is None else round(cv[0], 4), len(every), chosen,
                            candidates)


def _choose(candidates: dict[str, tuple], objects: int) -> str:
    """The candidate to keep: `PRIOR` (``"prior"``) unless another's honest AP@0.5 (or, at
    no lower AP@0.5, its mean AP at IoU 0.5-0.9) beats the prior's by more than the
    standard error of the prior's AP@0.5 over ``objects`` objects `MARGIN_SE` times, so a
    few dozen objects do not replace robust values by their noise (the best of several
    candidates on a small sample is flattered by it); then the best, ties to the first
    named."""
    ap, mean = candidates["prior"][0]
    margin = MARGIN_SE * np.sqrt(max(ap * (1 - ap), 0.0) / max(objects, 1))
    better = [k for k, (score, _) in candidates.items()
              if score[0] > ap + margin or (score[0] >= ap and score[1] > mean + margin)]
    if not better:
        return "prior"
    order = list(candidates)
    return max(better, key=lambda k: (candidates[k][0], -order.index(k)))


def _instance_result(values, best, default, measured_on, objects, cv_score=None, folds=0,
                     chosen_on="", candidates=None) -> Calibration:
    threshold, seed, min_size, split = values
    scores = tuple((k, round(v[0][0], 4)) for k, v in (candidates or {}).items())
    return Calibration(Decoding(threshold, seed, min_size, *split), "ap@0.5",
                       round(best[0], 4), round(default[0], 4), measured_on, objects,
                       cv_score, folds if folds > 1 else 0, chosen_on or measured_on, scores)


def _training_pixels(probs, truths, regions, annotated, samplings,
                     limit: int = TRAINING_PIXELS):
    """``(probs, truths, masks, samplings)`` of the annotated pixels outside ``regions``
    (truths zero elsewhere), cut to their boxes, of the leading planes within ``limit``
    pixels."""
    masks = [a & ~r for a, r in zip(annotated, regions)]
    out = ([], [], [], [])
    total = 0
    for p, t, m, i in zip(*_crop_to_regions(probs, truths, masks, margin=0)):
        if out[0] and total + m.size > limit:
            break
        for kept, x in zip(out, (p, np.where(m, t, 0), m, samplings[i])):
            kept.append(x)
        total += m.size
    return out


def _search(counts: Callable, use: tuple[int, ...], sizes: list[int], splits: list[tuple]
            ) -> tuple[float, float, int, tuple[int, float]]:
    """``(threshold, seed, min_size, split)`` scoring best on the folds ``use``: seed
    threshold and split (``(distance, neck ratio)``), then the foreground threshold,
    twice; then the size."""
    def score(*values) -> tuple[float, float]:
        return _scores(counts(*values), use)

    start, threshold = sizes[len(sizes) // 2], 0.5
    for _ in range(2):
        grid = {(seed, split): score(threshold, seed, start, split)
                for seed in SEED_THRESHOLDS for split in splits}
        seed, split = max(grid, key=lambda k: (grid[k], -abs(k[0] - 0.5), k[1] == NO_SPLIT))
        by_threshold = {th: score(th, seed, start, split) for th in THRESHOLDS}
        threshold = max(by_threshold, key=lambda th: (by_threshold[th], -abs(th - 0.5)))
    by_size = {size: score(threshold, seed, size, split) for size in sizes}
    return threshold, seed, max(by_size, key=lambda size: (by_size[size], -size)), split


def _scores(counts: np.ndarray, use: tuple[int, ...]) -> tuple[float, float]:
    """``(AP@0.5, mean AP at TIE_BREAK_IOUS)`` of the (folds, IoUs, 3) match ``counts``
    pooled over the folds ``use``."""
    aps = [average_precision(*row) for row in counts[list(use)].sum(axis=0).tolist()]
    return aps[0], float(np.mean(aps))


def _fold_counts(probs, truths, folds, samplings) -> Callable[..., np.ndarray]:
    """``counts(threshold, seed, min_size, (split distance, neck ratio))``: (folds, IoUs, 3)
    match counts of the ``probs`` decoded with their ``samplings`` against ``truths``
    inside each fold, pooled over planes (memoised)."""
    from ..labels.decode import decode_boundaries

    n_folds = max(int(f.max()) for f in folds)
    seen: dict[tuple, np.ndarray] = {}

    def counts(threshold: float, seed: float, min_size: int, split: tuple) -> np.ndarray:
        key = (threshold, seed, min_size, split)
        if key not in seen:
            total = np.zeros((n_folds, len(TIE_BREAK_IOUS), 3), np.int64)
            decoding = Decoding(threshold, seed, min_size, *split)
            for p, t, fold, sampling in zip(probs, truths, folds, samplings):
                labels = decode_boundaries(p, decoding, sampling)
                for f in np.unique(fold[fold > 0]):
                    inside = fold == f
                    total[f - 1] += match_counts_at(np.where(inside, labels, 0),
                                                    np.where(inside, t, 0), TIE_BREAK_IOUS)
            seen[key] = total
        return seen[key]

    return counts


def _size_and_split_grids(truths) -> tuple[list[int], list[tuple[int, float]]]:
    """Minimum sizes (`SIZE_FRACTIONS` of the median object area, or volume for 3D truths,
    in pixels) and seed splits ``(distance, neck ratio)`` to try: none, or at necks under
    `NECK_RATIOS` of the width. Splits at distance-transform peaks a fixed distance apart
    are not tried: they cut large or elongated nuclei by straight seams (they stay a
    choice of the user's, ``split_distance``)."""
    areas = np.concatenate([np.bincount(t.ravel())[1:] for t in truths])
    median = float(np.median(areas[areas > 0])) if np.any(areas > 0) else 0.0
    sizes = sorted({int(round(f * median)) for f in SIZE_FRACTIONS})
    return sizes, [NO_SPLIT] + [(0, r) for r in NECK_RATIOS]
