"""Targets chosen from the labels, class weights, calibration stored and used, collapse warning."""

import numpy as np
import pytest

from napari_unet import UNetConfig, UNetModel, segment
from napari_unet.model.files import ModelFileError, load_model, save_model
from napari_unet.training.calibration import (
    calibrate,
    collapse_warning,
    plane_probabilities,
)
from napari_unet.training.data import IGNORE, choose_target, class_weights

from ..helpers import merged_seed_disks


def test_auto_target_follows_the_labels():
    instances, mask = np.array([[0, 1, 2]]), np.array([[0, 1, 1]])
    assert choose_target("auto", 1, "dense", [instances]) == "boundary"
    assert choose_target("auto", 1, "dense", [mask]) == "foreground"
    assert choose_target("auto", 1, "sparse", [instances]) == "foreground"
    assert choose_target("auto", 4, "dense", [instances]) == "classes"
    with pytest.raises(ValueError, match="dense instance labels"):
        choose_target("boundary", 1, "sparse", [instances])
    with pytest.raises(ValueError, match="one output"):
        choose_target("foreground", 2, "dense", [mask])
    with pytest.raises(ValueError, match="n_classes >= 2"):
        choose_target("classes", 1, "dense", [mask])
    with pytest.raises(ValueError, match="target must be one of"):
        choose_target("edges", 1, "dense", [mask])


def test_class_weights_lift_the_rare_class_and_keep_a_mean_of_one():
    target = np.zeros((10, 10), np.float32)
    target[:3] = 1
    target[3, :4] = 2
    target[9] = IGNORE
    weights = class_weights([target], 3)
    assert weights[2] > weights[1] > weights[0]
    counts = np.bincount(target[target >= 0].astype(int), minlength=3)
    assert np.isclose((counts * np.array(weights)).sum() / counts.sum(), 1.0, atol=1e-3)
    assert class_weights([np.zeros((4, 4), np.float32)], 3)[1:] == [1.0, 1.0]  # absent classes


def test_weighted_crossentropy_is_the_weighted_mean():
    from napari_unet.training.losses import MaskedCrossentropy

    y_true = np.array([[[[0.0], [1.0], [2.0], [-1.0]]]], np.float32)
    y_pred = np.array([[[[0.7, 0.2, 0.1], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6], [1, 0, 0]]]],
                      np.float32)
    weights = [1.0, 2.0, 4.0]
    ce = -np.log([0.7, 0.6, 0.6])
    expected = (ce * weights).sum() / sum(weights)
    got = float(np.asarray(MaskedCrossentropy(weights)(y_true, y_pred)))
    assert np.isclose(got, expected, rtol=1e-5)
    assert np.isclose(float(np.asarray(MaskedCrossentropy()(y_true, y_pred))), ce.mean(), rtol=1e-5)


def test_a_weight_channel_adds_to_the_class_weights():
    from napari_unet.training.losses import MaskedCrossentropy, MaskedDice, MaskedIoU

    classes = np.array([[[[0.0], [1.0], [2.0], [-1.0]]]], np.float32)
    extra = np.array([[[[0.0], [1.0], [0.5], [7.0]]]], np.float32)
    y_true = np.concatenate([classes, extra], axis=-1)
    y_pred = np.array([[[[0.7, 0.2, 0.1], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6], [1, 0, 0]]]],
                      np.float32)
    ce = -np.log([0.7, 0.6, 0.6])
    for weights, pixel in ((None, [1.0, 2.0, 1.5]), ([1.0, 2.0, 4.0], [1.0, 3.0, 4.5])):
        got = float(np.asarray(MaskedCrossentropy(weights)(y_true, y_pred)))
        assert np.isclose(got, (ce * pixel).sum() / sum(pixel), rtol=1e-5)
    assert np.isclose(float(np.asarray(MaskedDice()(y_true, y_pred))),
                      float(np.asarray(MaskedDice()(classes, y_pred))))
    weighted, plain = MaskedIoU(), MaskedIoU()
    weighted.update_state(y_true, y_pred)
    plain.update_state(classes, y_pred)
    assert float(weighted.result()) == float(plain.result())


def test_calibration_is_stored_saved_and_used_by_default(trained_tiny, nuclei, tmp_path):
    calibration = trained_tiny.info["calibration"]
    assert trained_tiny.target == "boundary" and calibration["metric"] == "ap@0.5"
    assert calibration["measured_on"] in ("validation", "annotated")
    assert calibration["score"] >= calibration["default_score"]
    assert (trained_tiny.threshold, trained_tiny.seed_threshold, trained_tiny.min_size) == (
        calibration["threshold"], calibration["seed_threshold"], calibration["min_size"])
    loaded = load_model(save_model(trained_tiny, tmp_path / "m.keras"))
    assert (loaded.target, loaded.threshold, loaded.seed_threshold, loaded.min_size) == (
        "boundary", trained_tiny.threshold, trained_tiny.seed_threshold, trained_tiny.min_size)
    image = nuclei[0]
    by_default = segment(loaded, image)
    explicit = segment(loaded, image, threshold=loaded.threshold,
                       seed_threshold=loaded.seed_threshold, min_size=loaded.min_size)
    assert np.array_equal(by_default, explicit)
    coarse = segment(loaded, image, min_size=10_000)  # the model's min size is overridable
    assert coarse.max() == 0 or coarse.max() < by_default.max()


def test_calibration_picks_the_values_that_score_best():
    """Interior probability 0.7 in the cores of two touching squares and 0.6 on their seam:
    only a seed threshold between them splits the pair, and calibration finds one."""
    truth = np.zeros((20, 30), np.int32)
    truth[5:15, 5:15], truth[5:15, 15:25] = 1, 2
    probs = np.zeros((20, 30, 3), np.float32)
    probs[..., 0] = 1.0
    probs[5:15, 5:25] = [0.0, 0.6, 0.4]
    probs[7:13, 7:13] = probs[7:13, 17:23] = [0.0, 0.7, 0.3]
    model = UNetModel.new(UNetConfig(depth=1, start_neurons=2, n_classes=3), target="boundary")
    result = calibrate(model, [probs], [truth], None)
    assert 0.6 <= result.decoding.seed_threshold < 0.7 and result.score == 1.0
    assert result.default_score < 1.0 and result.measured_on == "annotated"


def test_the_collapse_warning_fires_on_an_all_foreground_model(nuclei):
    model = UNetModel.new(UNetConfig(depth=1, start_neurons=2))
    kernel, bias = model.keras_model.get_layer("output").get_weights()
    model.keras_model.get_layer("output").set_weights([kernel * 0, bias + 20.0])
    image, labels = nuclei
    plane = (image[..., None] / image.max()).astype(np.float32)
    foreground = [p > 0.5 for p in plane_probabilities(model, [plane])]
    message = collapse_warning(foreground, [labels > 0], [np.ones(labels.shape, bool)])
    assert "almost every pixel as foreground" in message
    assert collapse_warning([labels > 0], [labels > 0], [np.ones(labels.shape, bool)]) == ""


def test_a_model_file_with_a_target_that_does_not_fit_is_refused(trained_tiny, tmp_path):
    import json
    import zipfile

    path = save_model(trained_tiny, tmp_path / "m.keras")
    with zipfile.ZipFile(path) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    meta = json.loads(entries["napari_unet.json"])
    for bad in ("foreground", "edges"):
        meta["target"] = bad
        entries["napari_unet.json"] = json.dumps(meta).encode()
        broken = tmp_path / f"{bad}.keras"
        with zipfile.ZipFile(broken, "w") as zf:
            for name, data in entries.items():
                zf.writestr(name, data)
        with pytest.raises(ModelFileError, match="target"):
            load_model(broken)


def test_calibration_splits_seeds_when_that_scores_better(tmp_path):
    """Pairs of touching disks whose interiors meet on the seam: no threshold separates
    them, splitting the seeds at their neck does; the chosen neck ratio is saved with the model and
    used by default."""
    from napari_unet.labels.decode import decode_boundaries

    truth, probs = merged_seed_disks()
    model = UNetModel.new(UNetConfig(depth=1, start_neurons=2, n_classes=3), target="boundary")
    result = calibrate(model, [probs] * 3, [truth] * 3, None)
    assert result.decoding.split_ratio > 0 and result.score == 1.0
    assert result.decoding.split_distance == 0  # no straight seams from calibration
    assert result.default_score < 1.0
    model.update(decoding=result.decoding)
    loaded = load_model(save_model(model, tmp_path / "m.keras"))
    assert loaded.decoding == result.decoding
    from napari_unet.labels.decode import labels_from_probabilities
    from napari_unet.labels.options import LabelOptions

    by_default = labels_from_probabilities(probs, "YX", LabelOptions().for_unet(loaded), "boundary")
    assert by_default.max() == 2
    np.testing.assert_array_equal(by_default, decode_boundaries(probs, result.decoding))


def test_3d_labels_calibrate_linked_decoding_which_linked_labels_use(tmp_path):
    """Trained on a stack with 3D instance labels, a boundary model also calibrates the
    values for objects linked in 3D; they are saved, shown, and used with link_planes
    (and only there)."""
    from napari_unet import train
    from napari_unet.labels.decode import labels_from_probabilities
    from napari_unet.labels.options import LabelOptions
    from napari_unet.prediction.api import predict
    from napari_unet.samples.nuclei import make_nuclei_stack

    image, labels = make_nuclei_stack((6, 64, 64), seed=1)
    spacing = {"Z": 2.0, "Y": 0.5, "X": 0.5}
    unet = train(image, labels, UNetConfig(depth=2, start_neurons=8), axes="ZYX", patch_size=32,
                 batch_size=2, epochs=1, steps_per_epoch=2, seed=0, verbose=False,
                 spacing=spacing).model
    linked = unet.linked_decoding
    assert linked is not None and unet.info["calibration_linked"]["objects"] > 0
    # measured with the pixel sizes given, and says so
    assert unet.info["calibration_linked"]["spacing"] == spacing
    assert unet.info["calibration"]["spacing"] == spacing
    loaded = load_model(save_model(unet, tmp_path / "m.keras"))
    assert loaded.linked_decoding == linked
    summary = loaded.summary
    assert "linked in 3D" not in summary.describe_decoding()
    assert "px" in summary.describe_decoding()
    assert summary.describe_decoding(linked=True).endswith("voxels (for objects linked in 3D)")
    probs = predict(loaded, image, axes="ZYX")
    explicit = labels_from_probabilities(
        probs, "ZYX", LabelOptions(link_planes=True, **linked.to_dict()), "boundary")
    assert np.array_equal(segment(loaded, image, axes="ZYX", link_planes=True), explicit)
    per_plane = LabelOptions().for_unet(loaded, "ZYX")
    assert per_plane.threshold == loaded.threshold and per_plane.min_size == loaded.min_size
    flat = train(image[0], labels[0], loaded, patch_size=32, batch_size=2, epochs=1,
                 steps_per_epoch=2, seed=0, verbose=False).model
    assert flat.linked_decoding is None and "calibration_linked" not in flat.info  # not stale
    assert "spacing" not in flat.info["calibration"]
    with pytest.raises(ValueError, match="one per image"):
        train([image[0]], [labels[0]], loaded, spacing=[spacing, spacing], verbose=False)


def test_a_model_file_with_bad_linked_values_is_refused(trained_tiny, tmp_path):
    import json
    import zipfile

    path = save_model(trained_tiny, tmp_path / "m.keras")
    with zipfile.ZipFile(path) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    meta = json.loads(entries["napari_unet.json"])
    for bad in ({"threshold": 2.0, "seed_threshold": 0.5, "min_size": 0, "split_distance": 0},
                {"threshold": 0.5}, [1, 2]):
        meta["linked_decoding"] = bad
        entries["napari_unet.json"] = json.dumps(meta).encode()
        broken = tmp_path / "broken.keras"
        with zipfile.ZipFile(broken, "w") as zf:
            for name, data in entries.items():
                zf.writestr(name, data)
        with pytest.raises(ModelFileError, match="linked"):
            load_model(broken)


def test_ties_at_ap_50_go_to_the_settings_whose_outlines_fit():
    """A ring of foreground probability 0.55 around a disk: thresholds 0.5 and 0.6 both find
    the object (AP@0.5 = 1), but only 0.6 gives its outline (IoU 1 against 0.64), so the
    mean AP at IoU 0.5/0.75/0.9 picks 0.6 over the default 0.5."""
    yy, xx = np.mgrid[:40, :40]
    r = np.hypot(yy - 20, xx - 20)
    truth = (r <= 8).astype(np.int32)
    probs = np.zeros((40, 40, 3), np.float32)
    probs[..., 0] = 1.0
    probs[r <= 10] = [0.45, 0.05, 0.5]
    probs[r <= 8] = [0.0, 0.3, 0.7]
    probs[r <= 6] = [0.0, 0.8, 0.2]
    model = UNetModel.new(UNetConfig(depth=1, start_neurons=2, n_classes=3), target="boundary")
    result = calibrate(model, [probs], [truth], None)
    assert result.decoding.threshold == 0.6 and result.score == 1.0
    assert result.default_score == 1.0


def test_linked_decoding_must_hold_the_decoding_values():
    from napari_unet.model.decoding import Decoding
    from napari_unet.model.summary import ModelSummary

    config = UNetConfig(depth=1, start_neurons=2, n_classes=3)
    good = {"threshold": 0.6, "seed_threshold": 0.7, "min_size": 40, "split_distance": 5}
    summary = ModelSummary(config, target="boundary", linked_decoding=Decoding(**good))
    assert summary.linked_decoding.to_dict() == {**good, "split_ratio": 0.0}
    for bad in ({"threshold": 0.6}, {**good, "link_planes": True}, {**good, "threshold": 1.5},
                [0.6, 0.7]):
        with pytest.raises(ValueError, match="linked_decoding|threshold"):
            Decoding.from_dict(bad, "linked_decoding")
    with pytest.raises(ValueError, match="linked_decoding must be a Decoding"):
        ModelSummary(config, target="boundary", linked_decoding=good)


def test_linked_calibration_keeps_whole_runs_within_the_pixel_limit():
    from napari_unet.training.calibration import _within_limit

    ys = [np.zeros((10, 10))] * 7
    assert _within_limit([[0, 1, 2, 3], [4, 5, 6]], ys, limit=500) == [[0, 1, 2, 3]]
    assert _within_limit([[0, 1, 2, 3], [4, 5, 6]], ys, limit=700) == [[0, 1, 2, 3], [4, 5, 6]]
    assert _within_limit([[0, 1, 2, 3, 4, 5]], ys, limit=250) == [[0, 1, 2]]  # 3 planes at least


def test_the_collapse_warning_takes_the_foreground_as_the_calibrated_labels_do(nuclei):
    # a boundary network whose argmax is background everywhere, but whose objects have
    # p(background) 0.6: the calibrated threshold 0.3 labels them (1 - 0.6 > 0.3)
    from types import SimpleNamespace

    from napari_unet.model.decoding import Decoding
    from napari_unet.training.calibration import _collapse

    _, labels = nuclei
    probs = np.zeros(labels.shape + (3,), np.float32)
    probs[..., 0] = np.where(labels > 0, 0.6, 0.95)
    probs[..., 1] = np.where(labels > 0, 0.25, 0.03)
    probs[..., 2] = 1.0 - probs[..., 0] - probs[..., 1]
    unet = SimpleNamespace(target="boundary", decoding=Decoding(threshold=0.5))
    data = SimpleNamespace(targets=[(labels > 0).astype(np.float32)])
    assert "almost every pixel as background" in _collapse(unet, [probs], data, [0])
    assert _collapse(unet, [probs], data, [0], Decoding(threshold=0.3)) == ""


def test_the_quality_warning_counts_the_batches_of_every_round():
    from napari_unet.training.calibration import quality_warning, trained_batches

    low = {"calibration": {"metric": "ap@0.5", "score": 0.0, "measured_on": "held-out"},
           "steps_per_epoch": 7}
    rounds = [{"epochs": 3, "batches": 30}, {"epochs": 2, "batches": 14}]
    assert trained_batches({**low, "rounds": rounds}) == 44
    assert "trained only 44 batches" in quality_warning({**low, "rounds": rounds})
    older = [{"epochs": 3}, {"epochs": 2}]  # rounds recorded before they kept their batches
    assert trained_batches({**low, "rounds": older}) == 35
    good = {**low, "calibration": {**low["calibration"], "score": 0.9}, "rounds": rounds}
    assert quality_warning(good) == ""
