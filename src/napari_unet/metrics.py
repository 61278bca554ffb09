"""Segmentation quality measures on label images (numpy only)."""

from __future__ import annotations

import numpy as np


def foreground_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of the foreground (label > 0) of two label images."""
    p, t = np.asarray(pred) > 0, np.asarray(truth) > 0
    if p.shape != t.shape:
        raise ValueError(f"Prediction shape {p.shape} differs from ground truth {t.shape}.")
    union = np.count_nonzero(p | t)
    return 1.0 if union == 0 else float(np.count_nonzero(p & t) / union)


def matched_objects(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float]:
    """Object-level precision, recall and F1 (a pair matches when its IoU > ``iou_threshold``)."""
    pred, truth = np.asarray(pred).astype(np.int64), np.asarray(truth).astype(np.int64)
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
