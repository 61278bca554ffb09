"""The Run widget's Evaluate section: score a U-Net labels layer against a ground-truth
labels layer with `napari_unet.metrics.evaluate` (numpy only, no ML here)."""

from __future__ import annotations

from typing import Any

import numpy as np


def evaluate_job(labels: Any, truth: Any) -> dict:
    """Worker body: `napari_unet.metrics.evaluate` of two in-memory label arrays."""
    from ..metrics import evaluate

    return evaluate(np.asarray(labels), np.asarray(truth))


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
    """The scores a user compares, in one paragraph."""
    return (f"{name}: AP@0.5 {metrics['ap@0.5']:.3f}, AP@0.75 {metrics['ap@0.75']:.3f}, "
            f"mean AP {metrics['mean_ap']:.3f}; at IoU 0.5 precision "
            f"{metrics['precision@0.5']:.3f}, recall {metrics['recall@0.5']:.3f}, F1 "
            f"{metrics['f1@0.5']:.3f}; foreground IoU {metrics['foreground_iou']:.3f}, Dice "
            f"{metrics['dice']:.3f}; {metrics['n_pred']} objects found, {metrics['n_true']} true")
