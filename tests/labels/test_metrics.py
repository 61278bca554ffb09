"""Segmentation measures against values computed by hand."""

import numpy as np
import pytest

from napari_unet.labels.metrics import foreground_iou, matched_objects


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


def test_every_measure_matches_at_iou_of_at_least_the_threshold():
    """One rule everywhere: a pair with IoU exactly 0.5 is a match for `matched_objects`,
    `match_counts` and `evaluate` alike."""
    from napari_unet.labels.metrics import evaluate, match_counts

    truth = np.zeros((4, 8), int)
    truth[:, :4] = 1
    pred = np.zeros((4, 8), int)
    pred[:, :2] = 1  # IoU 8 / 16 = 0.5
    assert match_counts(pred, truth, 0.5) == (1, 1, 1)
    assert evaluate(pred, truth)["f1@0.5"] == matched_objects(pred, truth)["f1"] == 1.0


def test_measures_refuse_mismatched_or_invalid_labels():
    with pytest.raises(ValueError, match="shape"):
        foreground_iou(np.zeros((2, 3), int), np.zeros((3, 2), int))
    with pytest.raises(ValueError, match="negative"):
        matched_objects(np.full((2, 2), -1), np.zeros((2, 2), int))


def test_evaluate_by_hand_on_a_merged_pair():
    """Two 4-px nuclei side by side, predicted as one 8-px object: each pair has IoU 0.5,
    so at 0.5 one is matched (TP 1, FP 0, FN 1) and above 0.5 none is."""
    from napari_unet.labels.metrics import evaluate

    truth = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    pred = np.array([[7, 7, 7, 7], [7, 7, 7, 7]])
    m = evaluate(pred, truth)
    assert m["n_true"] == 2 and m["n_pred"] == 1
    assert m["foreground_iou"] == 1.0 and m["dice"] == 1.0
    assert m["precision@0.5"] == 1.0 and m["recall@0.5"] == 0.5
    assert m["f1@0.5"] == pytest.approx(2 / 3) and m["ap@0.5"] == pytest.approx(0.5)
    assert m["ap@0.55"] == 0.0 and m["ap@0.9"] == 0.0
    assert m["mean_ap"] == pytest.approx(0.5 / 9)


def test_evaluate_matches_one_to_one_and_handles_empty_images():
    from napari_unet.labels.metrics import evaluate

    truth = np.zeros((6, 6), int)
    truth[:3, :3], truth[3:, 3:] = 1, 2
    pred = np.zeros((6, 6), int)
    pred[:3, :3], pred[3:, 3:], pred[0, 5] = 5, 9, 3  # two exact, one false positive
    m = evaluate(pred, truth)
    assert m["ap@0.9"] == pytest.approx(2 / 3) and m["precision@0.9"] == pytest.approx(2 / 3)
    assert m["recall@0.9"] == 1.0
    assert evaluate(truth, truth)["mean_ap"] == 1.0
    empty = np.zeros((4, 4), int)
    assert evaluate(empty, empty)["ap@0.5"] == 1.0 and evaluate(empty, empty)["dice"] == 1.0
    assert evaluate(empty, truth[:4, :4])["ap@0.5"] == 0.0
    with pytest.raises(ValueError):
        evaluate(np.zeros((2, 3), int), np.zeros((3, 2), int))


def test_per_class_scores_of_class_maps():
    from napari_unet.labels.metrics import evaluate_classes

    truth = np.zeros((10, 12), int)
    truth[1:4, 1:4], truth[6:9, 1:4], truth[1:5, 6:10] = 1, 1, 2
    pred = truth.copy()
    pred[6:9, 1:4] = 0  # one class-1 object missed
    pred[1:5, 6:8] = 2
    pred[1:5, 8:10] = 0  # half of the class-2 object
    scores = evaluate_classes(pred, truth, ["background", "nucleus", "membrane"])
    assert scores["nucleus iou"] == 0.5 and scores["nucleus ap@0.5"] == 0.5
    # half the membrane object: IoU 0.5, which matches at the 0.5 threshold as in evaluate
    assert scores["membrane iou"] == 0.5 and scores["membrane ap@0.5"] == 1.0
    assert np.isclose(scores["nucleus dice"], 2 * 9 / 27)
    assert scores["mean_class_iou"] == 0.5
