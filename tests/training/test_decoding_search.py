"""Calibration on held-out blocks, cross-validated over them; never silently on training pixels."""

import numpy as np
import pytest

from napari_unet import UNetConfig, UNetModel
from napari_unet.model.summary import ModelSummary
from napari_unet.training.calibration import calibration_warning
from napari_unet.model.decoding import Decoding
from napari_unet.training.decoding_search import MIN_OBJECTS, PRIOR, _choose, _folds, calibrate


def _halved_disks(bands, per_block=2, radius=12, held=None):
    """One plane of blocks (40 x 40 per disk, 8 px apart), each disk cut into a left and a
    right object by a 2 px seam. Block ``i``'s interior probability is ``bands[i] =
    (seam, core)``: only a seed threshold between the two splits the halves. The first
    ``held`` blocks (default: all) are the held-out region.
    Returns ``(probs (H, W, 3), truth, region)``."""
    side, gap = 2 * radius + 16, 8
    h, w = side + 2 * gap, len(bands) * per_block * (side + gap) + gap
    probs = np.zeros((h, w, 3), np.float32)
    probs[..., 0] = 1.0
    truth, region = np.zeros((h, w), np.int32), np.zeros((h, w), bool)
    yy, xx = np.mgrid[:h, :w]
    n = 0
    for i, (seam, core) in enumerate(bands):
        x0 = gap + i * per_block * (side + gap)
        if held is None or i < held:
            region[gap:gap + side, x0:x0 + per_block * (side + gap) - gap] = True
        for k in range(per_block):
            cy, cx = gap + side // 2, x0 + k * (side + gap) + side // 2
            disk = np.hypot(yy - cy, xx - cx) <= radius
            seam_px = disk & (np.abs(xx - cx + 0.5) <= 1)
            probs[disk] = [0.0, core, 1 - core]
            probs[seam_px] = [0.0, seam, 1 - seam]
            truth[disk & (xx < cx)], truth[disk & (xx >= cx)] = n + 1, n + 2
            n += 2
    return probs, truth, region


def _model():
    return UNetModel.new(UNetConfig(depth=1, start_neurons=2, n_classes=3), target="boundary")


def test_blocks_are_dealt_into_balanced_folds():
    region = np.zeros((10, 60), bool)
    for x0 in range(0, 60, 10):  # six separate 8-px blocks
        region[1:9, x0 + 1:x0 + 9] = True
    (folds,) = _folds([region], n_folds=4)
    assert set(np.unique(folds)) == {0, 1, 2, 3, 4}
    assert np.array_equal(folds > 0, region)
    for x0 in range(0, 60, 10):  # a block lies in one fold
        assert len(np.unique(folds[1:9, x0 + 1:x0 + 9])) == 1
    (single,) = _folds([region], n_folds=10)
    assert len(np.unique(single[single > 0])) == 6


def test_values_that_carry_over_to_unseen_blocks_are_kept():
    probs, truth, region = _halved_disks([(0.65, 0.75)] * 4)
    assert len(np.unique(truth[region])) - 1 >= MIN_OBJECTS
    result = calibrate(_model(), [probs], [truth], [region])
    assert result.measured_on == result.chosen_on == "validation" and result.folds == 4
    assert result.decoding.seed_threshold == 0.7
    assert result.score == 1.0 and result.cv_score == 1.0 and result.default_score < 1.0
    record = result.to_dict()
    assert record["cv_score"] == 1.0 and record["folds"] == 4


def test_values_that_fit_only_the_blocks_they_were_chosen_on_give_way_to_the_prior():
    """Each block splits its disks at a different seed threshold: any choice fits one block,
    and chosen without a block it never fits that block, so cross-validation rejects the
    held-out choice although it scores better on all blocks together; the prior (seed 0.95,
    which splits the last block) is kept."""
    bands = [(0.55, 0.65), (0.65, 0.75), (0.75, 0.85), (0.85, 0.97)]
    probs, truth, region = _halved_disks(bands)
    result = calibrate(_model(), [probs], [truth], [region])
    assert result.measured_on == "validation" and result.folds == 4
    assert result.cv_score <= result.default_score < result.score
    assert result.chosen_on == "prior" and result.decoding == Decoding(*PRIOR[:3], *PRIOR[3])


def test_values_chosen_on_the_training_pixels_win_when_they_fit_the_held_out_blocks_better():
    """The held-out blocks disagree (cross-validated, their own choice fits no unseen fold),
    the training pixels (blocks 5-6) agree with two of them: their choice is kept, scored on
    the held-out blocks only."""
    bands = [(0.55, 0.65), (0.65, 0.75), (0.65, 0.75), (0.85, 0.92)] + [(0.65, 0.75)] * 2
    probs, truth, region = _halved_disks(bands, held=4)
    result = calibrate(_model(), [probs], [truth], [region])
    assert result.chosen_on == "training" and result.measured_on == "validation"
    assert result.decoding.seed_threshold == 0.7
    assert result.cv_score <= result.default_score < result.score < 1.0
    assert result.objects == 16  # the held-out ones
    unannotated = calibrate(_model(), [probs], [truth], [region], [region])  # no training pixels
    assert unannotated.chosen_on == "prior"


def test_too_few_held_out_objects_calibrate_on_training_pixels_and_say_so():
    probs, truth, region = _halved_disks([(0.65, 0.75)], per_block=2)  # 4 held-out objects
    result = calibrate(_model(), [probs], [truth], [region])
    assert result.measured_on == "annotated" and result.cv_score is None and result.folds == 0
    info = {"calibration": result.to_dict()}
    warning = calibration_warning(info)
    assert "training pixels" in warning and f"fewer than {MIN_OBJECTS}" in warning
    assert calibration_warning({"calibration": {**result.to_dict(),
                                                "measured_on": "validation"}}) == ""


@pytest.mark.parametrize("measured_on", ["validation", "annotated"])
def test_the_summary_shows_the_cross_validated_score_and_the_warning(measured_on):
    probs, truth, region = _halved_disks([(0.65, 0.75)] * 4)
    result = calibrate(_model(), [probs], [truth],
                       [region] if measured_on == "validation" else None)
    info = {"calibration": result.to_dict(), "monitor": "val_iou", "best_epoch": 1,
            "epochs_run": 1}
    info["calibration_warning"] = calibration_warning(info)
    model = _model()
    model.update(info=info, decoding=result.decoding, history={"val_iou": [0.9]})
    summary = model.summary
    assert isinstance(summary, ModelSummary)
    if measured_on == "validation":
        assert "1.000 cross-validated over 4 folds of blocks" in summary.report()
        assert summary.warning == ""
    else:
        assert "cross-validated" not in summary.report()
        assert "training pixels" in summary.warning


def test_the_prior_gives_way_only_to_a_gain_beyond_the_noise_of_the_held_out_objects():
    prior, other = (0.90, 0.70), (0.95, 0.72)
    candidates = {"prior": (prior, PRIOR), "validation": (other, PRIOR)}
    assert _choose(candidates, objects=20) == "prior"  # 0.05 < se 0.067 over 20 objects
    assert _choose(candidates, objects=400) == "validation"  # se 0.015
    same = {"prior": ((1.0, 0.6), PRIOR), "training": ((1.0, 0.9), PRIOR)}
    assert _choose(same, objects=20) == "training"  # outlines fit better at the same AP@0.5


def test_a_one_image_training_with_few_held_out_objects_says_where_it_calibrated(nuclei):
    """One small image: the held-out blocks hold fewer than MIN_OBJECTS nuclei, so the values
    come from the training pixels, and training says so (warning, record, report)."""
    from napari_unet import train

    from ..helpers import TINY

    image, labels = nuclei
    with pytest.warns(RuntimeWarning, match="chosen on the training pixels"):
        model = train(image, labels, TINY, patch_size=32, batch_size=2, epochs=1,
                      steps_per_epoch=2, seed=0).model
    record = model.info["calibration"]
    assert record["measured_on"] == "annotated" and record["objects"] >= 1
    assert "training pixels" in model.info["calibration_warning"]
