"""Segmentation quality measures on label images (numpy only)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def label_pair(pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(pred, truth)`` as int64 label images of one shape, or ``ValueError`` saying what is wrong."""
    from ..common.arrays import check_labels

    truth = np.asarray(truth)
    truth = check_labels(truth, truth.shape, "ground-truth labels")
    pred = check_labels(pred, truth.shape, "predicted labels")
    return pred.astype(np.int64), truth.astype(np.int64)


def foreground_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of the foreground (label > 0) of two label images."""
    p, t = label_pair(pred, truth)
    return float(_iou_and_dice(p > 0, t > 0)[0])


def matched_objects(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float]:
    """Object-level precision, recall and F1, objects matched one to one at IoU >=
    ``iou_threshold`` as in `evaluate`."""
    tp, n_pred, n_true = match_counts(pred, truth, iou_threshold)
    if n_pred == 0 or n_true == 0:
        return {"precision": float(n_pred == n_true), "recall": float(n_pred == n_true),
                "f1": float(n_pred == n_true), "n_pred": n_pred, "n_true": n_true}
    precision, recall = tp / n_pred, tp / n_true
    f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "n_pred": n_pred, "n_true": n_true}


THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


def evaluate(labels: Any, truth: Any, thresholds: tuple[float, ...] = THRESHOLDS) -> dict[str, float]:
    """Every quality measure of instance ``labels`` against instance ``truth`` (same shape).

    Returns a flat dict (the same keys in `napari-unet evaluate` and the demo's
    ``metrics.json``): ``foreground_iou`` and ``dice`` of the foreground; ``n_pred``
    and ``n_true`` objects; and for each IoU threshold t in ``thresholds``
    ``precision@t``, ``recall@t``, ``f1@t`` and ``ap@t``, the average precision of the
    Data Science Bowl 2018 and the StarDist paper, TP / (TP + FP + FN); and ``mean_ap``
    over the thresholds. Objects are matched one to one, maximising the total IoU
    over the pairs with IoU >= t (Hungarian matching).
    """
    pred, true = label_pair(labels, truth)
    iou, dice = _iou_and_dice(pred > 0, true > 0)
    out: dict[str, float] = {"foreground_iou": iou, "dice": dice}
    pairs, n_true, n_pred = _iou_pairs(pred, true)
    out.update(n_pred=n_pred, n_true=n_true)
    aps = []
    for threshold in thresholds:
        tp = _matches(pairs, threshold)
        fp, fn = n_pred - tp, n_true - tp
        key = f"{threshold:g}"
        out[f"precision@{key}"] = tp / n_pred if n_pred else float(n_true == 0)
        out[f"recall@{key}"] = tp / n_true if n_true else float(n_pred == 0)
        out[f"f1@{key}"] = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0
        out[f"ap@{key}"] = average_precision(tp, n_pred, n_true)
        aps.append(out[f"ap@{key}"])
    out["mean_ap"] = float(np.mean(aps)) if aps else float("nan")
    return {k: float(v) if not isinstance(v, int) else v for k, v in out.items()}


def evaluate_classes(classes: Any, truth: Any, class_names: list[str] | None = None
                     ) -> dict[str, float]:
    """Per-class scores of a class map against a true class map (0 = background): for each
    class c present in either, ``"<name> iou"``, ``"<name> dice"`` (pixels of class c) and
    ``"<name> ap@0.5"`` (connected objects of class c, matched one to one as in
    `evaluate`); ``<name>`` is ``class_names[c]`` or ``"class c"``. Also ``mean_class_iou``."""
    from scipy import ndimage as ndi

    pred, true = label_pair(classes, truth)
    out: dict[str, float] = {}
    ious = []
    for c in sorted((set(np.unique(pred)) | set(np.unique(true))) - {0}):
        name = class_names[c] if class_names and c < len(class_names) else f"class {c}"
        p, t = pred == c, true == c
        out[f"{name} iou"], out[f"{name} dice"] = _iou_and_dice(p, t)
        out[f"{name} ap@0.5"] = average_precision(*match_counts(ndi.label(p)[0],
                                                                 ndi.label(t)[0], 0.5))
        ious.append(out[f"{name} iou"])
    out["mean_class_iou"] = float(np.mean(ious)) if ious else 1.0
    return {k: float(v) for k, v in out.items()}


def _iou_and_dice(p: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """IoU and Dice of two boolean masks (both 1.0 when both are empty)."""
    both, total = np.count_nonzero(p & t), np.count_nonzero(p) + np.count_nonzero(t)
    union = total - both
    return (both / union if union else 1.0), (2 * both / total if total else 1.0)


def average_precision(tp: int, n_pred: int, n_true: int) -> float:
    """TP / (TP + FP + FN) from `match_counts` (summed over images for a pooled score);
    1.0 when there is nothing to find and nothing was found."""
    misses = n_pred + n_true - tp
    return tp / misses if misses else 1.0


def match_counts(labels: Any, truth: Any, threshold: float = 0.5) -> tuple[int, int, int]:
    """``(true positives, predicted objects, true objects)`` at IoU ``threshold`` with the
    one-to-one matching of `evaluate`; counts of several images add up to pooled scores."""
    return match_counts_at(labels, truth, (threshold,))[0]


def match_counts_at(labels: Any, truth: Any, thresholds: Sequence[float]
                    ) -> list[tuple[int, int, int]]:
    """`match_counts` at each IoU threshold of ``thresholds``, measuring the overlaps once."""
    pred, true = label_pair(labels, truth)
    pairs, n_true, n_pred = _iou_pairs(pred, true)
    return [(_matches(pairs, t), n_pred, n_true) for t in thresholds]


def _iou_pairs(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(true id, predicted id, IoU) of every overlapping pair of objects, as rows of a
    (K, 3) float array, and the numbers of true and predicted objects."""
    t, p = truth.ravel(), pred.ravel()
    t_area, p_area = np.bincount(t), np.bincount(p)
    n_true, n_pred = int(np.count_nonzero(t_area[1:])), int(np.count_nonzero(p_area[1:]))
    overlap = (t > 0) & (p > 0)
    keys, inter = np.unique((t[overlap] << 32) | p[overlap], return_counts=True)
    t_ids, p_ids = keys >> 32, keys & 0xFFFFFFFF
    iou = inter / (t_area[t_ids] + p_area[p_ids] - inter)
    return np.stack([t_ids, p_ids, iou], axis=1) if len(keys) else np.zeros((0, 3)), n_true, n_pred


def _matches(pairs: np.ndarray, threshold: float) -> int:
    """True positives: pairs of a one-to-one matching with the largest total IoU among
    the pairs whose IoU is >= ``threshold`` (Hungarian matching where objects compete)."""
    chosen = pairs[pairs[:, 2] >= threshold]
    if len(chosen) == 0:
        return 0
    t_ids, t_index = np.unique(chosen[:, 0], return_inverse=True)
    p_ids, p_index = np.unique(chosen[:, 1], return_inverse=True)
    if len(t_ids) == len(p_ids) == len(chosen):  # no object in two pairs: all match
        return len(chosen)
    from scipy.optimize import linear_sum_assignment

    iou = np.zeros((len(t_ids), len(p_ids)))
    iou[t_index, p_index] = chosen[:, 2]
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return int(np.count_nonzero(iou[rows, cols] > 0))
