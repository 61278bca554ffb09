import numpy as np

import pytest

from napari_unet.boundaries import border_weights, boundary_classes, touching_seams
from napari_unet.metrics import evaluate
from napari_unet.postprocess import (LabelOptions, decode_boundaries, remove_small,
                                     smallest_label_dtype, split_touching_objects)
from napari_unet.postprocess import labels_from_probabilities as _labels

from .conftest import merged_seed_disks


def labels_from_probabilities(probs, axes, target="foreground", **options):
    """The labels with these options, the model's values being 0.5 / 0.5 / 0."""
    return _labels(probs, axes, LabelOptions(**options).for_model(0.5, 0.5, 0), target)


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


def test_remove_small_copies():
    lab = np.array([[1, 1, 0, 2]])
    out = remove_small(lab, 2)
    assert out.tolist() == [[1, 1, 0, 0]] and lab.tolist() == [[1, 1, 0, 2]]


def test_split_touching_on_an_empty_stack_gives_no_objects():
    empty = np.zeros((3, 4, 5), np.float32)
    labels = labels_from_probabilities(empty, "ZYX", split_touching=True, link_planes=True)
    assert labels.shape == empty.shape and labels.max() == 0


def _touching_instances():
    """Three objects: two discs touching along a line, and a rectangle apart."""
    yy, xx = np.mgrid[:48, :72]
    labels = np.zeros((48, 72), np.int32)
    labels[(yy - 20) ** 2 + (xx - 18) ** 2 < 121] = 1
    labels[((yy - 20) ** 2 + (xx - 38) ** 2 < 121) & (labels == 0)] = 2
    labels[32:46, 54:70] = 3
    return labels


@pytest.mark.parametrize("width", [1, 2, 3])
def test_the_boundary_band_separates_touching_objects(width):
    labels = _touching_instances()
    classes = boundary_classes(labels, width)
    assert set(np.unique(classes)) == {0, 1, 2}
    assert np.all(classes[labels == 0] == 0) and np.all(classes[labels > 0] > 0)
    interior = classes == 1
    from scipy import ndimage as ndi

    assert ndi.label(interior)[1] == 3  # the touching pair's interiors are apart
    seam = (labels == 1) & np.roll(labels == 2, -1, axis=1)  # object 1 pixels next to object 2
    assert seam.any() and np.all(classes[seam] == 2)
    # the band is `width` px wide inside the rectangle's straight left edge
    x0 = int(np.argmax(labels[38] == 3))
    assert list(classes[38, x0 - 1:x0 + width + 1]) == [0] + [2] * width + [1]
    assert labels.tolist() == _touching_instances().tolist()  # input untouched


def test_decoding_gives_back_the_same_objects():
    labels = _touching_instances()
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
    assert decode_boundaries(probs, min_size=5).max() == 1
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


def test_seams_are_where_objects_touch_not_where_they_meet_background():
    labels = _touching_instances()
    seams = touching_seams(labels, 2)
    assert seams.any() and not seams[labels == 3].any()  # the rectangle touches nothing
    assert set(np.unique(labels[seams])) == {1, 2}
    assert np.all(boundary_classes(labels, 2)[seams] == 2)  # seams are boundary pixels


def test_split_distance_splits_a_seed_whose_interiors_meet():
    """Two touching disks of radius 10 whose interior band was missed on the seam: one seed,
    so one object; with the seeds split at distance peaks >= 6 px apart, the two disks."""
    truth, probs = merged_seed_disks()
    assert decode_boundaries(probs).max() == 1
    split = decode_boundaries(probs, split_distance=6)
    assert split.max() == 2 and evaluate(split, truth)["ap@0.5"] == 1.0
    options = LabelOptions(split_distance=6).for_model(0.5)
    assert labels_from_probabilities(probs, "YX", "boundary").max() == 1
    assert _labels(probs, "YX", options, "boundary").max() == 2
    with pytest.raises(ValueError, match="split_distance"):
        LabelOptions(split_distance=-1)


def test_border_weights_are_the_unet_papers_where_objects_come_close():
    """w0 * exp(-(d1 + d2)**2 / (2 sigma**2)) with d1, d2 the distances to the two nearest
    outlines, checked by hand: a 1 px gap (d1 = d2 = 1), the seam of touching squares (inside
    one, 1 px from its outline and 1 px from the other), an isolated square (near 0)."""
    labels = np.zeros((40, 60), np.int32)
    labels[5:15, 3:12], labels[5:15, 13:25] = 1, 2  # a 1 px gap at x = 12
    labels[25:35, 5:15], labels[25:35, 15:25] = 3, 4  # touching at x = 14 | 15
    labels[20:30, 45:55] = 5  # far from the others
    w = border_weights(labels, w0=10.0, sigma=5.0)
    expected = 10.0 * np.exp(-(1.0 + 1.0) ** 2 / (2 * 5.0**2))
    assert w.dtype == np.float32 and w.shape == labels.shape
    assert np.isclose(w[10, 12], expected, rtol=1e-5)  # background in the gap
    assert np.isclose(w[30, 14], expected, rtol=1e-5) and np.isclose(w[30, 15], expected,
                                                                      rtol=1e-5)
    assert w[30, 10] < w[30, 14] and w[25:35, 45:55].max() < 1e-3  # interiors, the far square
    assert border_weights(labels == 5).max() == 0.0  # one object: nothing to separate
    stack = border_weights(np.stack([labels, labels]))  # 3D labels work the same way
    assert stack.shape == (2, 40, 60) and np.isclose(stack[0, 10, 12], expected, rtol=1e-5)
    with pytest.raises(ValueError, match="integers"):
        border_weights(labels.astype(float))


def test_the_linked_values_apply_to_instances_linked_across_z_only():
    from napari_unet.model_summary import ModelSummary
    from napari_unet import UNetConfig

    linked = {"threshold": 0.7, "seed_threshold": 0.8, "min_size": 50, "split_distance": 0}
    model = ModelSummary(UNetConfig(n_classes=3), target="boundary", threshold=0.4,
                         seed_threshold=0.6, min_size=5, split_distance=4, linked_decoding=linked)
    options = LabelOptions(link_planes=True).for_unet(model, "ZYX")
    assert (options.threshold, options.seed_threshold, options.min_size,
            options.split_distance) == (0.7, 0.8, 50, 0)
    for other in (LabelOptions(link_planes=True).for_unet(model, "YX"),
                  LabelOptions().for_unet(model, "ZYX"),
                  LabelOptions(link_planes=True, instances=False).for_unet(model, "ZYX"),
                  LabelOptions(link_planes=True).for_unet(
                      ModelSummary(UNetConfig(n_classes=3), target="boundary", threshold=0.4,
                                   seed_threshold=0.6, min_size=5, split_distance=4), "ZYX")):
        assert (other.threshold, other.min_size, other.split_distance) == (0.4, 5, 4)
    mine = LabelOptions(threshold=0.2, link_planes=True).for_unet(model, "ZYX")
    assert mine.threshold == 0.2 and mine.min_size == 50  # the user's value wins
