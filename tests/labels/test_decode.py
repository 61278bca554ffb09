import numpy as np
import pytest

from napari_unet.labels.decode import (
    decode_boundaries,
    remove_small,
    smallest_label_dtype,
    split_touching_objects,
)
from napari_unet.labels.decode import labels_from_probabilities as _labels
from napari_unet.labels.metrics import evaluate
from napari_unet.labels.options import LabelOptions
from napari_unet.labels.targets import boundary_classes
from napari_unet.model.decoding import Decoding

from ..helpers import merged_seed_disks, touching_instances


def labels_from_probabilities(probs, axes, target="foreground", **options):
    """The labels with these options, the model's values being 0.5 / 0.5 / 0."""
    return _labels(probs, axes, LabelOptions(**options).filled(Decoding()), target)


def _two_touching_discs():
    yy, xx = np.mgrid[:40, :60]
    return ((yy - 20) ** 2 + (xx - 20) ** 2 < 100) | ((yy - 20) ** 2 + (xx - 37) ** 2 < 100)


def test_smallest_dtype():
    assert smallest_label_dtype(255) == np.uint8
    assert smallest_label_dtype(256) == np.uint16
    assert smallest_label_dtype(70000) == np.uint32


def test_connected_components_min_size_and_watershed_split():
    mask = _two_touching_discs()
    mask[0, 0] = True  # a one-pixel speck
    probs = mask.astype(np.float32)
    labels = labels_from_probabilities(probs, "YX")
    assert labels.max() == 2  # touching discs are one component, plus the speck
    labels = labels_from_probabilities(probs, "YX", min_size=5)
    assert labels.max() == 1
    split = labels_from_probabilities(probs, "YX", min_size=5, split_touching=True)
    assert split.max() == 2
    assert split_touching_objects(_two_touching_discs()).max() == 2
    sem = labels_from_probabilities(probs, "YX", instances=False)
    assert set(np.unique(sem)) == {0, 1}


def test_stack_labels_per_plane_or_linked():
    mask = np.zeros((3, 20, 20), bool)
    mask[:, 5:10, 5:10] = True
    probs = mask.astype(np.float32)
    per_plane = labels_from_probabilities(probs, "ZYX")
    assert sorted(np.unique(per_plane)) == [0, 1, 2, 3]
    linked = labels_from_probabilities(probs, "ZYX", link_planes=True)
    assert sorted(np.unique(linked)) == [0, 1]


def test_relabel_sequential_takes_any_label_array():
    from napari_unet.labels.decode import relabel_sequential

    np.testing.assert_array_equal(relabel_sequential(np.array([[0, 5, 5], [2, 0, 9]])),
                                  [[0, 2, 2], [1, 0, 3]])
    floats = np.array([0.0, 1.0, 2.0])
    assert relabel_sequential(floats) is floats  # already 1..n: returned as it is
    np.testing.assert_array_equal(relabel_sequential(np.array([0, 7], np.uint64)), [0, 1])


def test_remove_small_copies():
    lab = np.array([[1, 1, 0, 2]])
    out = remove_small(lab, 2)
    assert out.tolist() == [[1, 1, 0, 0]] and lab.tolist() == [[1, 1, 0, 2]]


def test_split_touching_on_an_empty_stack_gives_no_objects():
    empty = np.zeros((3, 4, 5), np.float32)
    labels = labels_from_probabilities(empty, "ZYX", split_touching=True, link_planes=True)
    assert labels.shape == empty.shape and labels.max() == 0


def test_decoding_gives_back_the_same_objects():
    labels = touching_instances()
    classes = boundary_classes(labels, 2)
    probs = np.eye(3, dtype=np.float32)[classes]
    decoded = decode_boundaries(probs)
    assert decoded.max() == 3
    for i in (1, 2, 3):
        best = max(np.count_nonzero((decoded == j) & (labels == i))
                   / np.count_nonzero((decoded == j) | (labels == i)) for j in (1, 2, 3))
        assert best > 0.95
    assert evaluate(decoded, labels)["ap@0.9"] == 1.0
    # through labels_from_probabilities, per plane of a stack and linked in 3D
    stack = np.stack([probs, probs])
    assert labels_from_probabilities(stack, "ZYX", "boundary").max() == 6
    assert labels_from_probabilities(stack, "ZYX", "boundary", link_planes=True).max() == 3
    mask = labels_from_probabilities(probs, "YX", "boundary", instances=False)
    assert mask.dtype == np.uint8 and np.array_equal(mask, labels > 0)


def test_decoding_keeps_seedless_foreground_and_drops_small_objects():
    probs = np.zeros((20, 20, 3), np.float32)
    probs[..., 0] = 1.0
    probs[2:8, 2:8] = [0.0, 0.2, 0.8]  # foreground without a confident interior: one object
    probs[12:14, 12:14] = [0.0, 0.9, 0.1]  # 4 pixels
    assert decode_boundaries(probs).max() == 2
    assert decode_boundaries(probs, Decoding(min_size=5)).max() == 1
    assert decode_boundaries(np.eye(3, dtype=np.float32)[np.zeros((5, 5), int)]).max() == 0
    with pytest.raises(ValueError, match="3 classes"):
        decode_boundaries(np.zeros((5, 5, 2)))
    with pytest.raises(ValueError, match="boundary_width"):
        boundary_classes(np.zeros((5, 5), int), 4)


def test_class_maps_as_instances_keep_objects_of_different_classes_apart():
    classes = np.zeros((10, 10), int)
    classes[2:5, 2:5], classes[2:5, 5:8] = 1, 2  # touching objects of two classes
    probs = np.eye(3, dtype=np.float32)[classes]
    assert labels_from_probabilities(probs, "YX", "classes").max() == 2
    class_map = labels_from_probabilities(probs, "YX", "classes", instances=False)
    assert np.array_equal(class_map, classes)


def test_split_distance_splits_a_seed_whose_interiors_meet():
    """Two touching disks of radius 10 whose interior band was missed on the seam: one seed,
    so one object; with the seeds split at distance peaks >= 6 px apart, the two disks."""
    truth, probs = merged_seed_disks()
    assert decode_boundaries(probs).max() == 1
    split = decode_boundaries(probs, Decoding(split_distance=6))
    assert split.max() == 2 and evaluate(split, truth)["ap@0.5"] == 1.0
    options = LabelOptions(split_distance=6).filled(Decoding())
    assert labels_from_probabilities(probs, "YX", "boundary").max() == 1
    assert _labels(probs, "YX", options, "boundary").max() == 2
    with pytest.raises(ValueError, match="split_distance"):
        LabelOptions(split_distance=-1)


def test_a_neck_ratio_splits_touching_disks_without_cutting_an_elongated_nucleus():
    """The touching disks split at their neck; an ellipse 60 x 20 px, whose distance
    transform is a ridge of peaks, is cut by straight seams into 3-5 pieces when seeds are
    split at peaks 4-8 px apart, but stays whole with any neck ratio."""
    truth, probs = merged_seed_disks()
    necks = decode_boundaries(probs, Decoding(split_ratio=0.7))
    assert necks.max() == 2 and evaluate(necks, truth)["ap@0.5"] == 1.0
    options = LabelOptions(split_ratio=0.7).filled(Decoding())
    assert np.array_equal(_labels(probs, "YX", options, "boundary"), necks)
    yy, xx = np.mgrid[:60, :100]
    ellipse = ((yy - 30) / 10) ** 2 + ((xx - 50) / 30) ** 2 <= 1
    probs = np.zeros((60, 100, 3), np.float32)
    probs[..., 0] = 1.0
    probs[ellipse] = [0.0, 0.9, 0.1]
    assert decode_boundaries(probs, Decoding(split_distance=6)).max() >= 3
    for ratio in (0.5, 0.7, 0.8):
        assert decode_boundaries(probs, Decoding(split_ratio=ratio)).max() == 1
    with pytest.raises(ValueError, match="split_ratio"):
        LabelOptions(split_ratio=1.5)


def test_a_neck_ratio_separates_touching_objects_of_a_foreground_model():
    truth, probs = merged_seed_disks()
    mask = (1.0 - probs[..., 0]).astype(np.float32)  # the disks' foreground, one component
    assert labels_from_probabilities(mask, "YX", "foreground").max() == 1
    options = LabelOptions(split_ratio=0.7).filled(Decoding())
    split = _labels(mask, "YX", options, "foreground")
    assert split.max() == 2 and evaluate(split, truth)["ap@0.5"] == 1.0


def test_the_linked_values_apply_to_instances_linked_across_z_only():
    from napari_unet import UNetConfig
    from napari_unet.model.summary import ModelSummary

    linked = Decoding(threshold=0.7, seed_threshold=0.8, min_size=50, split_distance=0)
    own = Decoding(threshold=0.4, seed_threshold=0.6, min_size=5, split_distance=4)
    model = ModelSummary(UNetConfig(n_classes=3), target="boundary", decoding=own,
                         linked_decoding=linked)
    options = LabelOptions(link_planes=True).for_unet(model, "ZYX")
    assert (options.threshold, options.seed_threshold, options.min_size,
            options.split_distance) == (0.7, 0.8, 50, 0)
    for other in (LabelOptions(link_planes=True).for_unet(model, "YX"),
                  LabelOptions().for_unet(model, "ZYX"),
                  LabelOptions(link_planes=True, instances=False).for_unet(model, "ZYX"),
                  LabelOptions(link_planes=True).for_unet(
                      ModelSummary(UNetConfig(n_classes=3), target="boundary", decoding=own),
                      "ZYX")):
        assert (other.threshold, other.min_size, other.split_distance) == (0.4, 5, 4)
    mine = LabelOptions(threshold=0.2, link_planes=True).for_unet(model, "ZYX")
    assert mine.threshold == 0.2 and mine.min_size == 50  # the user's value wins


def test_labels_are_counted_and_renumbered_a_slab_at_a_time(monkeypatch):
    """Small-object removal and renumbering give the same labels when the volume is
    worked through in slabs (here 1000 voxels; 4M in use), in int32, in place when owned."""
    from napari_unet.labels import decode

    mask = np.random.default_rng(5).random((6, 40, 50)) > 0.55
    whole = decode.label_mask(mask, min_size=3)
    monkeypatch.setattr(decode, "_SLAB", 1000)
    slabs = decode.label_mask(mask, min_size=3)
    assert slabs.dtype == np.int32 and whole.dtype == np.int32
    np.testing.assert_array_equal(slabs, whole)
    ids = np.unique(slabs)
    np.testing.assert_array_equal(ids, np.arange(ids.size))  # 0..n, none missing
    sizes = np.bincount(slabs.ravel())[1:]
    assert sizes.min() >= 3
    owned = np.array([[0, 7, 7], [9, 0, 3]], np.int32)
    assert decode.relabel_sequential(owned, copy=False) is owned
    np.testing.assert_array_equal(owned, [[0, 2, 2], [3, 0, 1]])
    given = np.array([[0, 7], [9, 0]], np.int64)
    out = decode.relabel_sequential(given)
    assert out is not given and given.max() == 9 and out.max() == 2
