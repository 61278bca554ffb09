"""Instance labels as training targets: the boundary classes, where objects touch, and the
U-Net paper's border weights."""

import numpy as np
import pytest

from napari_unet.labels.targets import INTERIOR, border_weights, boundary_classes, touching_seams

from ..helpers import touching_instances


@pytest.mark.parametrize("width", [1, 2, 3])
def test_the_boundary_band_separates_touching_objects(width):
    labels = touching_instances()
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
    assert labels.tolist() == touching_instances().tolist()  # input untouched


def test_seams_are_where_objects_touch_not_where_they_meet_background():
    labels = touching_instances()
    seams = touching_seams(labels, 2)
    assert seams.any() and not seams[labels == 3].any()  # the rectangle touches nothing
    assert set(np.unique(labels[seams])) == {1, 2}
    assert np.all(boundary_classes(labels, 2)[seams] == 2)  # seams are boundary pixels


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


def test_border_weights_measure_z_in_true_units():
    """Two slabs one plane apart: with Z planes 3 px apart the gap is 3 px wide, not 1."""
    labels = np.zeros((9, 40, 40), np.int32)
    labels[1:4, 10:30, 10:30] = 1
    labels[5:8, 10:30, 10:30] = 2
    gap = (4, 20, 20)
    flat = border_weights(labels, w0=10.0, sigma=5.0)
    true = border_weights(labels, w0=10.0, sigma=5.0, sampling=(3, 1, 1))
    np.testing.assert_allclose(flat[gap], 10 * np.exp(-(1 + 1) ** 2 / 50), rtol=1e-5)
    np.testing.assert_allclose(true[gap], 10 * np.exp(-(3 + 3) ** 2 / 50), rtol=1e-5)
    assert true[2, 20, 20] < flat[2, 20, 20]  # a slab's middle plane is 3 px from its faces


def test_the_boundary_band_of_a_stack_is_measured_in_true_units():
    # two nuclei stacked in Z (planes 3 px apart), 4 planes each: with the band counted in
    # planes both would be boundary all through; in true units each keeps interior planes
    labels = np.zeros((10, 14, 14), np.int32)
    labels[1:5, 2:12, 2:12] = 1
    labels[5:9, 2:12, 2:12] = 2
    flat = boundary_classes(labels, 2)
    true = boundary_classes(labels, 2, sampling=(3.0, 1.0, 1.0))
    assert not np.any(flat[:, 7, 7] == INTERIOR)
    assert list(true[:, 7, 7]) == [0, 2, 1, 1, 2, 2, 1, 1, 2, 0]
    # within a plane the band is a plane's, and isotropic sampling changes nothing
    np.testing.assert_array_equal(true[3], boundary_classes(labels[3], 2))
    np.testing.assert_array_equal(boundary_classes(labels, 2, (1.0, 1.0, 1.0)), flat)
