"""Segmentation measures against values computed by hand."""

import numpy as np
import pytest

from napari_unet.metrics import foreground_iou, matched_objects


def test_foreground_iou_by_hand():
    pred = np.array([[1, 1, 0, 0]])
    truth = np.array([[0, 2, 2, 0]])
    assert foreground_iou(pred, truth) == pytest.approx(1 / 3)
    assert foreground_iou(np.zeros((2, 2), int), np.zeros((2, 2), int)) == 1.0


def test_matched_objects_by_hand():
    truth = np.zeros((10, 10), int)
    truth[0:4, 0:4] = 1          # 16 px
    truth[6:10, 6:10] = 2        # 16 px
    pred = np.zeros((10, 10), int)
    pred[0:4, 0:3] = 5           # 12 px inside object 1: IoU 0.75, a match
    pred[6:8, 6:8] = 7           # 4 px inside object 2: IoU 0.25, no match
    pred[5, 0] = 9               # a false positive
    m = matched_objects(pred, truth)
    assert (m["n_pred"], m["n_true"]) == (3, 2)
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert matched_objects(pred, truth, iou_threshold=0.8)["f1"] == 0.0


def test_measures_refuse_mismatched_or_invalid_labels():
    with pytest.raises(ValueError, match="shape"):
        foreground_iou(np.zeros((2, 3), int), np.zeros((3, 2), int))
    with pytest.raises(ValueError, match="negative"):
        matched_objects(np.full((2, 2), -1), np.zeros((2, 2), int))
