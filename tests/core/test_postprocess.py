import numpy as np

from napari_unet.postprocess import (labels_from_probabilities, remove_small, smallest_label_dtype,
                                     split_touching_objects)


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
