"""`Decoding` and `ModelSummary`: the Keras-free record of a model, checked once, saved
once, shown once; `UNetModel` reads it."""

import pytest

from napari_unet.model.config import UNetConfig
from napari_unet.model.decoding import Decoding
from napari_unet.model.summary import ModelSummary


def test_decoding_values_are_checked_when_made():
    assert Decoding() == Decoding(0.5, 0.5, 0, 0)
    for bad, match in (({"threshold": 1.0}, "threshold must be a number between 0 and 1"),
                       ({"seed_threshold": float("nan")}, "seed_threshold"),
                       ({"min_size": -1}, "min_size must be a whole number"),
                       ({"split_distance": 2.5}, "split_distance"),
                       ({"split_ratio": -0.1}, "split_ratio"),
                       ({"split_ratio": "0.5"}, "split_ratio"),
                       ({"threshold": True}, "threshold")):
        with pytest.raises(ValueError, match=match):
            Decoding(**bad)


def test_decoding_reads_exactly_its_values_from_a_dict():
    good = {"threshold": 0.6, "seed_threshold": 0.7, "min_size": 40, "split_distance": 5}
    assert Decoding.from_dict(good).to_dict() == {**good, "split_ratio": 0.0}  # older files
    necks = {**good, "split_distance": 0, "split_ratio": 0.7}
    assert Decoding.from_dict(necks).to_dict() == necks
    with pytest.raises(ValueError, match="must hold"):
        Decoding.from_dict({**good, "neck": 0.7})
    with pytest.raises(ValueError, match="split_ratio must be a number in"):
        Decoding.from_dict({**good, "split_ratio": 1.0})
    with pytest.raises(ValueError, match="linked_decoding must hold"):
        Decoding.from_dict({"threshold": 0.6}, "linked_decoding")
    with pytest.raises(ValueError, match="linked_decoding: threshold"):
        Decoding.from_dict({**good, "threshold": 2}, "linked_decoding")


def test_a_summary_checks_its_target_and_names_its_classes():
    assert ModelSummary(UNetConfig()).target == "foreground"
    assert ModelSummary(UNetConfig()).class_names == ("background", "foreground")
    assert ModelSummary(UNetConfig(n_classes=3), target="boundary").class_names == (
        "background", "interior", "boundary")
    assert ModelSummary(UNetConfig(n_classes=4)).class_names[-1] == "class 3"
    with pytest.raises(ValueError, match="does not fit a network with n_classes=1"):
        ModelSummary(UNetConfig(), target="boundary")
    with pytest.raises(ValueError, match="class_names must give 2 names"):
        ModelSummary(UNetConfig(), class_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="decoding must be a Decoding"):
        ModelSummary(UNetConfig(), decoding={"threshold": 0.5})


def test_linked_decoding_is_used_for_objects_linked_in_3d_only():
    own, linked = Decoding(0.4, 0.6, 5, 4), Decoding(0.7, 0.8, 50, 0)
    summary = ModelSummary(UNetConfig(n_classes=3), target="boundary", decoding=own,
                           linked_decoding=linked)
    assert summary.decoding_for(False) is own and summary.decoding_for(True) is linked
    assert ModelSummary(UNetConfig(n_classes=3), target="boundary",
                        decoding=own).decoding_for(True) is own
    assert summary.describe_decoding() == ("threshold 0.4, seed 0.6, seeds split 4 px apart, "
                                           "min size 5 px")
    assert summary.describe_decoding(True) == ("threshold 0.7, seed 0.8, min size 50 voxels "
                                               "(for objects linked in 3D)")


def test_the_metadata_holds_the_decoding_at_the_top_level_as_files_always_did():
    summary = ModelSummary(UNetConfig(n_classes=3), target="boundary",
                           decoding=Decoding(0.4, 0.6, 5, 4))
    meta = summary.metadata()
    assert (meta["threshold"], meta["seed_threshold"], meta["min_size"],
            meta["split_distance"]) == (0.4, 0.6, 5, 4)
    assert meta["linked_decoding"] == {} and meta["format_version"] == 1


def test_the_training_report_names_both_calibrations():
    plane = {"threshold": 0.5, "seed_threshold": 0.9, "min_size": 12, "split_distance": 6,
             "metric": "ap@0.5", "score": 0.95, "default_score": 0.9, "measured_on": "validation"}
    linked = {**plane, "threshold": 0.6, "min_size": 40, "split_distance": 0, "score": 0.91}
    info = {"monitor": "val_iou", "best_epoch": 2, "epochs_run": 3, "calibration": plane,
            "calibration_linked": linked}
    summary = ModelSummary(UNetConfig(n_classes=3), target="boundary", info=info,
                           history={"val_iou": [0.5, 0.8, 0.7]})
    text = summary.report()
    assert text.startswith("trained: 3 epochs, best epoch 2 (val iou of the interior and boundary "
                           "classes by argmax 0.800); learnt boundary")
    assert "seeds split 6 px apart, min size 12 px (ap@0.5 0.950" in text
    assert ("for objects linked in 3D, calibrated on the validation volumes: threshold 0.6, "
            "seed 0.9, min size 40 voxels (ap@0.5 0.910, defaults 0.900)") in text
    assert ModelSummary(UNetConfig()).report() == "untrained foreground network"
    foreground = ModelSummary(UNetConfig(), info={**info, "monitor": "iou"},
                              history={"iou": [0.5, 0.8, 0.7]})
    assert foreground.report().startswith("trained: 3 epochs, best epoch 2 (iou 0.800); learnt "
                                          "foreground")
    collapsed = ModelSummary(UNetConfig(), info={**info, "monitor": "iou",
                                                 "collapse_warning": "It has collapsed."},
                             history={"iou": [0.5, 0.8, 0.7]})
    assert collapsed.report().startswith("WARNING: It has collapsed. trained: 3 epochs")


def test_a_unet_model_reads_its_summary_and_updates_it_whole(random_tiny):
    assert random_tiny.config == random_tiny.summary.config
    assert random_tiny.threshold == random_tiny.decoding.threshold == 0.5
    random_tiny.update(decoding=Decoding(0.3))
    assert random_tiny.threshold == 0.3 and random_tiny.summary.decoding.threshold == 0.3
    with pytest.raises(AttributeError):
        random_tiny.threshold = 0.4
    with pytest.raises(ValueError, match="target"):
        random_tiny.update(target="boundary")
