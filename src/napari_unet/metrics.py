"""Segmentation quality measures on label images (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np


def label_pair(pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(pred, truth)`` as int64 label images of one shape, or ``ValueError`` saying what is wrong."""
    from .arrays import check_labels

    truth = np.asarray(truth)
    truth = check_labels(truth, truth.shape, "ground-truth labels")
    pred = check_labels(pred, truth.shape, "predicted labels")
    return pred.astype(np.int64), truth.astype(np.int64)


def foreground_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of the foreground (label > 0) of two label images."""
    p, t = label_pair(pred, truth)
    p, t = p > 0, t > 0
    union = np.count_nonzero(p | t)
    return 1.0 if union == 0 else float(np.count_nonzero(p & t) / union)


def matched_objects(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float]:
    """Object-level precision, recall and F1 (a pair matches when its IoU > ``iou_threshold``)."""
    pred, truth = label_pair(pred, truth)
    n_pred, n_true = int(len(np.unique(pred)) - (pred == 0).any()), int(len(np.unique(truth)) - (truth == 0).any())
    if n_pred == 0 or n_true == 0:
        return {"precision": float(n_pred == n_true), "recall": float(n_pred == n_true),
                "f1": float(n_pred == n_true), "n_pred": n_pred, "n_true": n_true}
    pairs = (truth.ravel() << 32) | pred.ravel()
    keys, inter = np.unique(pairs[(truth.ravel() > 0) & (pred.ravel() > 0)], return_counts=True)
    t_ids, p_ids = keys >> 32, keys & 0xFFFFFFFF
    t_area = np.bincount(truth.ravel())
    p_area = np.bincount(pred.ravel())
    iou = inter / (t_area[t_ids] + p_area[p_ids] - inter)
    tp = int(np.count_nonzero(iou > iou_threshold))  # IoU > 0.5 makes matches unique
    precision, recall = tp / n_pred, tp / n_true
    f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "n_pred": n_pred, "n_true": n_true}
