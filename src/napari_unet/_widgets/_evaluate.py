"""The Run widget's Evaluate section: score a U-Net labels layer against a ground-truth
labels layer with `napari_unet.labels.metrics.evaluate` (numpy only, no ML here)."""

from __future__ import annotations

from typing import Any

import numpy as np


def evaluate_job(labels: Any, truth: Any, unit_ndim: int = 2) -> dict:
    """Worker body: `napari_unet.labels.metrics.evaluate` of two in-memory label arrays, objects
    matched within their own unit (see `per_unit`)."""
    from ..labels.metrics import evaluate

    return evaluate(*per_unit(np.asarray(labels), np.asarray(truth), unit_ndim))


def per_unit(labels: np.ndarray, truth: np.ndarray, unit_ndim: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` and ``truth`` (int64 copies) with the ids of each unit, the last
    ``unit_ndim`` axes (a plane, or a Z stack for objects linked in 3D), made distinct from
    those of every other unit. Objects are then matched within their own plane or stack
    only, as Run labelled them: a time-lapse's time points are not mixed, and a 3D truth
    is scored plane by plane against per-plane labels."""
    if labels.ndim <= unit_ndim:
        return labels, truth
    unit_shape = labels.shape[labels.ndim - unit_ndim:]
    out = []
    for data in (labels, truth):
        units = data.reshape((-1,) + unit_shape).astype(np.int64)
        tops = np.concatenate([[0], np.cumsum(units.reshape(len(units), -1).max(axis=1))[:-1]])
        out.append(np.where(units > 0, units + tops.reshape((-1,) + (1,) * unit_ndim), 0)
                   .reshape(data.shape))
    return out[0], out[1]


def evaluation_inputs(viewer: Any, image_layer: Any, truth_layer: Any) -> tuple[Any, Any, str]:
    """``(labels, truth, labels layer name)`` to score: the ``"<image> U-Net"`` layer of
    ``image_layer`` and ``truth_layer``'s data; ``ValueError`` saying what to do when one
    is missing, lazy, or of another shape."""
    if image_layer is None or truth_layer is None:
        raise ValueError("choose the image that was segmented and a ground-truth labels layer")
    name = f"{image_layer.name} U-Net"
    if name not in viewer.layers:
        raise ValueError(f"there is no {name!r} layer yet: press Run first")
    labels = viewer.layers[name].data
    if truth_layer.name == name:
        raise ValueError("choose a ground-truth layer other than the U-Net's own labels")
    for what, data in ((name, labels), (truth_layer.name, truth_layer.data)):
        if not isinstance(data, np.ndarray):  # dask, zarr, or a multiscale list
            raise ValueError(f"{what!r} is lazy or multiscale; evaluation needs labels in "
                             "memory (run on an in-memory image)")
    if labels.shape != truth_layer.data.shape:
        raise ValueError(f"{name!r} has shape {labels.shape} but {truth_layer.name!r} has "
                         f"{truth_layer.data.shape}; choose the ground truth of this image")
    return labels, truth_layer.data, name


def scores_text(metrics: dict, name: str) -> str:
    """The scores a user compares, in one paragraph (``name`` may say how they were pooled)."""
    return (f"{name}: AP@0.5 {metrics['ap@0.5']:.3f}, AP@0.75 {metrics['ap@0.75']:.3f}, "
            f"mean AP {metrics['mean_ap']:.3f}; at IoU 0.5 precision "
            f"{metrics['precision@0.5']:.3f}, recall {metrics['recall@0.5']:.3f}, F1 "
            f"{metrics['f1@0.5']:.3f}; foreground IoU {metrics['foreground_iou']:.3f}, Dice "
            f"{metrics['dice']:.3f}; {metrics['n_pred']} objects found, {metrics['n_true']} true")
